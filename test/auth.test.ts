// Keys and tenants against a real server: two namespaces, each with worker
// and admin keys; every RPC tried across the boundary is refused without
// revealing what exists elsewhere; a revoked key is refused at once, also on
// an open stream; failed authentication is slowed per peer, never for others.
import { spawn } from "node:child_process";
import { create } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { createAdminClient, createClient, RateQueueError } from "@ratequeue/client";
import {
  AcquireRequestSchema,
  ApiKeyRole,
  CreateApiKeyRequestSchema,
  CreateNamespaceRequestSchema,
  DeleteNamespaceRequestSchema,
  DeleteResourceRequestSchema,
  GetResourceRequestSchema,
  GetResourceStatsRequestSchema,
  HeartbeatRequestSchema,
  ListApiKeysRequestSchema,
  ListNamespacesRequestSchema,
  ListResourcesRequestSchema,
  PutResourceRequestSchema,
  ReleaseOutcome,
  ReleaseRequestSchema,
  RevokeApiKeyRequestSchema,
  type AcquireResponse,
  type HeartbeatResponse,
  type ListResourcesResponse,
  type ReleaseResponse,
  type ResourceStats,
} from "@ratequeue/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rootKeyFile as writeRootKeyFile } from "./support/keys.js";
import { adminMethods, RawClient, rqMethods, type Outcome } from "./support/raw-grpc.js";
import { serverMain, startServerProcess, type ServerProcess } from "./support/server-process.js";

const rootKey = "test-root-key-0123456789abcdefghijklmnop";

const rootKeyFile = (key = rootKey) => writeRootKeyFile(key);

const config = {
  namespaces: {
    "team-a": { resources: { shared: { concurrency: 2 } } },
    "team-b": { resources: { shared: { concurrency: 1 }, "secret-b": { concurrency: 1 } } },
  },
};

let server: ServerProcess;
let target: string;
const keys: Record<string, { key: string; id: string }> = {};
const raws: RawClient[] = [];
const raw = (key?: string, namespace?: string) => {
  const r = new RawClient(target, { key, namespace });
  raws.push(r);
  return r;
};
const code = (o: Outcome<unknown>) => (o.ok ? "OK" : status[o.code]);
const acquireReq = (resource: string) => create(AcquireRequestSchema, { resource, timeout: { seconds: 0n, nanos: 0 } as never });

beforeAll(async () => {
  server = await startServerProcess({ config, args: ["--root-key-file", rootKeyFile()] });
  target = `127.0.0.1:${server.port}`;
  const root = createAdminClient({ url: server.url, apiKey: rootKey });
  for (const ns of ["team-a", "team-b"]) {
    for (const role of ["worker", "admin"] as const) {
      const { key, apiKey } = await root.createApiKey({ namespace: ns, role, description: `${ns} ${role}` });
      expect(key).toMatch(/^rq_[0-9a-z]{12}_[A-Za-z0-9_-]{43}$/);
      keys[`${ns}/${role}`] = { key, id: apiKey.id };
    }
  }
  root.close();
});
afterAll(async () => {
  for (const r of raws) r.close();
  await server.stop();
});

test("calls without a key or with a wrong one: UNAUTHENTICATED; the config's namespaces hold their resources", async () => {
  for (const key of [undefined, "nope", "rq_000000000000_" + "A".repeat(43), keys["team-a/worker"]!.key.slice(0, -1) + "x"]) {
    const out = await raw(key).call(rqMethods.acquire, acquireReq("shared"));
    expect(code(out)).toBe("UNAUTHENTICATED");
  }
  const s = raw().session();
  expect((await s.ended()).code).toBe(status.UNAUTHENTICATED);
  const a = await raw(keys["team-a/worker"]!.key).call<ListResourcesResponse>(adminMethods.listResources, create(ListResourcesRequestSchema, {}));
  expect(a.ok && a.value.resources.map((r) => r.name)).toEqual(["shared"]);
  const b = await raw(keys["team-b/worker"]!.key).call<ListResourcesResponse>(adminMethods.listResources, create(ListResourcesRequestSchema, {}));
  expect(b.ok && b.value.resources.map((r) => r.name)).toEqual(["secret-b", "shared"]);
  const d = await raw(rootKey).call<ListResourcesResponse>(adminMethods.listResources, create(ListResourcesRequestSchema, {}));
  expect(d.ok && d.value.resources).toEqual([]);
});

