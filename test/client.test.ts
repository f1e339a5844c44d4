// The TypeScript client against a real server process: errors by cause,
// cancellation, releases, reconnect with lease re-attach.
import { createAdminClient, createClient, RateQueueError, type RateQueueClient } from "@ratequeue/client";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { startProxy } from "./support/redis.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const config = {
  resources: {
    one: { concurrency: 1, lease_ttl: "5s", max_queue: 2 },
    tokens: { limits: [{ dimension: "load", amount: 1000, period: "60s", burst: 1000 }], lanes: { "user-facing": 3, batch: 1 } },
  },
};

let server: ServerProcess;
const clients: RateQueueClient[] = [];
const client = () => {
  const c = createClient({ url: server.url });
  clients.push(c);
  return c;
};
const admin = () => createAdminClient({ url: server.url });
const queueDepth = async (resource: string) => {
  const a = admin();
  const stats = await a.getResourceStats(resource);
  a.close();
  return stats.lanes.reduce((n, l) => n + l.queueDepth, 0);
};
const failure = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RateQueueError);
  return err as RateQueueError;
};

beforeAll(async () => {
  server = await startServerProcess({ config });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await server.stop();
});

describe("errors name their cause", () => {
  test("unknown resource: NOT_FOUND", async () => {
    const err = await failure(client().acquire("missing"));
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message).toContain("missing");
  });

  test("a load that can never fit: INVALID_ARGUMENT naming the limit", async () => {
    const err = await failure(client().acquire("tokens", { load: 5000 }));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message).toMatch(/burst 1000/);
  });

  test("an unknown lane: INVALID_ARGUMENT listing the lanes", async () => {
    const err = await failure(client().acquire("tokens", { lane: "vip" }));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message).toContain("user-facing");
  });

  test("bad fields: INVALID_ARGUMENT naming the field", async () => {
    expect((await failure(client().acquire("tokens", { load: -1 }))).message).toMatch(/^load:/);
    expect((await failure(client().acquire("bad name!"))).message).toMatch(/^resource:/);
    expect((await failure(client().acquire("tokens", { priority: 1.5 }))).message).toMatch(/^priority:/);
  });

  test("a wait past its timeout: DEADLINE_EXCEEDED; a full queue: RESOURCE_EXHAUSTED", async () => {
    const c = client();
    const held = await c.acquire("one");
    const started = Date.now();
    const err = await failure(c.acquire("one", { timeoutMs: 300 }));
    expect(err.code).toBe("DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect((await failure(c.acquire("one", { timeoutMs: 0 }))).code).toBe("DEADLINE_EXCEEDED");

    const waiters = [c.acquire("one"), c.acquire("one")];
    await expect.poll(() => queueDepth("one")).toBe(2);
    expect((await failure(c.acquire("one"))).code).toBe("RESOURCE_EXHAUSTED");
    await held.release();
    await (await waiters[0]!).release();
    await (await waiters[1]!).release();
  });
});

test("aborting a waiting acquire removes it from the queue at once", async () => {
  const c = client();
  const held = await c.acquire("one");
  const controller = new AbortController();
  const waiting = c.acquire("one", { signal: controller.signal });
  await expect.poll(() => queueDepth("one")).toBe(1);
  controller.abort();
  expect((await failure(waiting)).code).toBe("CANCELLED");
  await expect.poll(() => queueDepth("one")).toBe(0);
  await held.release();
  // The slot went to nobody else: a new acquire gets it at once.
  await (await c.acquire("one", { timeoutMs: 0 })).release();
});

test("withLease releases on throw; release twice says so; actual load reconciles", async () => {
  const c = client();
  await expect(
    c.withLease("one", {}, () => {
      throw new Error("provider failed");
    }),
  ).rejects.toThrow("provider failed");
  const lease = await c.acquire("one", { timeoutMs: 0 });
  expect(await lease.release()).toBe("released");

  const a = admin();
  const before = (await a.getResourceStats("tokens")).limits[0]!.available;
  const big = await c.acquire("tokens", { load: 500 });
  expect(await big.release({ actualLoad: 100 })).toBe("released");
  const after = (await a.getResourceStats("tokens")).limits[0]!.available;
  // 500 estimated, 100 used: only ~100 stays spent (plus refill since).
  expect(before - after).toBeLessThan(110);
  expect(before - after).toBeGreaterThan(90);
  a.close();
});

test("after a server restart the client learns its lease is gone and reconnects for new acquires", async () => {
  // A dedicated server on a fixed port, restarted in place.
  const own = await startServerProcess({ config });
  const url = own.url;
  const c = createClient({ url });
  clients.push(c);
  const lease = await c.acquire("one");
  expect(lease.signal.aborted).toBe(false);
  await own.stop("SIGKILL");
  // A new server on the same port knows nothing of the lease: the client
  // must learn that it is lost, not believe it still holds it.
  const again = await startServerProcess({ config, port: own.port });
  try {
    await expect.poll(() => lease.signal.aborted, { timeout: 10_000 }).toBe(true);
    // And it serves new acquires over the re-established stream.
    await (await c.acquire("one", { timeoutMs: 5000 })).release();
  } finally {
    await again.stop();
  }
});

test("an acquire waiting when its server shuts down is sent again to the server that takes over", async () => {
  const own = await startServerProcess({ config });
  const c = createClient({ url: own.url });
  clients.push(c);
  await c.acquire("one");
  const waiting = c.acquire("one", { timeoutMs: 20_000 });
  await expect.poll(async () => {
    const a = createAdminClient({ url: own.url });
    const depth = (await a.getResourceStats("one")).lanes[0]!.queueDepth;
    a.close();
    return depth;
  }).toBe(1);
  expect(await own.stop("SIGTERM")).toBe(0);
  // The waiter was answered UNAVAILABLE by the departing server; the client
  // keeps it and sends it again once a server answers on the address.
  const next = await startServerProcess({ config, port: own.port });
  try {
    const lease = await waiting;
    expect(await lease.release()).toBe("released");
  } finally {
    await next.stop();
  }
});

test("an acquire sent again after a reconnect asks only for the time it has left", async () => {
  // Through a proxy that drops the connection: the server stays, the client's
  // first lease stays held, and the re-sent acquire waits again for it.
  const proxy = await startProxy(server.port);
  const c = createClient({ url: `127.0.0.1:${proxy.port}` });
  clients.push(c);
  const held = await c.acquire("one");
  const started = Date.now();
  const waiting = failure(c.acquire("one", { timeoutMs: 3000 }));
  await new Promise((r) => setTimeout(r, 1000));
  proxy.reset();
  try {
    const err = await waiting;
    expect(err.code).toBe("DEADLINE_EXCEEDED");
    const elapsed = Date.now() - started;
    // Answered by the server at the original deadline, not a full timeout after the re-send.
    expect(elapsed).toBeGreaterThanOrEqual(2900);
    expect(elapsed).toBeLessThan(3900);
    expect(await held.release()).toBe("released");
  } finally {
    await proxy.close();
  }
});
