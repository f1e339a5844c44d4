// A million customers, each seen once: keyed children are made on first
// use and forgotten once idle, so the server's memory comes back to where it
// started. Live memory is read as an operator would (support/live-heap.ts).
import { createAdminClient, createClient } from "@ratequeue/client";
import { afterAll, beforeAll, expect, test } from "vitest";
import { heapSnapshots, liveHeapBytes, metric } from "./support/live-heap.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const keys = 1_000_000;
/** Keys of the warm-up, before the start is measured. */
const warmKeys = 200_000;
const snapshots = heapSnapshots();
let server: ServerProcess;

beforeAll(async () => {
  server = await startServerProcess({
    nodeArgs: snapshots.nodeArgs,
    config: {
      resources: {
        customers: {
          limits: [{ dimension: "requests", amount: 1_000_000, period: "1s" }],
          per_key: { limits: [{ dimension: "requests", amount: 60, period: "60s", burst: 5 }], concurrency: 4 },
          // Shortened for the test (default 10 min): a key is forgotten 2 s after its budget is full again.
          per_key_idle: "2s",
        },
        warmup: {},
      },
    },
  });
});
afterAll(async () => {
  expect(await server.stop()).toBe(0);
  snapshots.remove();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test(`${keys.toLocaleString("en")} keys seen once each: keyed children are forgotten and live memory returns to its start`, async () => {
  const client = createClient({ url: server.url });
  const admin = createAdminClient({ url: server.url });
  /** Waits until every keyed child is forgotten (a key's budget is full 1 s after its grant, then idle 2 s); the children left. */
  const untilForgotten = async (): Promise<number> => {
    let left = (await admin.getResourceStats("customers")).childrenCount;
    for (let i = 0; i < 100 && left > 0; i++) {
      await sleep(200);
      left = (await admin.getResourceStats("customers")).childrenCount;
    }
    return left;
  };
  try {
    // A server that has served: every bounded structure (tombstones of ended leases, buffers, the tables
    // that held the keyed children resident at once) at its working size. Memory that grew with the
    // number of keys would show below: a million keys more than this warm-up.
    let next = 0;
    const run = async (total: number, acquire: (i: number) => Promise<{ release(): Promise<unknown> }>) => {
      next = 0;
      await Promise.all(
        Array.from({ length: 128 }, async () => {
          while (next < total) await (await acquire(next++)).release();
        }),
      );
    };
    await run(200_000, () => client.acquire("warmup"));
    await run(warmKeys, (i) => client.acquire("customers", { key: `warm-${i}` }));
    await untilForgotten();
    const start = await liveHeapBytes(server, snapshots.dir);
    const rssStart = await metric(server, "process_resident_memory_bytes");

    const began = Date.now();
    await run(keys, (i) => client.acquire("customers", { key: `customer-${i}` }));
    const tookMs = Date.now() - began;
    const peak = await admin.getResourceStats("customers", { childrenLimit: 1 });
    const rssPeak = await metric(server, "process_resident_memory_bytes");

    expect(await untilForgotten()).toBe(0);
    const end = await liveHeapBytes(server, snapshots.dir);
    const rssEnd = await metric(server, "process_resident_memory_bytes");
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    console.log(
      `keyed memory: ${keys} keys in ${(tookMs / 1000).toFixed(1)} s, ${peak.childrenCount} children resident at the end of the run; ` +
        `live heap ${mb(start)} -> ${mb(end)}; RSS ${mb(rssStart)}, ${mb(rssPeak)} at the end of the run, ${mb(rssEnd)} after`,
    );
    expect(Math.abs(end - start)).toBeLessThanOrEqual(0.1 * start);
    expect((await admin.getResourceStats("customers")).grants).toBe(warmKeys + keys);
  } finally {
    admin.close();
    await client.close();
  }
}, 300_000);
