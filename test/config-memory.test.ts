// A server started from a large config file holds what a server given the
// same resources through PutResources holds: the file's parsed resources
// are let go once the engine has its own copies. Live memory is read as
// keyed-memory.test.ts reads it: a heap snapshot (which collects garbage
// first), then the heap in use from /metrics.
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAdminClient, type ResourceConfig } from "@ratequeue/client";
import { afterEach, expect, test } from "vitest";
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

const servers: ServerProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) expect(await s.stop()).toBe(0);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts a server that writes a heap snapshot on SIGUSR2, optionally from a config of `count` resources. */
async function start(fromConfig: boolean): Promise<{ server: ServerProcess; snapshots: string }> {
  const snapshots = mkdtempSync(join(tmpdir(), "ratequeue-heap-"));
  const resources: Record<string, Omit<ResourceConfig, "name">> = {};
  if (fromConfig) {
    for (let k = 0; k < count; k++) {
      const { name, ...spec } = resource(k);
      resources[name] = spec;
    }
  }
  const server = await startServerProcess({
    nodeArgs: ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${snapshots}`],
    config: { resources },
  });
  servers.push(server);
  return { server, snapshots };
}

/** The server's live heap, bytes. */
async function liveHeapBytes({ server, snapshots }: { server: ServerProcess; snapshots: string }): Promise<number> {
  const before = readdirSync(snapshots).length;
  server.process.kill("SIGUSR2");
  for (let i = 0; i < 600 && readdirSync(snapshots).length === before; i++) await sleep(100);
  // The snapshot blocks the server's thread: /metrics answers once it is written.
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)![1]);
}

test(`${count.toLocaleString("en")} resources from a config file take the heap they take through PutResources`, { timeout: 120_000 }, async () => {
  const fromApi = await start(false);
  const emptyHeap = await liveHeapBytes(fromApi);
  const admin = createAdminClient({ url: fromApi.server.url });
  try {
    expect(await admin.putResources(Array.from({ length: count }, (_, k) => resource(k)))).toEqual({ created: count, replaced: 0 });
  } finally {
    admin.close();
  }
  const apiHeap = await liveHeapBytes(fromApi);

  const fromFile = await start(true);
  const fileHeap = await liveHeapBytes(fromFile);

  // Both engines hold the same resources. The file's parsed resources, when
  // they stayed, were about 500 bytes each on top (20,000: 57 MB against 47).
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  console.log(`live heap: empty ${mb(emptyHeap)}, through PutResources ${mb(apiHeap)}, from the config file ${mb(fileHeap)}`);
  expect(apiHeap - emptyHeap).toBeGreaterThan(count * 200);
  expect(fileHeap - apiHeap).toBeLessThan(count * 200);
});
