// Flood: one client opens streams and queues acquires until the server
// refuses with RESOURCE_EXHAUSTED; meanwhile another tenant's client is
// served at its normal latency, and the flood leaves nothing behind.
import { create } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { createAdminClient, createClient } from "@ratequeue/client";
import { AcquireRequestSchema } from "@ratequeue/proto";
import { afterAll, beforeAll, expect, test } from "vitest";
import { rootKeyFile } from "./support/keys.js";
import { RawClient, type RawSession } from "./support/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

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
  const baseline = median(await latencies(100));
  const raw = new RawClient(`127.0.0.1:${server.port}`, { key: keys.flood });
  const sessions: RawSession[] = [];
  // Streams until refused.
  let refused: { code: number; message: string } | undefined;
  for (let i = 0; i < limits.sessions + 5 && refused === undefined; i++) {
    const s = raw.session();
    s.send({ requestId: 1n, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "busy" }) } });
    await new Promise((r) => setTimeout(r, 20));
    if (s.status !== undefined) refused = s.status;
    else sessions.push(s);
  }
  expect(sessions.length).toBe(limits.sessions);
  expect(refused?.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(refused?.message).toMatch(/sessions/);

  // Every stream queues acquires until refused.
  let id = 2n;
  const during = latencies(100);
  for (const s of sessions) {
    for (let i = 0; i < limits.queued + 10; i++) {
      s.send({ requestId: id++, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "busy" }) } });
    }
  }
  const slow = median(await during);
  const lastOfFirst = await sessions[0]!.answer(2n + BigInt(limits.queued + 5));
  expect(lastOfFirst.kind.case).toBe("failure");
  if (lastOfFirst.kind.case === "failure") {
    expect(lastOfFirst.kind.value.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(lastOfFirst.kind.value.message).toMatch(/^session:/);
  }
  const admin = createAdminClient({ url: server.url, apiKey: keys.flood });
  const depth = async () => (await admin.getResourceStats("busy")).lanes[0]!.queueDepth;
  // One stream holds the lease; the others queued up to the limit each.
  expect(await depth()).toBeLessThanOrEqual(limits.sessions * limits.queued);
  expect(await depth()).toBeGreaterThan((limits.sessions - 1) * limits.queued - 1);
  const after = median(await latencies(100));
  console.log(`flood: median acquire+release ${baseline.toFixed(2)} ms before, ${slow.toFixed(2)} ms during the flood, ${after.toFixed(2)} ms with ${await depth()} waiting`);
  // Generous bounds for a loaded 2-core machine.
  expect(slow).toBeLessThan(Math.max(50, baseline * 20));
  expect(after).toBeLessThan(Math.max(25, baseline * 10));

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
