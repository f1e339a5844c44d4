// Durability on Redis: fenced writes, resources that survive a restart of
// every node, and a lone node that rides out a Redis restart.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createAdminClient, createClient } from "@ratequeue/client";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { FencedError, RedisStore } from "../server/src/store/index.js";
import { closeRedis, startNode, startRedis, waitForLog, type RedisInstance } from "./support/redis.js";
import { repoRoot, type ServerProcess } from "./support/server-process.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const leading = (e: Record<string, unknown>) => e.msg === "leading";

let redis: RedisInstance;
const nodes: ServerProcess[] = [];
const node = async (...args: Parameters<typeof startNode>) => {
  const n = await startNode(...args);
  nodes.push(n);
  return n;
};

beforeAll(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop("SIGKILL")));
});
afterAll(async () => {
  await closeRedis(redis);
});

describe("fencing", () => {
  test("a deposed leader's writes are rejected by the epoch check", async () => {
    const connect = () => new Redis(redis.port, "127.0.0.1");
    const [ra, rb] = [connect(), connect()];
    const a = new RedisStore(ra, "fence");
    const b = new RedisStore(rb, "fence");
    try {
      const wonA = await a.campaign("a", "127.0.0.1:1", 300);
      if (!("won" in wonA)) throw new Error("a should have won an empty lease");
      const termA = wonA.won;
      const lostB = await b.campaign("b", "127.0.0.1:2", 300);
      expect(lostB).toMatchObject({ leader: { epoch: termA.epoch, address: "127.0.0.1:1" } });
      const snap = { version: 1 as const, takenAt: 1, resources: [], leases: [] };
      await a.writeSnapshot(termA, snap);

      // A's lease lapses (A is paused, partitioned...) and B takes over.
      await sleep(400);
      await expect(a.writeSnapshot(termA, snap)).rejects.toThrow(FencedError); // lapsed, nobody leads yet
      const wonB = await b.campaign("b", "127.0.0.1:2", 5000);
      if (!("won" in wonB)) throw new Error("b should have won the lapsed lease");
      expect(wonB.won.epoch).toBe(termA.epoch + 1);
      await b.writeSnapshot(wonB.won, { ...snap, takenAt: 2 });

      // Every late write of A is refused and changes nothing.
      await expect(a.writeSnapshot(termA, { ...snap, takenAt: 3 })).rejects.toThrow(FencedError);
      await expect(a.putResources(termA, [{ name: "x", limits: [], concurrency: 1, lanes: [], defaultLane: "", leaseTtlMs: 1000, maxQueue: 1 }])).rejects.toThrow(
        FencedError,
      );
      await expect(a.deleteResource(termA, "x")).rejects.toThrow(FencedError);
      expect(await a.renew(termA, 5000, Date.now() + 5000)).toBe(false);
      expect(await a.resign(termA)).toBe(false);
      const state = await b.load();
      expect(state.snapshot?.snapshot.takenAt).toBe(2);
      expect(state.snapshot?.term).toBe(wonB.won.value);
      expect(state.resources.size).toBe(0);
      expect((await b.leader())?.address).toBe("127.0.0.1:2");
    } finally {
      ra.disconnect();
      rb.disconnect();
    }
  });
});

describe("durable configuration", () => {
  test("a restart of every node keeps every resource and its limits; config only seeds", async () => {
    const prefix = ["--redis-prefix", "restart"];
    const config = { resources: { seeded: { concurrency: 2 }, kept: { concurrency: 3 } } };
    const first = [await node(redis.url, { config, args: prefix }), await node(redis.url, { config, args: prefix })];
    await Promise.race(first.map((n) => waitForLog(n, leading)));
    const url = first.map((n) => n.url).join(",");
    const admin = createAdminClient({ url });
    try {
      // The first call may reach the standby; the client follows its hint.
      const put = () =>
        admin.putResource({
          name: "added",
          limits: [{ dimension: "requests", amount: 7, period: "2s", burst: 3 }],
          concurrency: 4,
          leaseTtl: "9s",
        });
      await put().catch(put);
      await admin.deleteResource("seeded");
    } finally {
      admin.close();
    }

    // Kill every node (no graceful handover) and start a fresh group with the same config.
    await Promise.all(first.map((n) => n.stop("SIGKILL")));
    const second = [await node(redis.url, { config, args: prefix }), await node(redis.url, { config, args: prefix })];
    await Promise.race(second.map((n) => waitForLog(n, leading, 15_000)));
    const admin2 = createAdminClient({ url: second.map((n) => n.url).join(",") });
    try {
      const list = () => admin2.listResources();
      const resources = await list().catch(list);
      expect(resources.map((r) => r.name).sort()).toEqual(["added", "kept"]); // a deleted seed stays deleted
      const added = resources.find((r) => r.name === "added")!;
      expect(added.concurrency).toBe(4);
      expect(added.limits).toEqual([{ dimension: "requests", amount: 7, period: "2s", burst: 3 }]);
      expect(added.leaseTtl).toBe("9s");
    } finally {
      admin2.close();
    }
  });
});

