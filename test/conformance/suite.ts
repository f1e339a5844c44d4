// The conformance scenarios, written once and run against every client
// through its adapter (README.md). Each asserts what the protocol
// (proto/ratequeue/v1/ratequeue.proto, "Session protocol") promises a user,
// on real servers over real sockets; the servers' own statistics are read
// with the TypeScript admin client, which is not under test here.
import { createAdminClient, type AdminClient } from "@ratequeue/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rootKeyFile } from "../support/keys.js";
import { closeRedis, startNode, startProxy, startRedis, waitForLog, type RedisInstance, type TcpProxy } from "../support/redis.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";
import { Adapter, type Answer, type Language } from "./adapter.js";

const rootKey = "conformance-root-key-0123456789abcdefghij";

const config = {
  resources: {
    tokens: { limits: [{ dimension: "load", amount: 100, period: "3600s" }] },
    one: { concurrency: 1, max_queue: 1 },
    many: { lease_ttl: "4s" },
    open: {},
    provider: { limits: [{ dimension: "requests", amount: 20, period: "1s", burst: 2 }] },
    // Each key a child of its own with a cap of 1, inside a generous shared limit.
    tenants: { limits: [{ dimension: "requests", amount: 10_000, period: "1s" }], per_key: { concurrency: 1 }, per_key_idle: "60s" },
  },
};

