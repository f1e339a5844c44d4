// A server started from a large config file holds what a server given the
// same resources through PutResources holds: the file's parsed resources
// are let go once the engine has its own copies. Live memory is read as an
// operator would (support/live-heap.ts).
import { createAdminClient, type ResourceConfig } from "@ratequeue/client";
import { afterEach, expect, test } from "vitest";
import { heapSnapshots, liveHeapBytes } from "./support/live-heap.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const count = 20_000;
const resource = (k: number): ResourceConfig => ({
  name: `tenant-${k}`,
  limits: [
    { dimension: "requests", amount: 500, period: "60s", burst: 20 },
    { dimension: "load", amount: 30_000, period: "60s" },
  ],
  concurrency: 8,
});

type Started = { server: ServerProcess; snapshots: ReturnType<typeof heapSnapshots> };
const started: Started[] = [];
afterEach(async () => {
  for (const { server, snapshots } of started.splice(0)) {
    expect(await server.stop()).toBe(0);
    snapshots.remove();
  }
});

/** Starts a server that writes heap snapshots, from a config of `count` resources or of none. */
async function start(fromConfig: boolean): Promise<Started> {
  const snapshots = heapSnapshots();
  const resources: Record<string, Omit<ResourceConfig, "name">> = {};
  if (fromConfig) {
    for (let k = 0; k < count; k++) {
      const { name, ...spec } = resource(k);
      resources[name] = spec;
    }
  }
  const server = await startServerProcess({ nodeArgs: snapshots.nodeArgs, config: { resources } });
  const s = { server, snapshots };
  started.push(s);
  return s;
}

const heapOf = ({ server, snapshots }: Started) => liveHeapBytes(server, snapshots.dir);

test(`${count.toLocaleString("en")} resources from a config file take the heap they take through PutResources`, { timeout: 120_000 }, async () => {
  const fromApi = await start(false);
  const emptyHeap = await heapOf(fromApi);
  const admin = createAdminClient({ url: fromApi.server.url });
  try {
    expect(await admin.putResources(Array.from({ length: count }, (_, k) => resource(k)))).toEqual({ created: count, replaced: 0 });
  } finally {
    admin.close();
  }
  const apiHeap = await heapOf(fromApi);

  const fromFile = await start(true);
  const fileHeap = await heapOf(fromFile);

  // Both engines hold the same resources. The file's parsed resources, when
  // they stayed, were about 500 bytes each on top (20,000: 57 MB against 47).
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  console.log(`live heap: empty ${mb(emptyHeap)}, through PutResources ${mb(apiHeap)}, from the config file ${mb(fileHeap)}`);
  expect(apiHeap - emptyHeap).toBeGreaterThan(count * 200);
  expect(fileHeap - apiHeap).toBeLessThan(count * 200);
});