describe("every RPC across the tenant boundary is refused", () => {
  for (const role of ["worker", "admin"] as const) {
    test(`team-a ${role} against team-b`, async () => {
      const a = raw(keys[`team-a/${role}`]!.key);
      const bAdmin = raw(keys["team-b/admin"]!.key);
      // team-b holds a lease on secret-b.
      const held = await bAdmin.call<AcquireResponse>(rqMethods.acquire, acquireReq("secret-b"));
      expect(held.ok).toBe(true);
      const leaseId = held.ok ? held.value.lease!.leaseId : "";

      expect(code(await a.call(rqMethods.acquire, acquireReq("secret-b")))).toBe("NOT_FOUND");
      const session = a.session();
      session.send({ requestId: 1n, kind: { case: "acquire", value: acquireReq("secret-b") } });
      const answer = await session.answer(1n);
      expect(answer.kind.case === "failure" && status[answer.kind.value.code]).toBe("NOT_FOUND");
      expect(answer.kind.case === "failure" && answer.kind.value.message).not.toContain("team-b");
      session.send({ requestId: 2n, kind: { case: "release", value: create(ReleaseRequestSchema, { leaseId }) } });
      const rel = await session.answer(2n);
      expect(rel.kind.case === "released" && rel.kind.value.outcome).toBe(ReleaseOutcome.UNKNOWN);
      session.send({ requestId: 3n, kind: { case: "heartbeat", value: create(HeartbeatRequestSchema, { leaseIds: [leaseId] }) } });
      const beat = await session.answer(3n);
      expect(beat.kind.case === "heartbeat" && beat.kind.value.leases[0]!.held).toBe(false);
      session.end();

      const release = await a.call<ReleaseResponse>(rqMethods.release, create(ReleaseRequestSchema, { leaseId }));
      expect(release.ok && release.value.outcome).toBe(ReleaseOutcome.UNKNOWN);
      const heartbeat = await a.call<HeartbeatResponse>(rqMethods.heartbeat, create(HeartbeatRequestSchema, { leaseIds: [leaseId] }));
      expect(heartbeat.ok && heartbeat.value.leases[0]!.held).toBe(false);
      expect(code(await a.call(adminMethods.getResource, create(GetResourceRequestSchema, { name: "secret-b" })))).toBe("NOT_FOUND");
      expect(code(await a.call(adminMethods.getResourceStats, create(GetResourceStatsRequestSchema, { name: "secret-b" })))).toBe("NOT_FOUND");
      const del = code(await a.call(adminMethods.deleteResource, create(DeleteResourceRequestSchema, { name: "secret-b" })));
      expect(del).toBe(role === "admin" ? "NOT_FOUND" : "PERMISSION_DENIED");
      // Another namespace by metadata: refused whether or not it exists.
      for (const ns of ["team-b", "no-such-team"]) {
        expect(code(await raw(keys[`team-a/${role}`]!.key, ns).call(rqMethods.acquire, acquireReq("secret-b")))).toBe("PERMISSION_DENIED");
      }
      // Keys: another namespace's keys can be neither made, listed nor revoked.
      const mk = code(await a.call(adminMethods.createApiKey, create(CreateApiKeyRequestSchema, { namespace: "team-b", role: ApiKeyRole.WORKER })));
      expect(mk).toBe("PERMISSION_DENIED");
      expect(code(await a.call(adminMethods.listApiKeys, create(ListApiKeysRequestSchema, { namespace: "team-b" })))).toBe("PERMISSION_DENIED");
      const rv = code(await a.call(adminMethods.revokeApiKey, create(RevokeApiKeyRequestSchema, { id: keys["team-b/worker"]!.id })));
      expect(rv).toBe(role === "admin" ? "NOT_FOUND" : "PERMISSION_DENIED");
      // Namespaces are root's.
      expect(code(await a.call(adminMethods.createNamespace, create(CreateNamespaceRequestSchema, { name: "team-z" })))).toBe("PERMISSION_DENIED");
      expect(code(await a.call(adminMethods.listNamespaces, create(ListNamespacesRequestSchema, {})))).toBe("PERMISSION_DENIED");
      expect(code(await a.call(adminMethods.deleteNamespace, create(DeleteNamespaceRequestSchema, { name: "team-b" })))).toBe("PERMISSION_DENIED");

      // team-b's lease was untouched by all of it.
      const stats = await bAdmin.call<{ stats: ResourceStats }>(adminMethods.getResourceStats, create(GetResourceStatsRequestSchema, { name: "secret-b" }));
      expect(stats.ok && stats.value.stats.leasesInFlight).toBe(1);
      const done = await bAdmin.call<ReleaseResponse>(rqMethods.release, create(ReleaseRequestSchema, { leaseId }));
      expect(done.ok && done.value.outcome).toBe(ReleaseOutcome.RELEASED);
    });
  }

  test("a same-named resource is each tenant's own; PutResource by one never touches the other", async () => {
    const aAdmin = raw(keys["team-a/admin"]!.key);
    const put = await aAdmin.call(adminMethods.putResource, create(PutResourceRequestSchema, { resource: { name: "shared", concurrency: 7 } }));
    expect(put.ok).toBe(true);
    const b = await raw(keys["team-b/worker"]!.key).call<{ resource: { concurrency: number } }>(
      adminMethods.getResource,
      create(GetResourceRequestSchema, { name: "shared" }),
    );
    expect(b.ok && b.value.resource.concurrency).toBe(1);
    // A grant names the resource as the tenant knows it.
    const lease = await aAdmin.call<AcquireResponse>(rqMethods.acquire, acquireReq("shared"));
    expect(lease.ok && lease.value.lease!.resource).toBe("shared");
    if (lease.ok) await aAdmin.call(rqMethods.release, create(ReleaseRequestSchema, { leaseId: lease.value.lease!.leaseId }));
  });

  test("workers cannot change resources or keys", async () => {
    const w = raw(keys["team-a/worker"]!.key);
    expect(code(await w.call(adminMethods.putResource, create(PutResourceRequestSchema, { resource: { name: "x" } })))).toBe("PERMISSION_DENIED");
    expect(code(await w.call(adminMethods.createApiKey, create(CreateApiKeyRequestSchema, { role: ApiKeyRole.WORKER })))).toBe("PERMISSION_DENIED");
    expect(code(await w.call(adminMethods.listApiKeys, create(ListApiKeysRequestSchema, {})))).toBe("PERMISSION_DENIED");
    const a = raw(keys["team-a/admin"]!.key);
    expect(code(await a.call(adminMethods.createApiKey, create(CreateApiKeyRequestSchema, { role: ApiKeyRole.ROOT })))).toBe("PERMISSION_DENIED");
    const listed = await a.call<{ apiKeys: { namespace: string; id: string }[] }>(adminMethods.listApiKeys, create(ListApiKeysRequestSchema, {}));
    expect(listed.ok && new Set(listed.value.apiKeys.map((k) => k.namespace))).toEqual(new Set(["team-a"]));
  });
});

