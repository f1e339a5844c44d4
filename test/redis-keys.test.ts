// API keys and namespaces are exactly as durable as resources with Redis:
// they survive a restart of every node and a leader's SIGKILL, a revoked key
// stays revoked, and a group never generates its own root key.
import { spawn } from "node:child_process";
import { status } from "@grpc/grpc-js";
import { createAdminClient, createClient, RateQueueError } from "@ratequeue/client";
import { HeartbeatRequestSchema } from "@ratequeue/proto";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { generateKey } from "../server/src/auth/keys.js";
import { FencedError, RedisStore } from "../server/src/store/index.js";
import { rootKeyFile } from "./support/keys.js";
import { create, RawClient, rqMethods } from "./support/raw-grpc.js";
import { closeRedis, freePort, startNode, startRedis, waitForLog, type RedisInstance } from "./support/redis.js";
import { serverMain, type ServerProcess } from "./support/server-process.js";

const rootKey = "redis-keys-root-key-0123456789abcdefghij";
const leading = (e: Record<string, unknown>) => e.msg === "leading";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// No concurrency cap: after a SIGKILL a cap would count unknown leases for a lease TTL, which is not what these tests are about.
const config = { resources: { api: { lease_ttl: "10s" } } };

let redis: RedisInstance;
let keyFile: string;
const nodes: ServerProcess[] = [];
const closers: (() => unknown)[] = [];
const node = async (prefix: string) => {
  const n = await startNode(redis.url, { config, args: ["--redis-prefix", prefix, "--root-key-file", keyFile] });
  nodes.push(n);
  return n;
};
const admin = (n: ServerProcess, apiKey = rootKey) => {
  const c = createAdminClient({ url: n.url, apiKey });
  closers.push(() => c.close());
  return c;
};
const worker = (n: ServerProcess, apiKey: string) => {
  const c = createClient({ url: n.url, apiKey });
  closers.push(() => c.close());
  return c;
};
const raw = (n: ServerProcess, key: string) => {
  const r = new RawClient(`127.0.0.1:${n.port}`, { key });
  closers.push(() => r.close());
  return r;
};
const heartbeat = (r: RawClient) => r.call(rqMethods.heartbeat, create(HeartbeatRequestSchema, { leaseIds: [] }), 5000);
/** The status code of a heartbeat with this key ("OK" when accepted). */
const codeOf = async (r: RawClient) => {
  const o = await heartbeat(r);
  return o.ok ? "OK" : status[o.code];
};
const refusal = (p: Promise<unknown>) => p.then(() => "OK", (e: unknown) => (e instanceof RateQueueError ? e.code : String(e)));

beforeAll(async () => {
  redis = await startRedis();
  keyFile = rootKeyFile(rootKey);
});
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  await Promise.all(nodes.splice(0).map((n) => n.stop("SIGKILL")));
});
afterAll(async () => {
  await closeRedis(redis);
});

