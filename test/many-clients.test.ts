// Very many clients at once: 10 processes each open 1,000 clients, one
// stream each, and all acquire at the same moment. Every acquire must come
// back granted, none may stall until its timeout, and the server's debug
// log accounts for every session, so that a stall could be explained.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, expect, test } from "vitest";
import { repoRoot, startServerProcess, type ServerProcess } from "./support/server-process.js";

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
  const timeoutMs = 30_000;
  const workers = Array.from({ length: processes }, () => {
    const child = spawn(process.execPath, [join(repoRoot, "test/fixtures/many-clients.mjs"), JSON.stringify({ url: server.url, resource: "crowd", warmupResource: "warmup", clients: clientsEach, timeoutMs })], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines: Record<string, unknown>[] = [];
    const ready = new Promise<Record<string, unknown>>((resolve) =>
      createInterface({ input: child.stdout }).on("line", (line) => {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (entry.ready) resolve(entry);
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    return { child, lines, ready, exited };
  });
  const ready = await Promise.all(workers.map((w) => w.ready));
  // Making a client once cost 20 ms of CPU (a TLS context built even for plain connections):
  // 20 s for 1,000, so the acquires of those processes started late and timed out.
  expect(Math.max(...ready.map((r) => r.createCpuMs as number))).toBeLessThan(5000);
  // Every stream is connected: all of them acquire at once.
  for (const w of workers) w.child.stdin.write("go\n");
  expect(await Promise.all(workers.map((w) => w.exited))).toEqual(Array(processes).fill(0));
  const results = workers.map((w) => w.lines);
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
