// Ten worker processes share one resource and each goes as fast as it can:
// together they stay within every limit and use the budget.
import { afterAll, beforeAll, expect, test } from "vitest";
import { findViolation, maxOverlap } from "./support/invariant.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";
import { runWorker } from "./support/workers.js";

const requests = { amount: 100, periodMs: 1000, burst: 10 };
const load = { amount: 2500, periodMs: 1000, burst: 250 };
const concurrency = 8;

let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({
    config: {
      resources: {
        shared: {
          limits: [
            { dimension: "requests", amount: 100, period: "1s", burst: 10 },
            { dimension: "load", amount: 2500, period: "1s", burst: 250 },
          ],
          concurrency,
        },
        warmup: {},
      },
    },
  });
});
afterAll(async () => {
  expect(await server.stop()).toBe(0);
});

test("10 worker processes stay within every limit and use at least 90% of the budget", async () => {
  const startAt = Date.now() + 3000;
  const durationMs = 4000;
  const results = await Promise.all(
    Array.from({ length: 10 }, () =>
      runWorker({ url: server.url, resource: "shared", warmupResource: "warmup", startAt, durationMs, load: 20, holdMs: 5 }),
    ),
  );
  const lines = results.flat();
  expect(lines.filter((l) => l.error !== undefined)).toEqual([]);
  const grants = lines.filter((l) => l.at !== undefined);

  expect(findViolation(grants.map((g) => ({ at: g.at!, cost: 1 })), requests)).toBeUndefined();
  expect(findViolation(grants.map((g) => ({ at: g.at!, cost: g.load! })), load)).toBeUndefined();
  // The provider calls (client side, inside each lease) never overlap more than the cap.
  expect(maxOverlap(grants.map((g) => ({ start: g.start!, end: g.stop! })))).toBeLessThanOrEqual(concurrency);

  // Use: grants inside the run's window against what the request limit allows.
  const inWindow = grants.filter((g) => g.at! >= startAt && g.at! <= startAt + durationMs).length;
  const allowed = requests.burst + (durationMs * requests.amount) / requests.periodMs;
  console.log(`fleet: ${inWindow} grants of ${allowed} allowed in ${durationMs} ms (${((100 * inWindow) / allowed).toFixed(1)}%)`);
  expect(inWindow).toBeGreaterThanOrEqual(0.9 * allowed);
  expect(inWindow).toBeLessThanOrEqual(allowed);
});
