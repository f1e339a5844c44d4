// Flood: one client opens streams and queues acquires until the server
// refuses with RESOURCE_EXHAUSTED; meanwhile another tenant's client is
// served at its normal latency, and the flood leaves nothing behind.
import { create } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { createAdminClient, createClient } from "@ratequeue/client";
import { AcquireRequestSchema, HeartbeatRequestSchema } from "@ratequeue/proto";
import { afterAll, beforeAll, expect, test } from "vitest";
import { rootKeyFile } from "./support/keys.js";
import { RawClient, type RawSession } from "./support/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";
import { runWorker } from "./support/workers.js";

const rootKey = "flood-root-key-0123456789abcdefghijklmnop";
const limits = { sessions: 16, queued: 300, leases: 40 };
let server: ServerProcess;
const keys: Record<string, string> = {};

beforeAll(async () => {
  server = await startServerProcess({
    config: {
      namespaces: {
        flood: { resources: { busy: { concurrency: 1, max_queue: 100_000 }, free: {} } },
        calm: { resources: { fast: {} } },
      },
    },
    args: [
      "--root-key-file",
      rootKeyFile(rootKey),
      "--max-sessions-per-key",
      String(limits.sessions),
      "--max-queued-per-session",
      String(limits.queued),
      "--max-leases-per-session",
      String(limits.leases),
    ],
  });
  const root = createAdminClient({ url: server.url, apiKey: rootKey });
  for (const ns of ["flood", "calm"]) keys[ns] = (await root.createApiKey({ namespace: ns, role: "admin" })).key;
  root.close();
});
afterAll(async () => {
  await server.stop();
});

async function latencies(n: number): Promise<number[]> {
  const client = createClient({ url: server.url, apiKey: keys.calm });
  await (await client.acquire("fast")).release(); // connect first
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await (await client.acquire("fast")).release();
    out.push(performance.now() - t);
  }
  await client.close();
  return out.sort((a, b) => a - b);
}
const median = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;

test("a flooding client is refused with RESOURCE_EXHAUSTED; another is served as usual", async () => {
  await latencies(100); // warm up: code compiled, connections made
  const baseline = median(await latencies(100));
  const raw = new RawClient(`127.0.0.1:${server.port}`, { key: keys.flood });
  const sessions: RawSession[] = [];
  // Streams until refused. Each stream's heartbeat is answered once the server took the stream.
  let refused: { code: number; message: string } | undefined;
  for (let i = 0; i < limits.sessions + 5 && refused === undefined; i++) {
    const s = raw.session();
    s.send({ requestId: 1n, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "busy" }) } });
    s.send({ requestId: 2n, kind: { case: "heartbeat", value: create(HeartbeatRequestSchema, {}) } });
    const taken = await s.answer(2n).then(
      () => true,
      () => false,
    );
    if (taken) sessions.push(s);
    else refused = await s.ended();
  }
  expect(sessions.length).toBe(limits.sessions);
  expect(refused?.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(refused?.message).toMatch(/sessions/);

  // Every stream queues acquires until refused, while the calm tenant is measured: the flood
  // is sent in slices between the calm client's calls, so it lasts the whole measurement.
  const flood: [RawSession, bigint][] = [];
  let id = 3n;
  for (const s of sessions) for (let i = 0; i < limits.queued + 10; i++) flood.push([s, id++]);
  const lastIdOf = new Map(flood.map(([s, i]) => [s, i]));
  let sent = 0;
  const pump = setInterval(() => {
    for (const end = Math.min(flood.length, sent + 100); sent < end; sent++) {
      const [s, requestId] = flood[sent]!;
      s.send({ requestId, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "busy" }) } });
    }
    if (sent === flood.length) clearInterval(pump);
  }, 1);
  const slow = median(await latencies(100));
  await expect.poll(() => sent, { timeout: 10_000 }).toBe(flood.length);
  // Each stream's last acquires were refused: past the limit of waiting acquires per stream.
  for (const [s, last] of lastIdOf) {
    const answer = await s.answer(last);
    expect(answer.kind.case === "failure" && answer.kind.value.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(answer.kind.case === "failure" && answer.kind.value.message).toMatch(/^session:/);
  }
  const admin = createAdminClient({ url: server.url, apiKey: keys.flood });
  const depth = async () => (await admin.getResourceStats("busy")).lanes[0]!.queueDepth;
  // Every stream waits on exactly the limit: the first holds the lease, the others' first acquire waits too.
  expect(await depth()).toBe(limits.sessions * limits.queued);
  const after = median(await latencies(100));
  console.log(`flood: median acquire+release ${baseline.toFixed(2)} ms before, ${slow.toFixed(2)} ms during the flood, ${after.toFixed(2)} ms with ${await depth()} waiting`);
  // Bounds for a loaded 2-core machine; a server that served the flood first would be far past them.
  expect(slow).toBeLessThan(Math.max(5, baseline * 5));
  expect(after).toBeLessThan(Math.max(5, baseline * 3));

  // Leases per session.
  sessions.forEach((s) => s.end());
  await expect.poll(depth, { timeout: 10_000 }).toBe(0);
  await Promise.all(sessions.map((s) => s.ended()));
  const holder = raw.session();
  const answers = [];
  for (let i = 1; i <= limits.leases + 1; i++) {
    holder.send({ requestId: BigInt(i), kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "free" }) } });
    answers.push(await holder.answer(BigInt(i)));
  }
  expect(answers.slice(0, limits.leases).every((a) => a.kind.case === "granted")).toBe(true);
  const over = answers[limits.leases]!;
  expect(over.kind.case === "failure" && over.kind.value.code).toBe(status.RESOURCE_EXHAUSTED);
  holder.end();
  admin.close();
  raw.close();
});

test("a tenant sending ten times another's messages leaves the other's p99 within a generous bound", async () => {
  // Paced round trips of the calm tenant: its p99 alone, then while the flooding tenant's worker
  // process acquires and releases as fast as it can (well over ten times the calm rate).
  const pacedP99 = async (ms: number) => {
    const client = createClient({ url: server.url, apiKey: keys.calm });
    await (await client.acquire("fast")).release();
    const out: number[] = [];
    for (const end = Date.now() + ms; Date.now() < end; ) {
      const t = performance.now();
      await (await client.acquire("fast")).release();
      out.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 10)); // about 100 round trips a second
    }
    await client.close();
    out.sort((a, b) => a - b);
    return { p99: out[Math.floor(0.99 * out.length)]!, count: out.length };
  };
  const alone = await pacedP99(2000);
  const startAt = Date.now() + 1500;
  const flood = runWorker({ url: server.url, apiKey: keys.flood, resource: "free", startAt, durationMs: 4000 });
  await new Promise((r) => setTimeout(r, startAt + 500 - Date.now()));
  const during = await pacedP99(2000);
  const floodGrants = (await flood).filter((l) => l.at !== undefined).length;
  console.log(`tenant flood: calm p99 ${alone.p99.toFixed(2)} ms alone, ${during.p99.toFixed(2)} ms while the other tenant made ${Math.round(floodGrants / 4)} round trips/s (calm: ${Math.round(during.count / 2)}/s)`);
  expect(floodGrants / 4).toBeGreaterThan(10 * (during.count / 2));
  // bench/tenant-flood.js measures it (within 2x there); here the bound only catches a tenant starving another.
  expect(during.p99).toBeLessThan(Math.max(50, 10 * alone.p99));
});
