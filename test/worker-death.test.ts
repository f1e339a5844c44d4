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

test("a killed worker's slot returns at its TTL", async () => {
  const holder = spawn(process.execPath, [join(repoRoot, "test/fixtures/hold-lease.mjs"), server.url, "solo"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve) => createInterface({ input: holder.stdout }).once("line", () => resolve()));
  // Let it heartbeat at least once, so the expiry clock restarts from then.
  await new Promise((r) => setTimeout(r, ttlMs));

  const client = createClient({ url: server.url });
  const admin = createAdminClient({ url: server.url });
  try {
    const waiting = client.acquire("solo", { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    expect((await admin.getResourceStats("solo")).lanes[0]!.queueDepth).toBe(1);

    const killedAt = Date.now();
    holder.kill("SIGKILL");
    const lease = await waiting;
    const after = Date.now() - killedAt;
    // The lease was last heartbeated at most ttl/3 before the kill.
    expect(after).toBeGreaterThanOrEqual(ttlMs / 2);
    expect(after).toBeLessThanOrEqual(ttlMs + 2000);
    const stats = await admin.getResourceStats("solo");
    expect(stats.expirations).toBe(1n);
    expect(stats.leasesInFlight).toBe(1);
    expect(await lease.release()).toBe("released");
  } finally {
    holder.kill("SIGKILL");
    await client.close();
    admin.close();
  }
});