/** The standard health service's status of `service` on a node. */
async function healthOf(n: ServerProcess, service: string): Promise<string> {
  const definition = protoLoader.loadSync(join(repoRoot, "node_modules/grpc-health-check/proto/health/v1/health.proto"), { enums: String });
  const pkg = grpc.loadPackageDefinition(definition) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${n.port}`, grpc.credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) =>
      health.Check({ service }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r.status))),
    );
  } finally {
    health.close();
  }
}

describe("a group of two", () => {
  test("the standby refuses with the leader's address; health; a graceful handover keeps held leases", async () => {
    const args = ["--redis-prefix", "handover"];
    const config = { resources: { api: { concurrency: 2, lease_ttl: "5s" } } };
    const a = await node(redis.url, { config, args });
    await waitForLog(a, leading);
    const b = await node(redis.url, { config, args });
    await waitForLog(b, (e) => e.msg === "standing by");

    expect(await healthOf(a, "")).toBe("SERVING");
    expect(await healthOf(b, "")).toBe("NOT_SERVING");
    expect(await healthOf(b, "ratequeue.v1.Standby")).toBe("SERVING");
    expect(await healthOf(b, "ratequeue.v1.Redis")).toBe("SERVING");

    // A worker call to the standby: UNAVAILABLE naming the leader in the trailer.
    const raw = new grpc.Client(`127.0.0.1:${b.port}`, grpc.credentials.createInsecure());
    const refused = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest(
        "/ratequeue.v1.RateQueueService/Heartbeat",
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (err) => resolve(err!),
      ),
    );
    raw.close();
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    expect(refused.metadata.get("ratequeue-leader")).toEqual([`127.0.0.1:${a.port}`]);

    // The client is given the standby first and finds the leader by the hint.
    const client = createClient({ url: `${b.url},${a.url}` });
    try {
      const held = await client.acquire("api", { timeoutMs: 5000 });
      const stoppedAt = Date.now();
      expect(await a.stop("SIGTERM")).toBe(0); // final snapshot, then resigns
      const took = await waitForLog(b, leading, 5000);
      expect(took.from).toBe("final snapshot");
      expect(took.leases).toBe(1);
      console.log(`graceful handover: ${Date.parse(took.time as string) - stoppedAt} ms`);
      expect(await healthOf(b, "")).toBe("SERVING");
      // On the new stream the re-attach heartbeat goes before any acquire, so once this one is
      // granted the held lease has been answered for: still held.
      await (await client.acquire("api", { timeoutMs: 5000 })).release();
      expect(held.signal.aborted).toBe(false);
      expect(await held.release()).toBe("released");
    } finally {
      await client.close();
    }
  });
});

describe("Redis outage on a lone node", () => {
  test("--redis-loss stop: stops granting, no crash, resumes and writes its state again when Redis returns", async () => {
    const prefix = "outage-stop";
    // Redis comes back empty, so another node may have led meanwhile: the cap counts unknown leases
    // for one lease TTL after the node leads again. A short one keeps the test short.
    const n = await node(redis.url, { config: { resources: { api: { concurrency: 5, lease_ttl: "5s" } } }, args: ["--redis-prefix", prefix] });
    await waitForLog(n, leading);
    const client = createClient({ url: n.url });
    try {
      const held = await client.acquire("api");
      await redis.client.del(`${prefix}:snapshot`);

      await redis.stop(true); // the data is gone with it (no persistence)
      await waitForLog(n, (e) => e.msg === "stopped granting", 5000);
      // The node answers UNAVAILABLE, so the client tries elsewhere until the timeout's 2 s of slack end.
      await expect(client.acquire("api", { timeoutMs: 0 })).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED", message: expect.stringMatching(/could not be reached/) });
      await sleep(500);
      await redis.start();

      // Back: the node leads again from its memory and writes it to the empty Redis.
      const back = await waitForLog(n, (e) => e.msg === "leading" && e.epoch === 1 && String(e.from).startsWith("memory"), 10_000);
      expect(back.resources).toBe(1);
      const stored = JSON.parse((await waitForKey(`${prefix}:snapshot`))!) as { snapshot: { leases: { id: string }[] } };
      expect(stored.snapshot.leases.map((l) => l.id)).toContain(held.id);
      expect(await redis.client.hkeys(`${prefix}:resources`)).toEqual(["api"]);
      expect(back.unknownLeases).toBe(4);
      const again = await client.acquire("api", { timeoutMs: 10_000 });
      await again.release();
      expect(await held.release()).toBe("released"); // the lease survived in memory
      expect(n.process.exitCode).toBeNull();
    } finally {
      await client.close();
    }
  });

  test("--redis-loss continue: a single node keeps granting from memory while Redis is down", async () => {
    const prefix = "outage-continue";
    const n = await node(redis.url, {
      config: { resources: { api: { concurrency: 5 } } },
      args: ["--redis-prefix", prefix, "--redis-loss", "continue"],
    });
    await waitForLog(n, leading);
    const client = createClient({ url: n.url });
    const admin = createAdminClient({ url: n.url });
    try {
      await redis.stop(true);
      await sleep(1500); // past the 1 s leader TTL
      const lease = await client.acquire("api", { timeoutMs: 2000 });
      await lease.release();
      await expect(admin.putResource({ name: "new", concurrency: 1 })).rejects.toMatchObject({ code: "UNAVAILABLE" });
      await redis.start();
      await waitForKey(`${prefix}:snapshot`);
      expect(await redis.client.hkeys(`${prefix}:resources`)).toEqual(["api"]);
      await admin.putResource({ name: "new", concurrency: 1 });
      expect(n.process.exitCode).toBeNull();
    } finally {
      admin.close();
      await client.close();
    }
  });
});

async function waitForKey(key: string, timeoutMs = 10_000): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await redis.client.get(key).catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`${key} not written within ${timeoutMs} ms`);
    await sleep(50);
  }
}