test("a revoked key is refused at once: unary calls, an open stream, a waiting acquire", async () => {
  const admin = createAdminClient({ url: server.url, apiKey: keys["team-a/admin"]!.key });
  await admin.putResource({ name: "shared", concurrency: 7 });
  const { key, apiKey } = await admin.createApiKey({ role: "worker", description: "to revoke" });
  const worker = createClient({ url: server.url, apiKey: key });
  const lease = await worker.acquire("shared");
  const r = raw(key);
  const s = r.session();
  s.send({ requestId: 1n, kind: { case: "heartbeat", value: create(HeartbeatRequestSchema, { leaseIds: [lease.id] }) } });
  expect((await s.answer(1n)).kind.case).toBe("heartbeat");
  // Fill the resource (concurrency 7) and leave one unary acquire waiting.
  const fill = [];
  for (let i = 0; i < 6; i++) fill.push(await worker.acquire("shared"));
  const waiting = r.call(rqMethods.acquire, create(AcquireRequestSchema, { resource: "shared" }), 20_000);
  await expect.poll(async () => (await admin.getResourceStats("shared")).lanes[0]!.queueDepth).toBe(1);

  const started = Date.now();
  await admin.revokeApiKey(apiKey.id);
  expect((await s.ended(2000)).code).toBe(status.UNAUTHENTICATED);
  expect(code(await waiting)).toBe("UNAUTHENTICATED");
  expect(Date.now() - started).toBeLessThan(2000);
  expect(code(await r.call(rqMethods.heartbeat, create(HeartbeatRequestSchema, { leaseIds: [lease.id] })))).toBe("UNAUTHENTICATED");
  const err = await worker.acquire("shared", { timeoutMs: 0 }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(RateQueueError);
  expect((err as RateQueueError).code).toBe("UNAUTHENTICATED");
  await worker.close();
  // Its leases live on until their TTL; the admin's key still works.
  const stats = await admin.getResourceStats("shared");
  expect(stats.leasesInFlight).toBe(7);
  expect((await admin.listApiKeys()).map((k) => k.id)).not.toContain(apiKey.id);
  admin.close();
});

test("repeated failed authentication from a peer is slowed; a valid key is never slowed", async () => {
  // Its own server: the failures here must not slow the other tests' calls.
  const own = await startServerProcess({ args: ["--root-key-file", rootKeyFile()] });
  try {
    const at = `127.0.0.1:${own.port}`;
    const bad = new RawClient(at, { key: "rq_000000000000_" + "B".repeat(43) });
    const good = new RawClient(at, { key: rootKey });
    const beat = create(HeartbeatRequestSchema, { leaseIds: ["x"] });
    const times: number[] = [];
    for (let i = 0; i < 8; i++) {
      const t = Date.now();
      expect(code(await bad.call(rqMethods.heartbeat, beat))).toBe("UNAUTHENTICATED");
      times.push(Date.now() - t);
    }
    // The first few are answered at once, later ones later and later.
    expect(times.slice(0, 4).every((t) => t < 100), String(times)).toBe(true);
    expect(times[6]! >= 150 && times[7]! >= 300, String(times)).toBe(true);
    // While more failures wait, a valid key from the same address is answered at once.
    const flood = Array.from({ length: 10 }, () => bad.call(rqMethods.heartbeat, beat));
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      expect(code(await good.call(rqMethods.heartbeat, beat))).toBe("OK");
      expect(Date.now() - t).toBeLessThan(500);
    }
    void flood;
    bad.close();
    good.close();
  } finally {
    await own.stop("SIGKILL");
  }
});