describe("keys and namespaces in Redis", () => {
  test("a restart of every node keeps keys and namespaces; a revoked key stays revoked; Redis holds only hashes", async () => {
    const prefix = "keys-restart";
    const a = await node(prefix);
    await waitForLog(a, leading);
    const root = admin(a);
    const kept = await root.createApiKey({ role: "worker", description: "kept" });
    const revoked = await root.createApiKey({ role: "worker", description: "revoked" });
    await root.createNamespace("team-x");
    const teamAdmin = await root.createApiKey({ namespace: "team-x", role: "admin" });
    await (await worker(a, kept.key).acquire("api", { timeoutMs: 2000 })).release();
    await root.revokeApiKey(revoked.apiKey.id);
    expect(await codeOf(raw(a, revoked.key))).toBe("UNAUTHENTICATED");

    // Keys in one hash (id -> record JSON with the hash, never the key), namespaces in one set.
    const stored = await redis.client.hgetall(`${prefix}:keys`);
    expect(Object.keys(stored).sort()).toEqual([kept.apiKey.id, teamAdmin.apiKey.id].sort());
    for (const json of Object.values(stored)) {
      expect(json).not.toContain(kept.key.slice(16)); // rq_<12-char id>_<secret>
      expect(json).not.toContain(teamAdmin.key.slice(16));
      expect(JSON.parse(json)).toHaveProperty("hash");
    }
    expect(await redis.client.smembers(`${prefix}:namespaces`)).toContain("team-x");

    for (const c of closers.splice(0)) await c();
    await Promise.all(nodes.splice(0).map((n) => n.stop("SIGKILL")));
    const b = await node(prefix);
    await waitForLog(b, leading);
    await (await worker(b, kept.key).acquire("api", { timeoutMs: 2000 })).release();
    expect(await codeOf(raw(b, revoked.key))).toBe("UNAUTHENTICATED");
    expect(await admin(b).listNamespaces()).toContain("team-x");
    // The team-x admin key works in its namespace after the restart.
    await admin(b, teamAdmin.key).putResource({ name: "x", limits: [], concurrency: 1 });
    expect((await admin(b, teamAdmin.key).listApiKeys()).map((k) => k.id)).toEqual([teamAdmin.apiKey.id]);
  });

  test("a group of two: a key made on the leader works after its SIGKILL; revoking on the new leader stops it at once", async () => {
    const prefix = "keys-failover";
    const a = await node(prefix);
    await waitForLog(a, leading);
    const b = await node(prefix);
    await waitForLog(b, (e) => e.msg === "standing by");
    const made = await admin(a).createApiKey({ role: "worker", description: "survives failover" });
    await (await worker(a, made.key).acquire("api", { timeoutMs: 2000 })).release();

    // The standby learns the new key and answers it with the leader hint, not UNAUTHENTICATED.
    const onB = raw(b, made.key);
    const deadline = Date.now() + 3000;
    while ((await codeOf(onB)) !== "UNAVAILABLE") {
      expect(Date.now()).toBeLessThan(deadline);
      await sleep(100);
    }

    await a.stop("SIGKILL");
    await waitForLog(b, leading, 5000);
    expect(await codeOf(onB)).toBe("OK");
    const client = worker(b, made.key);
    const lease = await client.acquire("api", { timeoutMs: 2000 });
    const stream = onB.session();
    stream.send({ requestId: 1n, kind: { case: "heartbeat", value: create(HeartbeatRequestSchema, { leaseIds: [lease.id] }) } });
    expect((await stream.answer(1n)).kind.case).toBe("heartbeat");

    const started = Date.now();
    await admin(b).revokeApiKey(made.apiKey.id);
    expect((await stream.ended(2000)).code).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(onB)).toBe("UNAUTHENTICATED");
    expect(await refusal(client.acquire("api", { timeoutMs: 0 }))).toBe("UNAUTHENTICATED");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await redis.client.hexists(`${prefix}:keys`, made.apiKey.id)).toBe(0);
  });

  test("a deposed leader cannot store or revoke keys, nor change namespaces", async () => {
    const [ra, rb] = [new Redis(redis.port, "127.0.0.1"), new Redis(redis.port, "127.0.0.1")];
    closers.push(() => ra.disconnect(), () => rb.disconnect());
    const [a, b] = [new RedisStore(ra, "keys-fence"), new RedisStore(rb, "keys-fence")];
    const wonA = await a.campaign("a", "127.0.0.1:1", 200);
    if (!("won" in wonA)) throw new Error("a should have won an empty lease");
    const { record } = generateKey("default", "worker", "", 1);
    await a.putKey(wonA.won, record);
    await a.putNamespaces(wonA.won, ["team-f"]);
    await sleep(300);
    const wonB = await b.campaign("b", "127.0.0.1:2", 5000);
    if (!("won" in wonB)) throw new Error("b should have won the lapsed lease");
    await b.deleteKey(wonB.won, record.id);
    // A's late writes: refused, nothing changes.
    await expect(a.putKey(wonA.won, record)).rejects.toThrow(FencedError);
    await expect(a.deleteKey(wonA.won, "whatever")).rejects.toThrow(FencedError);
    await expect(a.putNamespaces(wonA.won, ["team-g"])).rejects.toThrow(FencedError);
    await expect(a.deleteNamespace(wonA.won, "team-f")).rejects.toThrow(FencedError);
    expect(await b.loadKeys()).toEqual({ keys: [], namespaces: ["team-f"] });
    // Deleting what is absent succeeds.
    await b.deleteKey(wonB.won, record.id);
    await b.deleteNamespace(wonB.won, "absent");
  });

  test("a group never generates a root key: a non-loopback node without one refuses to start", async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [serverMain, "serve", "--host", "0.0.0.0", "--port", String(port), "--http-port", "0", "--redis", redis.url, "--redis-prefix", "keys-bootstrap"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    child.stdout!.resume();
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(1);
    expect(stderr).toContain("RATEQUEUE_ROOT_KEY");
    expect(stderr).not.toContain("generated a root key");
    expect(await redis.client.hlen("keys-bootstrap:keys")).toBe(0);
  });
});
