// Provider feedback over the wire, on a real server: a throttled release or
// a report pauses the resource for everyone, the server says so in stats,
// logs and metrics, bad feedback is refused with a clear status, and a pause
// outlives its leader (a Redis group: SIGKILL of the node that was told).
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import {
  AcquireRequestSchema,
  GetResourceStatsRequestSchema,
  ReleaseRequestSchema,
  ReportRequestSchema,
  type AcquireResponse,
  type GetResourceStatsResponse,
  type ReleaseResponse,
  type ReportResponse,
} from "@ratequeue/proto";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { adminMethods, create, RawClient, rqMethods } from "./support/raw-grpc.js";
import { closeRedis, startNode, startRedis, waitForLog, type RedisInstance } from "./support/redis.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const config = {
  resources: {
    api: { limits: [{ dimension: "requests", amount: 20, period: "1s", burst: 5 }] },
    tokens: {
      limits: [
        { dimension: "requests", amount: 600, period: "60s", burst: 10 },
        { dimension: "load", amount: 60000, period: "60s", burst: 6000 },
      ],
      cooldown: "300ms",
    },
  },
};

let server: ServerProcess;
let raw: RawClient;
beforeAll(async () => {
  server = await startServerProcess({ config });
  raw = new RawClient(`127.0.0.1:${server.port}`);
});
afterAll(async () => {
  raw?.close();
  expect(await server.stop()).toBe(0);
});

async function acquire(client: RawClient, resource: string, load?: number) {
  const out = await client.call<AcquireResponse>(rqMethods.acquire, create(AcquireRequestSchema, { resource, load, timeout: durationFromMs(20_000) }), 25_000);
  if (!out.ok) throw new Error(`acquire failed: ${out.code} ${out.message}`);
  return out.value.lease!;
}

async function stats(client: RawClient, name: string) {
  const out = await client.call<GetResourceStatsResponse>(adminMethods.getResourceStats, create(GetResourceStatsRequestSchema, { name }));
  if (!out.ok) throw new Error(`stats failed: ${out.code} ${out.message}`);
  return out.value.stats!;
}

test("a throttled release pauses the resource for every caller until retry-after; the next grant comes after it, not in a burst", async () => {
  const first = await acquire(raw, "api");
  const released = await raw.call<ReleaseResponse>(
    rqMethods.release,
    create(ReleaseRequestSchema, { leaseId: first.leaseId, feedback: { throttled: true, retryAfter: durationFromMs(1500) } }),
  );
  expect(released.ok).toBe(true);
  const s = await stats(raw, "api");
  expect(s.throttles).toBe(1n);
  const pausedUntil = timestampMs(s.pausedUntil!);
  expect(pausedUntil).toBeGreaterThan(timestampMs(first.grantTime!) + 1400);

  // Another caller (its own connection) waits out the pause; then the limit's steady 20/s, burst spent.
  const other = new RawClient(`127.0.0.1:${server.port}`);
  try {
    const grants = await Promise.all([acquire(other, "api"), acquire(other, "api"), acquire(other, "api")]);
    const times = grants.map((l) => timestampMs(l.grantTime!)).sort((a, b) => a - b);
    expect(times[0]).toBeGreaterThanOrEqual(pausedUntil);
    expect(times[2]! - pausedUntil).toBeGreaterThanOrEqual(3 * 50 - 1);
  } finally {
    other.close();
  }
  const paused = await waitForLog(server, (e) => e.msg === "provider throttled: resource paused" && e.resource === "api");
  expect(paused).toMatchObject({ pause_ms: 1500, from: "retry_after" });
});

test("a report on the session and a unary report pause the resource and answer until when; a lower provider limit is learned and shown in stats and metrics", async () => {
  const session = raw.session();
  session.send({ requestId: 1n, kind: { case: "report", value: create(ReportRequestSchema, { resource: "tokens", feedback: { throttled: true } }) } });
  const answer = await session.answer(1n);
  expect(answer.kind.case).toBe("reported");
  const until = answer.kind.case === "reported" ? timestampMs(answer.kind.value.pausedUntil!) : 0;
  expect(until - Date.now()).toBeLessThanOrEqual(300);
  session.end();

  const unary = await raw.call<ReportResponse>(
    rqMethods.report,
    create(ReportRequestSchema, { resource: "tokens", feedback: { throttled: false, requests: { limit: 300 }, load: { limit: 30000, remaining: 25000 } } }),
  );
  expect(unary.ok).toBe(true);
  const s = await stats(raw, "tokens");
  expect(s.limits.map((l) => [l.limit!.amount, l.learnedAmount])).toEqual([
    [600, 300],
    [60000, 30000],
  ]);
  expect(s.limits[1]!.available).toBeLessThanOrEqual(6000);

  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  expect(metrics).toContain('ratequeue_limit_amount{namespace="default",resource="tokens",limit="requests/60s",source="configured"} 600');
  expect(metrics).toContain('ratequeue_limit_amount{namespace="default",resource="tokens",limit="requests/60s",source="learned"} 300');
  expect(metrics).toMatch(/ratequeue_provider_throttles_total\{namespace="default",resource="tokens"\} 1\b/);
  const learned = await waitForLog(server, (e) => e.msg === "provider limit learned" && e.resource === "tokens" && e.limit === 1);
  expect(learned).toMatchObject({ configured: 600, learned: 300, period_ms: 60000 });
});

