// Quotas inside a shared limit, end to end: three tenants' worker processes
// acquire with their keys under one parent budget. Every level's bound holds
// on the server's grant times, the parent is shared by the tenants' shares,
// and a tenant that stops leaves its share to the others.
import { afterAll, beforeAll, expect, test } from "vitest";
import { findViolation } from "./support/invariant.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";
import { runWorker, type WorkerLine } from "./support/workers.js";

const parent = { amount: 60, periodMs: 1000, burst: 2 };
const child = { amount: 40, periodMs: 1000, burst: 4 };
const tenantLimits = [{ dimension: "requests", amount: child.amount, period: "1s", burst: child.burst }];

let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({
    config: {
      resources: {
        llm: {
          limits: [{ dimension: "requests", amount: parent.amount, period: "1s", burst: parent.burst }],
          per_key: { limits: tenantLimits },
        },
        // Declared children override the template for their keys: a's share is 2.
        "llm/a": { parent: "llm", share: 2, limits: tenantLimits },
        "llm/b": { parent: "llm", share: 1, limits: tenantLimits },
        warmup: {},
      },
    },
  });
});
afterAll(async () => {
  expect(await server.stop()).toBe(0);
});

test("three tenants with shares 2:1:1 share a saturated parent by weight, within every level's bound", async () => {
  const startAt = Date.now() + 3000;
  const worker = (key: string, durationMs: number) =>
    runWorker({ url: server.url, resource: "llm", key, warmupResource: "warmup", startAt, durationMs, inFlight: 8, acquireTimeoutMs: 30_000 });
  // c is a keyed child made from the template on its first acquire; it stops after 5 s.
  const [a, b, c] = await Promise.all([worker("a", 9000), worker("b", 9000), worker("c", 5000)]);
  const grants = (lines: WorkerLine[]) => lines.filter((l) => l.at !== undefined);
  for (const [name, lines] of [["a", a], ["b", b], ["c", c]] as const) {
    expect(lines.filter((l) => l.error !== undefined)).toEqual([]);
    expect(new Set(grants(lines).map((g) => g.resource))).toEqual(new Set([`llm/${name}`]));
    expect(findViolation(grants(lines).map((g) => ({ at: g.at!, cost: 1 })), child), `llm/${name}`).toBeUndefined();
  }
  const all = [...grants(a), ...grants(b), ...grants(c)];
  expect(findViolation(all.map((g) => ({ at: g.at!, cost: 1 })), parent), "llm").toBeUndefined();

  const count = (lines: WorkerLine[], from: number, to: number) => grants(lines).filter((g) => g.at! >= startAt + from && g.at! < startAt + to).length;
  // All busy (1 s to 5 s): 60/s shared 2:1:1, within 10 % of each share.
  const busy = [count(a, 1000, 5000), count(b, 1000, 5000), count(c, 1000, 5000)];
  const total = busy[0]! + busy[1]! + busy[2]!;
  console.log(`quotas: all busy ${busy.join(":")} of ${total} (${(total / 4).toFixed(1)}/s)`);
  expect(total).toBeGreaterThanOrEqual(0.9 * 4 * parent.amount);
  expect(busy[0]! / total).toBeGreaterThan(0.5 * 0.9);
  expect(busy[0]! / total).toBeLessThan(0.5 * 1.1);
  for (const share of [busy[1]!, busy[2]!]) {
    expect(share / total).toBeGreaterThan(0.25 * 0.9);
    expect(share / total).toBeLessThan(0.25 * 1.1);
  }
  // c stopped at 5 s: from 6 s on, a and b use the whole parent; a reaches its own cap (40/s), b takes the rest.
  const after = [count(a, 6000, 9000), count(b, 6000, 9000)];
  console.log(`quotas: after c stopped ${after.join(":")} in 3 s`);
  expect(after[0]! + after[1]!).toBeGreaterThanOrEqual(0.9 * 3 * parent.amount);
  expect(after[0]!).toBeGreaterThan(0.9 * 3 * child.amount);
  expect(after[1]!).toBeGreaterThan(busy[1]! * (3 / 4) * 1.1);
});
