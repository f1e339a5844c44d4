// The HTTP port: probes for load balancers, the AdminService over Connect
// JSON with curl (same keys, same errors, same tenant scoping as gRPC),
// /status, the dashboard page and its editor's config conversions (its
// browser test: dashboard.test.ts), and
// gRPC reflection on the gRPC port for grpcurl.
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { createAdminClient } from "@ratequeue/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rootKeyFile } from "./support/keys.js";
import { closeRedis, startNode, startRedis, waitForLog, type RedisInstance } from "./support/redis.js";
import { repoRoot, startServerProcess, type ServerProcess } from "./support/server-process.js";

const rootKey = "http-root-key-0123456789abcdefghijklmnop";
const config = { namespaces: { "team-a": { resources: { api: { concurrency: 3 } } }, "team-b": { resources: { secret: {} } } } };

/** curl, as an operator would run it: status code and body. */
function curl(url: string, options: { key?: string; body?: unknown } = {}): { status: number; body: unknown } {
  const args = ["-s", "-o", "-", "-w", "\n%{http_code}", url];
  if (options.key !== undefined) args.push("-H", `Authorization: Bearer ${options.key}`);
  if (options.body !== undefined) args.push("-H", "Content-Type: application/json", "-d", JSON.stringify(options.body));
  const out = execFileSync("curl", args, { encoding: "utf8" });
  const i = out.lastIndexOf("\n");
  const text = out.slice(0, i).trim();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: Number(out.slice(i + 1)), body };
}

describe("a lone node with keys", () => {
  let server: ServerProcess;
  const keys: Record<string, string> = {};
  const admin = (method: string) => `${server.httpUrl}/ratequeue.v1.AdminService/${method}`;

  beforeAll(async () => {
    server = await startServerProcess({ config, args: ["--root-key-file", rootKeyFile(rootKey)] });
    const root = createAdminClient({ url: server.url, apiKey: rootKey });
    for (const ns of ["team-a", "team-b"]) keys[ns] = (await root.createApiKey({ namespace: ns, role: "admin" })).key;
    root.close();
  });
  afterAll(async () => {
    await server.stop();
  });

  test("probes: /healthz and /readyz answer 200; an unknown path 404", () => {
    expect(curl(`${server.httpUrl}/healthz`)).toEqual({ status: 200, body: "ok" });
    expect(curl(`${server.httpUrl}/readyz`)).toEqual({ status: 200, body: "ready" });
    expect(curl(`${server.httpUrl}/nothing-here`).status).toBe(404);
  });

  test("Connect JSON: without a key UNAUTHENTICATED; with one, the key's namespace and nothing else", () => {
    const none = curl(admin("ListResources"), { body: {} });
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: "unauthenticated", message: expect.stringContaining("missing credentials") });
    const mine = curl(admin("ListResources"), { key: keys["team-a"], body: {} });
    expect(mine.status).toBe(200);
    expect(mine.body).toMatchObject({ resources: [{ name: "api", concurrency: 3 }] });
    // Another tenant's resource is as unknown as one that does not exist.
    const theirs = curl(admin("GetResource"), { key: keys["team-a"], body: { name: "secret" } });
    expect(theirs).toEqual({ status: 404, body: { code: "not_found", message: "resource 'secret' not found" } });
    expect(curl(admin("GetResource"), { key: keys["team-b"], body: { name: "secret" } }).status).toBe(200);
  });

  test("Connect JSON: the same validation and errors as gRPC, and a change made over HTTP is seen over gRPC", async () => {
    const bad = curl(admin("PutResource"), { key: keys["team-a"], body: { resource: { name: "x", concurrency: 2_000_000 } } });
    expect(bad).toEqual({ status: 400, body: { code: "invalid_argument", message: "resource.concurrency: must be an integer from 0 to 1000000, got 2000000" } });
    const put = curl(admin("PutResource"), {
      key: keys["team-a"],
      body: { resource: { name: "made-over-http", limits: [{ dimension: "DIMENSION_REQUESTS", amount: 5, period: "1s" }] } },
    });
    expect(put).toMatchObject({ status: 200, body: { created: true, resource: { name: "made-over-http", limits: [{ amount: 5, burst: 5 }] } } });
    const grpc = createAdminClient({ url: server.url, apiKey: keys["team-a"] });
    expect((await grpc.getResource("made-over-http")).limits[0]?.amount).toBe(5);
    grpc.close();
    const stats = curl(admin("GetResourceStats"), { key: keys["team-a"], body: { name: "made-over-http" } });
    expect(stats).toMatchObject({ status: 200, body: { stats: { name: "made-over-http" } } });
  });

  test("/status: the node and the caller's key, authenticated like the admin calls; / is the dashboard, allowed to talk to this server only", () => {
    expect(curl(`${server.httpUrl}/status`)).toMatchObject({ status: 401, body: { code: "unauthenticated" } });
    expect(curl(`${server.httpUrl}/status`, { key: keys["team-a"] })).toEqual({
      status: 200,
      body: { role: "leader", redis: "none", sessions: 0, auth: true, caller: { role: "admin", namespace: "team-a" } },
    });
    const page = execFileSync("curl", ["-s", "-D", "-", `${server.httpUrl}/`], { encoding: "utf8" });
    expect(page).toMatch(/^content-type: text\/html; charset=utf-8\r$/m);
    expect(page).toMatch(/^content-security-policy: default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self';/m);
    expect(page).toContain("<title>ratequeue</title>");
  });

  test("the dashboard's editor: config text (YAML or JSON) to PutResource's message and back, by the config file's reader; bad input 400 with its words", async () => {
    const toResource = (text: string) => curl(`${server.httpUrl}/dashboard/resource-from-config`, { body: { name: "edited", text } });
    expect(toResource("limits:\n  - { dimension: load, amount: 500, period: 1m }\nlanes: { user: 3 }\nlease_ttl: 2s\n")).toEqual({
      status: 200,
      body: { resource: { name: "edited", limits: [{ dimension: "DIMENSION_LOAD", amount: 500, period: "60s" }], lanes: [{ name: "user", weight: 3 }], leaseTtl: "2s" } },
    });
    expect(toResource('{ "concurrency": 2 }')).toEqual({ status: 200, body: { resource: { name: "edited", concurrency: 2 } } });
    expect(toResource("limits: [{ dimension: tokens, amount: 1, period: 1s }]")).toEqual({
      status: 400,
      body: { code: "invalid_argument", message: "resources.edited.limits[0].dimension: must be 'requests' or 'load'" },
    });
    expect(toResource("concurrency: [")).toMatchObject({ status: 400, body: { code: "invalid_argument", message: expect.stringMatching(/^resources\.edited: not valid YAML: /) } });

    const toText = (body: unknown) => curl(`${server.httpUrl}/dashboard/config-from-resource`, { body });
    expect(toText({ name: "api", concurrency: 3 })).toEqual({
      status: 200,
      body: { text: "limits: []\nconcurrency: 3\nlanes: { default: 1 }\ndefault_lane: default\nlease_ttl: 30s\nmax_queue: 10000\ncooldown: 1s\nlearn_limits: true\n" },
    });
    expect(toText({ name: "api", concurrency: 2_000_000 })).toMatchObject({ status: 400, body: { code: "invalid_argument", message: expect.stringContaining("resource.concurrency") } });
    expect(toText({ name: "api", nonsense: 1 })).toMatchObject({ status: 400, body: { code: "invalid_argument", message: expect.stringContaining('key "nonsense" is unknown') } });
    expect(curl(`${server.httpUrl}/dashboard/config-from-resource`)).toMatchObject({ status: 405, body: { code: "unimplemented" } });
    const huge = await fetch(`${server.httpUrl}/dashboard/resource-from-config`, { method: "POST", body: JSON.stringify({ name: "x", text: "#".repeat(2 << 20) }) });
    expect([huge.status, ((await huge.json()) as { code: string }).code]).toEqual([413, "resource_exhausted"]);
    // The server is fine after all of it.
    expect(curl(`${server.httpUrl}/healthz`).status).toBe(200);
  });

  test("grpcurl lists and describes the services through reflection, without the .proto files", () => {
    const grpcurl = join(repoRoot, ".tools/bin/grpcurl");
    const list = spawnSync(grpcurl, ["-plaintext", `127.0.0.1:${server.port}`, "list"], { encoding: "utf8" });
    expect(list.stderr).toBe("");
    expect(list.stdout.split("\n").filter(Boolean)).toEqual(["ratequeue.v1.AdminService", "ratequeue.v1.RateQueueService"]);
    const describe = spawnSync(grpcurl, ["-plaintext", `127.0.0.1:${server.port}`, "describe", "ratequeue.v1.AcquireRequest"], { encoding: "utf8" });
    expect(describe.stdout).toContain("optional double load = 2;");
    // And a call with the key, built from the reflected schema.
    const call = spawnSync(grpcurl, ["-plaintext", "-H", `authorization: Bearer ${keys["team-a"]}`, "-d", '{"name":"api"}', `127.0.0.1:${server.port}`, "ratequeue.v1.AdminService/GetResource"], {
      encoding: "utf8",
    });
    expect(JSON.parse(call.stdout)).toMatchObject({ resource: { name: "api", concurrency: 3 } });
  });
});