test("bad feedback gets INVALID_ARGUMENT naming the field; an unknown resource NOT_FOUND; nothing is paused by it", async () => {
  const lease = await acquire(raw, "api");
  const bad = await raw.call<ReleaseResponse>(
    rqMethods.release,
    create(ReleaseRequestSchema, { leaseId: lease.leaseId, feedback: { throttled: true, requests: { limit: -5 } } }),
  );
  expect(bad).toMatchObject({ ok: false, code: status.INVALID_ARGUMENT });
  expect(bad.ok === false && bad.message).toMatch(/^feedback\.requests\.limit: must be greater than 0/);
  const tooLong = await raw.call<ReportResponse>(
    rqMethods.report,
    create(ReportRequestSchema, { resource: "api", feedback: { throttled: true, retryAfter: durationFromMs(2 * 3600_000) } }),
  );
  expect(tooLong.ok === false && tooLong.code).toBe(status.INVALID_ARGUMENT);
  expect(tooLong.ok === false && tooLong.message).toMatch(/^feedback\.retry_after/);
  const missing = await raw.call<ReportResponse>(rqMethods.report, create(ReportRequestSchema, { resource: "api" }));
  expect(missing.ok === false && missing.message).toMatch(/^feedback: is required/);
  const unknown = await raw.call<ReportResponse>(rqMethods.report, create(ReportRequestSchema, { resource: "nope", feedback: { throttled: true } }));
  expect(unknown).toMatchObject({ ok: false, code: status.NOT_FOUND });
  // The refused release left the lease held: a good release still works.
  const ok = await raw.call<ReleaseResponse>(rqMethods.release, create(ReleaseRequestSchema, { leaseId: lease.leaseId }));
  expect(ok.ok).toBe(true);
  expect((await stats(raw, "api")).throttles).toBe(1n);
});

describe("in a Redis group", () => {
  let redis: RedisInstance | undefined;
  const nodes: ServerProcess[] = [];
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop("SIGKILL")));
    await closeRedis(redis);
  });

  test("a pause outlives its leader: after a SIGKILL the new leader grants nothing before the pause's end", async () => {
    redis = await startRedis();
    const opts = { config: { resources: { api: { limits: [{ dimension: "requests", amount: 10, period: "1s", burst: 10 }] } } }, leaderTtl: "1s" };
    nodes.push(await startNode(redis.url, opts));
    await waitForLog(nodes[0]!, (e) => e.msg === "leading");
    nodes.push(await startNode(redis.url, opts));
    await waitForLog(nodes[1]!, (e) => e.msg === "standing by");
    const leader = new RawClient(`127.0.0.1:${nodes[0]!.port}`);
    const reported = await leader.call<ReportResponse>(
      rqMethods.report,
      create(ReportRequestSchema, { resource: "api", feedback: { throttled: true, retryAfter: durationFromMs(6000) } }),
    );
    leader.close();
    expect(reported.ok).toBe(true);
    const pausedUntil = reported.ok ? timestampMs(reported.value.pausedUntil!) : 0;
    // Killed right away: the pause reached Redis because a pause is written at once, not at the next snapshot tick.
    await new Promise((r) => setTimeout(r, 100));
    await nodes[0]!.stop("SIGKILL");
    await waitForLog(nodes[1]!, (e) => e.msg === "leading", 10_000);
    const next = new RawClient(`127.0.0.1:${nodes[1]!.port}`);
    try {
      expect(timestampMs((await stats(next, "api")).pausedUntil!)).toBe(pausedUntil);
      const lease = await acquire(next, "api");
      expect(timestampMs(lease.grantTime!)).toBeGreaterThanOrEqual(pausedUntil);
    } finally {
      next.close();
    }
  });
});