/** What docs/protocol.md promises of every client. */
const documentedDefaults = {
  url: "http://127.0.0.1:7070",
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  reconnectTimeoutMs: 30_000,
  initialBackoffMs: 50,
  maxBackoffMs: 1000,
  timeoutSlackMs: 2000,
  maxLeaseIdsPerHeartbeat: 1000,
  leaderMetadataKey: "ratequeue-leader",
  namespaceMetadataKey: "ratequeue-namespace",
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The status code of a failed answer (the test fails on a success). */
function code(answer: Answer): string {
  if (answer.ok) throw new Error(`expected a failure, got ${JSON.stringify(answer).slice(0, 300)}`);
  return answer.code;
}

export function conformance(language: Language): void {
  let adapter: Adapter;
  let clientSerial = 0;
  /** Opens a client of the language under test; returns its name and the open answer. */
  const open = async (url: string, fields: Record<string, unknown> = {}) => {
    const client = `c${++clientSerial}`;
    return { client, opened: await adapter.call("open", { client, url, ...fields }) };
  };
  const openOk = async (url: string, fields: Record<string, unknown> = {}) => {
    const { client, opened } = await open(url, fields);
    if (!opened.ok) throw new Error(`open failed: ${opened.code}: ${opened.message}`);
    return client;
  };
  const leasesOf = async (client: string) => {
    const { held, lost } = (await adapter.ok("leases", { client })) as { held: string[]; lost: string[] };
    return { held: [...held].sort(), lost: [...lost].sort() };
  };

  beforeAll(async () => {
    adapter = await Adapter.start(language);
  }, 120_000);
  afterAll(async () => {
    await adapter?.stop();
  });

  test("the defaults are the documented ones, read from the library", async () => {
    expect((await adapter.ok("defaults")).defaults).toEqual(documentedDefaults);
  });

  describe("one server", () => {
    let server: ServerProcess;
    let admin: AdminClient;
    const stats = (resource: string) => admin.getResourceStats(resource);
    const queueDepth = async (resource: string) => (await stats(resource)).lanes.reduce((n, l) => n + l.queueDepth, 0);

    beforeAll(async () => {
      server = await startServerProcess({ config });
      admin = createAdminClient({ url: server.url });
    });
    afterAll(async () => {
      admin?.close();
      await server?.stop();
    });

    test("acquire, release with the actual load, release again", async () => {
      const c = await openOk(server.url);
      const before = Date.now();
      const granted = await adapter.ok("acquire", { client: c, resource: "tokens", load: 30 });
      expect(typeof granted.lease).toBe("string");
      expect(granted.load).toBe(30);
      // Integer server time, on this machine's clock.
      expect(Number.isInteger(granted.grantTimeMs)).toBe(true);
      expect(granted.grantTimeMs).toBeGreaterThanOrEqual(before);
      expect(granted.grantTimeMs).toBeLessThanOrEqual(Date.now());
      // 100 per hour: refills 0.03 per second, so what is left is known to within 0.1.
      const available = async () => (await stats("tokens")).limits[0]!.available;
      expect(await available()).toBeGreaterThanOrEqual(70);
      expect(await available()).toBeLessThan(70.1);
      expect((await adapter.ok("release", { lease: granted.lease, actualLoad: 10 })).outcome).toBe("released");
      // The estimate of 30 was reconciled to 10: 20 refunded.
      expect(await available()).toBeGreaterThanOrEqual(90);
      expect(await available()).toBeLessThan(90.1);
      expect((await adapter.call("release", { lease: granted.lease })).ok).toBe(true);
      expect((await stats("tokens")).leasesInFlight).toBe(0);
      expect(await leasesOf(c)).toEqual({ held: [], lost: [] });
    });

    test("a release that reports the provider's refusal pauses the resource for every caller until its retry-after", async () => {
      const c = await openOk(server.url);
      const first = await adapter.ok("acquire", { client: c, resource: "provider" });
      expect((await adapter.ok("release", { lease: first.lease, throttle: { retryAfterMs: 1000 } })).outcome).toBe("released");
      const s = await stats("provider");
      expect(s.throttles).toBe(1);
      const pausedUntil = s.pausedUntil!.getTime();
      expect(pausedUntil).toBeGreaterThanOrEqual((first.grantTimeMs as number) + 1000);
      // Another client waits out the pause, and the limit resumes at its steady rate: 20/s, one per 50 ms.
      const other = await openOk(server.url);
      const next = await adapter.ok("acquire", { client: other, resource: "provider" });
      expect(next.grantTimeMs).toBeGreaterThanOrEqual(pausedUntil + 50);
      await adapter.ok("release", { lease: next.lease });
    });

    test("cancelling a waiting acquire frees its queue place at once", async () => {
      const c = await openOk(server.url);
      const first = await adapter.ok("acquire", { client: c, resource: "one" });
      const waiting = adapter.send("acquire", { client: c, resource: "one" });
      await expect.poll(() => queueDepth("one")).toBe(1);
      // max_queue 1: the queue is full.
      expect(code(await adapter.call("acquire", { client: c, resource: "one", timeoutMs: 0 }))).toBe("RESOURCE_EXHAUSTED");
      await adapter.ok("cancel", { target: waiting.id });
      expect(code(await waiting.answer)).toBe("CANCELLED");
      await expect.poll(() => queueDepth("one")).toBe(0);
      const next = adapter.send("acquire", { client: c, resource: "one" });
      await expect.poll(() => queueDepth("one")).toBe(1);
      await adapter.ok("release", { lease: first.lease });
      const granted = await next.answer;
      expect(granted.ok).toBe(true);
      await adapter.ok("release", { lease: (granted as Record<string, unknown>).lease });
    });

    test("a wait past its timeout fails DEADLINE_EXCEEDED, decided by the server", async () => {
      const c = await openOk(server.url);
      const held = await adapter.ok("acquire", { client: c, resource: "one" });
      const { timeouts: timeoutsBefore, cancellations: cancellationsBefore } = await stats("one");
      const answer = await adapter.call("acquire", { client: c, resource: "one", timeoutMs: 400 });
      expect(code(answer)).toBe("DEADLINE_EXCEEDED");
      expect(answer.elapsedMs).toBeGreaterThanOrEqual(390);
      // Before the client's own fallback (timeout + 2 s): the server answered.
      expect(answer.elapsedMs).toBeLessThan(400 + documentedDefaults.timeoutSlackMs);
      // The server ended the wait itself, at its deadline (a Go context may return a moment before it does).
      await expect.poll(async () => (await stats("one")).timeouts).toBe(timeoutsBefore + 1);
      expect((await stats("one")).cancellations).toBe(cancellationsBefore);
      await adapter.ok("release", { lease: held.lease });
    });

    test("an unknown resource: NOT_FOUND naming it; a load over the burst: INVALID_ARGUMENT naming the limit", async () => {
      const c = await openOk(server.url);
      const missing = await adapter.call("acquire", { client: c, resource: "no-such-resource" });
      expect(code(missing)).toBe("NOT_FOUND");
      expect(!missing.ok && missing.message).toContain("no-such-resource");
      const tooBig = await adapter.call("acquire", { client: c, resource: "tokens", load: 101 });
      expect(code(tooBig)).toBe("INVALID_ARGUMENT");
      expect(!tooBig.ok && tooBig.message).toMatch(/exceeds the burst 100/);
    });

    test("an acquire with a key is charged to the key's own child: alice's cap of 1 holds her back, not bob; a bad key is INVALID_ARGUMENT", async () => {
      const c = await openOk(server.url);
      const alice = await adapter.ok("acquire", { client: c, resource: "tenants", key: "alice" });
      expect(alice.resource).toBe("tenants/alice");
      // The lease is on the keyed child, made on first use, and counts on the resource too.
      expect((await stats("tenants/alice")).leasesInFlight).toBe(1);
      const parent = await stats("tenants");
      expect(parent.leasesInFlight).toBe(1);
      expect(parent.children).toContainEqual(expect.objectContaining({ name: "tenants/alice", keyed: true, leasesInFlight: 1 }));
      const second = await adapter.call("acquire", { client: c, resource: "tenants", key: "alice", timeoutMs: 300 });
      expect(code(second)).toBe("DEADLINE_EXCEEDED");
      const bob = await adapter.call("acquire", { client: c, resource: "tenants", key: "bob", timeoutMs: 0 });
      expect(bob.ok && bob.resource).toBe("tenants/bob");
      expect((await stats("tenants/bob")).leasesInFlight).toBe(1);
      expect((await adapter.ok("release", { lease: alice.lease })).outcome).toBe("released");
      const again = await adapter.ok("acquire", { client: c, resource: "tenants", key: "alice", timeoutMs: 5000 });
      await adapter.ok("release", { lease: again.lease });
      await adapter.ok("release", { lease: (bob as Record<string, unknown>).lease });
      // An empty key is a missing customer id: refused, never charged to the resource itself.
      for (const key of ["", "has space", "a@b"]) {
        const bad = await adapter.call("acquire", { client: c, resource: "tenants", key, timeoutMs: 0 });
        expect(code(bad)).toBe("INVALID_ARGUMENT");
        expect(!bad.ok && bad.message).toMatch(/key/);
      }
      expect((await stats("tenants")).leasesInFlight).toBe(0);
    });

    describe("through a proxy", () => {
      let proxy: TcpProxy;
      beforeAll(async () => {
        proxy = await startProxy(server.port);
      });
      afterAll(async () => {
        await proxy?.close();
      });

      test("2,500 leases stay held across heartbeats and a reconnect (1,000 ids per heartbeat)", { timeout: 120_000 }, async () => {
        const c = await openOk(`http://127.0.0.1:${proxy.port}`);
        const { leases } = (await adapter.ok("acquireMany", { client: c, resource: "many", count: 2500 })) as { leases: string[] };
        expect(new Set(leases).size).toBe(2500);
        const heldEverywhere = async () => {
          const s = await stats("many");
          expect(s.expirations).toBe(0);
          expect(s.leasesInFlight).toBe(2500);
          const mine = await leasesOf(c);
          expect(mine.lost).toEqual([]);
          expect(mine.held).toHaveLength(2500);
        };
        // Real time passing is the point: more than two lease TTLs (4 s; heartbeats every 1.3 s).
        await sleep(8500);
        await heldEverywhere();
        // Every connection dropped: the client reconnects and re-attaches all of them.
        proxy.reset();
        await sleep(8500);
        await heldEverywhere();
        const { outcomes } = (await adapter.ok("releaseMany", { leases })) as { outcomes: unknown[] };
        expect(outcomes.filter((o) => o === "released")).toHaveLength(2500);
        expect((await stats("many")).leasesInFlight).toBe(0);
      });
    });
  });

  describe("API keys", () => {
    let server: ServerProcess;
    let root: AdminClient;
    beforeAll(async () => {
      server = await startServerProcess({ config, args: ["--root-key-file", rootKeyFile(rootKey)] });
      root = createAdminClient({ url: server.url, apiKey: rootKey });
    });
    afterAll(async () => {
      root?.close();
      await server?.stop();
    });

    test("an unknown key is refused with UNAUTHENTICATED, with a timeout of 0 too", async () => {
      const { client, opened } = await open(server.url, { apiKey: "rq_0000000000000000_not-a-real-secret" });
      // Go's Dial connects at once, the others on first use: the first refusal is what counts.
      const first = opened.ok ? await adapter.call("acquire", { client, resource: "open" }) : opened;
      expect(code(first)).toBe("UNAUTHENTICATED");
      if (opened.ok) expect(code(await adapter.call("acquire", { client, resource: "open", timeoutMs: 0 }))).toBe("UNAUTHENTICATED");
    });

    test("a key revoked mid-stream: the waiting acquire fails, the held lease is lost, later acquires are refused", async () => {
      const { key, apiKey } = await root.createApiKey({ namespace: "default", role: "worker", description: `conformance ${language}` });
      const c = await openOk(server.url, { apiKey: key });
      const held = await adapter.ok("acquire", { client: c, resource: "one" });
      const waiting = adapter.send("acquire", { client: c, resource: "one" });
      await expect.poll(async () => (await root.getResourceStats("one")).lanes[0]!.queueDepth).toBe(1);
      await root.revokeApiKey(apiKey.id);
      expect(code(await waiting.answer)).toBe("UNAUTHENTICATED");
      await expect.poll(() => leasesOf(c)).toEqual({ held: [], lost: [held.lease] });
      // A timeout must never hide the refusal.
      for (let i = 0; i < 3; i++) {
        expect(code(await adapter.call("acquire", { client: c, resource: "open", timeoutMs: 0 }))).toBe("UNAUTHENTICATED");
      }
    });
  });

  test("after a server restart the client reports its lease lost and acquires anew", async () => {
    let server = await startServerProcess({ config });
    try {
      const c = await openOk(server.url);
      const held = await adapter.ok("acquire", { client: c, resource: "open" });
      await server.stop("SIGKILL");
      server = await startServerProcess({ config, port: server.port });
      await expect.poll(() => leasesOf(c), { timeout: 15_000 }).toEqual({ held: [], lost: [held.lease] });
      const again = await adapter.ok("acquire", { client: c, resource: "open", timeoutMs: 10_000 });
      await adapter.ok("release", { lease: again.lease });
    } finally {
      await server.stop();
    }
  });

  test("without any server, a waiting acquire fails UNAVAILABLE after the reconnect timeout", async () => {
    const server = await startServerProcess({ config });
    const c = await openOk(server.url, { reconnectTimeoutMs: 1000 });
    const first = await adapter.ok("acquire", { client: c, resource: "open" });
    await adapter.ok("release", { lease: first.lease });
    await server.stop("SIGKILL");
    const answer = await adapter.call("acquire", { client: c, resource: "open" });
    expect(code(answer)).toBe("UNAVAILABLE");
    expect(answer.elapsedMs).toBeGreaterThanOrEqual(900);
    expect(answer.elapsedMs).toBeLessThan(6000);
  });

  test("a stream refused for another reason (too many sessions) fails the waiting acquire with that code", async () => {
    const server = await startServerProcess({ config, args: ["--max-sessions-per-key", "1"] });
    try {
      const first = await openOk(server.url);
      const held = await adapter.ok("acquire", { client: first, resource: "open" });
      const { client, opened } = await open(server.url);
      const refused = opened.ok ? await adapter.call("acquire", { client, resource: "open" }) : opened;
      expect(code(refused)).toBe("RESOURCE_EXHAUSTED");
      expect(!refused.ok && refused.message).toMatch(/sessions/);
      // The first client is untouched.
      await adapter.ok("release", { lease: held.lease });
    } finally {
      await server.stop();
    }
  });

  describe("a Redis group", () => {
    let redis: RedisInstance;
    let nodes: ServerProcess[] = [];
    beforeAll(async () => {
      redis = await startRedis();
    });
    afterAll(async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      await closeRedis(redis);
    });

    test("a standby sends the client to the leader; after a graceful handover held leases stay held and a waiting acquire is granted by the new leader", { timeout: 60_000 }, async () => {
      const groupConfig = { resources: { one: { concurrency: 1, lease_ttl: "2s" } } };
      const a = await startNode(redis.url, { config: groupConfig });
      await waitForLog(a, (e) => e.msg === "leading");
      const b = await startNode(redis.url, { config: groupConfig });
      nodes = [a, b];
      await waitForLog(b, (e) => e.msg === "standing by");
      // The holder knows only the standby; the waiter knows both nodes.
      const holder = await openOk(b.url);
      const held = await adapter.ok("acquire", { client: holder, resource: "one" });
      const waiter = await openOk(`${a.url},${b.url}`);
      const waiting = adapter.send("acquire", { client: waiter, resource: "one" });
      const onA = createAdminClient({ url: a.url });
      await expect.poll(async () => (await onA.getResourceStats("one")).lanes[0]!.queueDepth).toBe(1);
      onA.close();

      await a.stop("SIGTERM");
      const led = await waitForLog(b, (e) => e.msg === "leading");
      const ledAt = Date.parse(led.time as string);
      const onB = createAdminClient({ url: b.url });
      try {
        // The waiter's acquire was sent again to B and waits there.
        await expect.poll(async () => (await onB.getResourceStats("one")).lanes[0]!.queueDepth, { timeout: 10_000 }).toBe(1);
        // More than a lease TTL (2 s) after the takeover: only re-attached leases are still held.
        await sleep(3000);
        expect(await leasesOf(holder)).toEqual({ held: [held.lease], lost: [] });
        expect((await onB.getResourceStats("one")).leasesInFlight).toBe(1);
        expect((await adapter.ok("release", { lease: held.lease })).outcome).toBe("released");
        const granted = await waiting.answer;
        expect(granted.ok).toBe(true);
        expect((granted as Record<string, unknown>).grantTimeMs).toBeGreaterThanOrEqual(ledAt);
        await adapter.ok("release", { lease: (granted as Record<string, unknown>).lease });
      } finally {
        onB.close();
      }
    });
  });
}
