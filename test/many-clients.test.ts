// Very many clients at once: 10 processes each open 1,000 clients, one
// stream each, and all acquire at the same moment. Every acquire must come
// back granted, none may stall until its timeout, and the server's debug
// log accounts for every session, so that a stall could be explained.
import { afterAll, beforeAll, expect, test } from "vitest";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";
import { runWorker } from "./support/workers.js";

const processes = 10;
const clientsEach = 1000;
let server: ServerProcess;

beforeAll(async () => {
  server = await startServerProcess({
    // 10,000 grants at 2,000/s: the queue holds most of them for a few seconds.
    config: { resources: { crowd: { limits: [{ dimension: "requests", amount: 2000, period: "1s", burst: 500 }], max_queue: 20_000 }, warmup: {} } },
    args: ["--max-sessions-per-key", "20000", "--log-level", "debug"],
  });
});
afterAll(async () => {
  await server.stop();
});

test("10 processes × 1,000 clients acquiring at once: all granted, none stalls, every session logged", { timeout: 180_000 }, async () => {
  // Every process must have its 1,000 clients connected by then. Making a client once cost
  // 20 ms of blocked event loop (a TLS context built even for plain connections): 20 s per process.
  const startAt = Date.now() + 10_000;
  const timeoutMs = 30_000;
  const results = await Promise.all(
    Array.from({ length: processes }, () =>
      runWorker({ url: server.url, resource: "crowd", warmupResource: "warmup", clients: clientsEach, startAt, timeoutMs }, "many-clients.mjs"),
    ),
  );
  const readyAt = results.map((lines) => (lines.find((l) => l.ready) as unknown as { at: number }).at);
  expect(Math.max(...readyAt)).toBeLessThan(startAt);
  const outcomes = results.map((lines) => lines.find((l) => "granted" in l) as unknown as { granted: number; failures: Record<string, number>; slowestMs: number });
  const granted = outcomes.reduce((n, o) => n + o.granted, 0);
  const slowest = Math.max(...outcomes.map((o) => o.slowestMs));
  console.log(`many clients: ${granted} of ${processes * clientsEach} granted, the slowest after ${slowest} ms`);
  expect(outcomes.map((o) => o.failures)).toEqual(Array(processes).fill({}));
  expect(granted).toBe(processes * clientsEach);
  // 10,000 at 2,000/s after a burst of 500: under 5 s of queueing; a stall would reach the 30 s timeout.
  expect(slowest).toBeLessThan(timeoutMs / 2);
  // The debug log accounts for every session: opened, and closed when its client closed.
  await expect.poll(() => server.logs.filter((e) => e.msg === "session closed").length, { timeout: 30_000 }).toBe(processes * clientsEach);
  expect(server.logs.filter((e) => e.msg === "session opened")).toHaveLength(processes * clientsEach);
  expect(server.logs.filter((e) => e.msg === "session refused")).toEqual([]);
});