test("root: namespaces, and keys of any namespace", async () => {
  const root = raw(rootKey);
  expect(code(await root.call(adminMethods.createNamespace, create(CreateNamespaceRequestSchema, { name: "Bad Name" })))).toBe("INVALID_ARGUMENT");
  expect(code(await root.call(adminMethods.createNamespace, create(CreateNamespaceRequestSchema, { name: "team-c" })))).toBe("OK");
  const inC = raw(rootKey, "team-c");
  expect(code(await inC.call(adminMethods.putResource, create(PutResourceRequestSchema, { resource: { name: "c1" } })))).toBe("OK");
  expect(code(await root.call(adminMethods.deleteNamespace, create(DeleteNamespaceRequestSchema, { name: "team-c" })))).toBe("FAILED_PRECONDITION");
  expect(code(await inC.call(adminMethods.deleteResource, create(DeleteResourceRequestSchema, { name: "c1" })))).toBe("OK");
  expect(code(await root.call(adminMethods.deleteNamespace, create(DeleteNamespaceRequestSchema, { name: "team-c" })))).toBe("OK");
  expect(code(await raw(rootKey, "team-c").call(rqMethods.acquire, acquireReq("c1")))).toBe("NOT_FOUND");
  expect(code(await root.call(adminMethods.revokeApiKey, create(RevokeApiKeyRequestSchema, { id: "root" })))).toBe("FAILED_PRECONDITION");
});

test("the CLI creates, lists and revokes keys through RATEQUEUE_URL with RATEQUEUE_API_KEY", async () => {
  const run = (args: string[], apiKey = rootKey) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [serverMain, ...args], {
        env: { ...process.env, RATEQUEUE_URL: server.url, RATEQUEUE_API_KEY: apiKey },
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.once("exit", (c) => resolve({ code: c, out, err }));
    });
  const made = await run(["keys", "create", "--namespace", "team-d", "--role", "admin", "--description", "ops"]);
  expect(made.code, made.err).toBe(0);
  const key = made.out.trim();
  expect(key).toMatch(/^rq_[0-9a-z]{12}_/);
  const id = key.split("_")[1]!;
  const listed = await run(["keys", "list"], key);
  expect(listed.code, listed.err).toBe(0);
  expect(listed.out).toMatch(new RegExp(`${id}\\s+team-d\\s+admin`));
  expect(listed.out).not.toContain(key);
  const worker = await run(["keys", "create", "--namespace", "team-d", "--role", "worker"], key);
  expect(worker.code, worker.err).toBe(0);
  const revoked = await run(["keys", "revoke", id]);
  expect(revoked.code, revoked.err).toBe(0);
  const after = await run(["keys", "list"], key);
  expect(after.code).toBe(1);
  expect(after.err).toContain("UNAUTHENTICATED");
  const usage = await run(["keys", "create", "--namespace", "team-d", "--role", "boss"]);
  expect(usage.code).toBe(2);
});