describe("a group", () => {
  let redis: RedisInstance;
  const nodes: ServerProcess[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await closeRedis(redis);
  });

  test("/readyz: 200 on the leader and on a ready standby; 503 once a node stops", async () => {
    const a = await startNode(redis.url, { config: { resources: { r: {} } } });
    nodes.push(a);
    await waitForLog(a, (e) => e.msg === "leading");
    const b = await startNode(redis.url, { config: { resources: { r: {} } } });
    nodes.push(b);
    await waitForLog(b, (e) => e.msg === "standing by");
    expect(curl(`${a.httpUrl}/readyz`).status).toBe(200);
    await expect.poll(() => curl(`${b.httpUrl}/readyz`).status).toBe(200);
    // What the dashboard's header shows.
    expect(curl(`${a.httpUrl}/status`).body).toMatchObject({ role: "leader", redis: "up" });
    expect(curl(`${b.httpUrl}/status`).body).toMatchObject({ role: "standby", redis: "up" });
    // Standbys answer the Connect admin calls as on gRPC: UNAVAILABLE.
    expect(curl(`${b.httpUrl}/ratequeue.v1.AdminService/ListResources`, { body: {} })).toMatchObject({ status: 503, body: { code: "unavailable" } });
    await redis.stop(true);
    await expect.poll(() => curl(`${b.httpUrl}/readyz`).status, { timeout: 10_000 }).toBe(503);
    await expect.poll(() => curl(`${b.httpUrl}/status`).body, { timeout: 10_000 }).toMatchObject({ role: "unavailable", redis: "down" });
    await redis.start();
  });
});
