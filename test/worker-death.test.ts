// A worker killed with SIGKILL mid-lease loses its slot at the lease TTL,
// and a waiting worker gets it then, not before.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createAdminClient, createClient } from "@ratequeue/client";
import { afterAll, beforeAll, expect, test } from "vitest";
import { repoRoot, startServerProcess, type ServerProcess } from "./support/server-process.js";

const ttlMs = 2000;
let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({ config: { resources: { solo: { concurrency: 1, lease_ttl: "2s" } } } });
});
afterAll(async () => {
  await server.stop();
});

test("a killed worker's slot returns at its TTL, not before", async () => {
  const holder = spawn(process.execPath, [join(repoRoot, "test/fixtures/hold-lease.mjs"), server.url, "solo"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve) => createInterface({ input: holder.stdout }).once("line", () => resolve()));

  const client = createClient({ url: server.url });
  const admin = createAdminClient({ url: server.url });
  try {
    // Real time passing is the point: past one TTL, the live holder's heartbeats keep the lease.
    await new Promise((r) => setTimeout(r, ttlMs * 1.5));
    const alive = await admin.getResourceStats("solo");
    expect(alive.expirations).toBe(0);
    expect(alive.leasesInFlight).toBe(1);

    const waiting = client.acquire("solo", { timeoutMs: 10_000 });
    await expect.poll(async () => (await admin.getResourceStats("solo")).lanes[0]!.queueDepth).toBe(1);
    const killedAt = Date.now();
    holder.kill("SIGKILL");
    const lease = await waiting;
    const after = Date.now() - killedAt;
    // Heartbeats every TTL/3 leave at least 2/3 of a TTL at any moment (less a heartbeat's round trip).
    expect(after).toBeGreaterThanOrEqual((ttlMs * 2) / 3 - 50);
    expect(after).toBeLessThanOrEqual(ttlMs + 1000);
    const stats = await admin.getResourceStats("solo");
    expect(stats.expirations).toBe(1);
    expect(stats.leasesInFlight).toBe(1);
    expect(await lease.release()).toBe("released");
  } finally {
    holder.kill("SIGKILL");
    await client.close();
    admin.close();
  }
});