describe("first start", () => {
  const serve = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ out: string; err: string; port?: number; stop: () => void }>((resolve, reject) => {
      const child = spawn(process.execPath, [serverMain, "serve", "--port", "0", ...args], {
        env: { ...process.env, RATEQUEUE_ROOT_KEY: "", ...env },
      });
      let out = "";
      let err = "";
      const timer = setTimeout(() => reject(new Error(`no 'listening' in 15 s: ${out} ${err}`)), 15_000);
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /"msg":"listening".*?"port":(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          setTimeout(() => resolve({ out, err, port: Number(m[1]), stop: () => child.kill() }), 100);
        }
      });
      child.once("exit", () => {
        clearTimeout(timer);
        resolve({ out, err, stop: () => {} });
      });
    });

  test("loopback without keys runs open and warns loudly", async () => {
    const s = await serve(["--host", "127.0.0.1"]);
    s.stop();
    expect(s.out).toMatch(/"level":"warn","msg":"AUTHENTICATION IS OFF/);
  });

  test("a non-loopback address without keys generates a root key, printed once; --insecure opts out", async () => {
    const s = await serve(["--host", "0.0.0.0"]);
    try {
      const m = /RATEQUEUE_ROOT_KEY=(rq_\S+)/.exec(s.err);
      expect(m, s.err).not.toBeNull();
      expect(s.out).not.toContain(m![1]!);
      const r = new RawClient(`127.0.0.1:${s.port}`, {});
      expect(code(await r.call(adminMethods.listResources, create(ListResourcesRequestSchema, {})))).toBe("UNAUTHENTICATED");
      const ok = new RawClient(`127.0.0.1:${s.port}`, { key: m![1]! });
      expect(code(await ok.call(adminMethods.listResources, create(ListResourcesRequestSchema, {})))).toBe("OK");
      r.close();
      ok.close();
    } finally {
      s.stop();
    }
    const open = await serve(["--host", "0.0.0.0", "--insecure"]);
    open.stop();
    expect(open.out).toMatch(/AUTHENTICATION IS OFF.*--insecure/);
    expect(open.err).not.toContain("RATEQUEUE_ROOT_KEY=");
  });

  test("a root key shorter than 32 characters is refused at start", async () => {
    const s = await serve(["--host", "127.0.0.1"], { RATEQUEUE_ROOT_KEY: "short" });
    expect(s.port).toBeUndefined();
    expect(s.err).toContain("at least 32 characters");
  });
});

test.each<[string, keyof typeof adminMethods, object]>([
  ["name", "createNamespace", create(CreateNamespaceRequestSchema, { name: "" })],
  ["name", "createNamespace", create(CreateNamespaceRequestSchema, { name: "Upper" })],
  ["name", "createNamespace", create(CreateNamespaceRequestSchema, { name: "x".repeat(64) })],
  ["name", "createNamespace", create(CreateNamespaceRequestSchema, { name: "a@b" })],
  ["name", "deleteNamespace", create(DeleteNamespaceRequestSchema, { name: "default" })],
  ["namespace", "createApiKey", create(CreateApiKeyRequestSchema, { namespace: "Bad!", role: ApiKeyRole.WORKER })],
  ["role", "createApiKey", create(CreateApiKeyRequestSchema, { role: ApiKeyRole.UNSPECIFIED })],
  ["role", "createApiKey", create(CreateApiKeyRequestSchema, { role: 42 as ApiKeyRole })],
  ["description", "createApiKey", create(CreateApiKeyRequestSchema, { role: ApiKeyRole.WORKER, description: "d".repeat(257) })],
  ["description", "createApiKey", create(CreateApiKeyRequestSchema, { role: ApiKeyRole.WORKER, description: "a\nb" })],
  ["namespace", "listApiKeys", create(ListApiKeysRequestSchema, { namespace: "NO" })],
  ["id", "revokeApiKey", create(RevokeApiKeyRequestSchema, { id: "" })],
  ["id", "revokeApiKey", create(RevokeApiKeyRequestSchema, { id: "Not-An-Id" })],
])("bad %s on %s: INVALID_ARGUMENT naming the field (case %#)", async (field, method, request) => {
  const out = await raw(rootKey).call(adminMethods[method] as never, request);
  expect(out.ok).toBe(false);
  if (!out.ok) {
    expect(status[out.code]).toBe("INVALID_ARGUMENT");
    expect(out.message.startsWith(`${field}:`), out.message).toBe(true);
  }
});
