// GET /metrics after a known workload, read with a real exposition parser
// (prometheus_client's) and checked with promtool: the counters and gauges
// match the workload and GetResourceStats, and a key sees its namespace only.
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { createAdminClient, createClient, RateQueueError } from "@ratequeue/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rootKeyFile } from "./support/keys.js";
import { repoRoot, startServerProcess, type ServerProcess } from "./support/server-process.js";

const rootKey = "metrics-root-key-0123456789abcdefghijklmnop";
const config = {
  namespaces: {
    "team-a": {
      resources: {
        api: {
          limits: [
            { dimension: "requests", amount: 100, period: "1s", burst: 50 },
            { dimension: "load", amount: 3600, period: "3600s", burst: 1000 },
          ],
          concurrency: 5,
          lanes: { user: 3, batch: 1 },
        },
      },
    },
    "team-b": { resources: { other: {} } },
  },
};

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Scrapes /metrics with a key; the body and its samples as prometheus_client's parser reads them. */
function scrape(server: ServerProcess, key: string): { text: string; samples: Sample[] } {
  const text = execFileSync("curl", ["-sf", "-H", `Authorization: Bearer ${key}`, `${server.httpUrl}/metrics`], { encoding: "utf8" });
  const parser = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = [{"name": s.name, "labels": s.labels, "value": s.value} for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]
print(json.dumps(out))`;
  const parsed = execFileSync(join(repoRoot, ".tools/venv/bin/python"), ["-c", parser], { input: text, encoding: "utf8" });
  return { text, samples: JSON.parse(parsed) as Sample[] };
}

/** The value of the one sample with this name whose labels include these; undefined when none. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

describe("after a known workload", () => {
  let server: ServerProcess;
  const keys: Record<string, string> = {};
  beforeAll(async () => {
    server = await startServerProcess({ config, args: ["--root-key-file", rootKeyFile(rootKey)] });
    const root = createAdminClient({ url: server.url, apiKey: rootKey });
    for (const ns of ["team-a", "team-b"]) keys[ns] = (await root.createApiKey({ namespace: ns, role: "worker" })).key;
    root.close();

    const a = createClient({ url: server.url, apiKey: keys["team-a"] });
    // 5 grants in lane user, each estimated at 10 and settled at 15: 25 charged.
    for (let i = 0; i < 5; i++) {
      const lease = await a.acquire("api", { load: 10, lane: "user" });
      await lease.release({ actualLoad: 15 });
    }
    // 2 in lane batch, estimated at 20 and settled at 5: 30 refunded; held while the cap fills.
    const held = [];
    for (let i = 0; i < 2; i++) held.push(await a.acquire("api", { load: 20, lane: "batch" }));
    for (let i = 0; i < 3; i++) held.push(await a.acquire("api", { lane: "batch" }));
    // Cap 5 full: a timeout, and a cancellation, in lane user.
    await a.acquire("api", { lane: "user", timeoutMs: 100 }).catch((e: unknown) => expect((e as RateQueueError).code).toBe("DEADLINE_EXCEEDED"));
    const abort = new AbortController();
    const cancelled = a.acquire("api", { lane: "user", signal: abort.signal }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    expect(((await cancelled) as RateQueueError).code).toBe("CANCELLED");
    for (const [i, lease] of held.entries()) await lease.release(i < 2 ? { actualLoad: 5 } : {});
    // Refused: an unknown lane (the engine's), an unknown resource and a bad field (the edge's).
    await a.acquire("api", { lane: "vip" }).catch(() => {});
    await a.acquire("no-such-resource").catch(() => {});
    await a.acquire("api", { load: -1 }).catch(() => {});
    await a.close();
    const b = createClient({ url: server.url, apiKey: keys["team-b"] });
    for (let i = 0; i < 2; i++) await (await b.acquire("other")).release();
    await b.close();
  });
  afterAll(async () => {
    await server.stop();
  });

  test("the counters match the workload", async () => {
    // The clients have closed: once the server has seen their streams end, no session is open.
    await expect.poll(() => valueOf(scrape(server, keys["team-a"]!).samples, "ratequeue_sessions")).toBe(0);
    const { samples } = scrape(server, keys["team-a"]!);
    const api = { namespace: "team-a", resource: "api" };
    const acquires = (lane: string, result: string) => valueOf(samples, "ratequeue_acquires_total", { ...api, lane, result });
    expect([acquires("user", "granted"), acquires("batch", "granted")]).toEqual([5, 5]);
    expect([acquires("user", "timeout"), acquires("user", "cancelled"), acquires("batch", "timeout")]).toEqual([1, 1, 0]);
    expect([acquires("", "invalid"), acquires("", "rejected")]).toEqual([1, 0]);
    const edge = (result: string) => valueOf(samples, "ratequeue_acquires_total", { namespace: "team-a", resource: "", lane: "", result });
    expect([edge("not_found"), edge("invalid")]).toEqual([1, 1]);
    expect(valueOf(samples, "ratequeue_load_granted_total", { ...api, lane: "user" })).toBe(50);
    expect(valueOf(samples, "ratequeue_load_granted_total", { ...api, lane: "batch" })).toBe(43);
    expect(valueOf(samples, "ratequeue_load_reconciled_total", { ...api, direction: "charged" })).toBe(25);
    expect(valueOf(samples, "ratequeue_load_reconciled_total", { ...api, direction: "refunded" })).toBe(30);
    // Every grant's wait is counted once; the user lane's were immediate.
    expect(valueOf(samples, "ratequeue_wait_seconds_count", { ...api, lane: "user" })).toBe(5);
    expect(valueOf(samples, "ratequeue_wait_seconds_bucket", { ...api, lane: "user", le: "0.001" })).toBe(5);
    expect(valueOf(samples, "ratequeue_leases_in_flight", api)).toBe(0);
    expect(valueOf(samples, "ratequeue_queue_depth", { ...api, lane: "user" })).toBe(0);
    expect(valueOf(samples, "ratequeue_leader")).toBe(1);
    expect(valueOf(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  test("the limit gauges match GetResourceStats", async () => {
    const { samples } = scrape(server, keys["team-a"]!);
    const admin = createAdminClient({ url: server.url, apiKey: keys["team-a"] });
    const stats = await admin.getResourceStats("api");
    admin.close();
    const api = { namespace: "team-a", resource: "api" };
    // The load limit refills 1 unit a second: the scrape and the stats agree to within a few units.
    expect(valueOf(samples, "ratequeue_limit_available", { ...api, limit: "load/3600s" })).toBeCloseTo(stats.limits[1]!.available, -1);
    // 93 granted, +25 and -30 reconciled over the last hour: 88 of 3,600.
    expect(valueOf(samples, "ratequeue_limit_utilisation_ratio", { ...api, limit: "load/3600s" })).toBeCloseTo(88 / 3600, 6);
    expect(valueOf(samples, "ratequeue_limit_utilisation_ratio", { ...api, limit: "requests/1s" })).toBeGreaterThanOrEqual(0);
  });

  test("a key sees its namespace only; a root key every namespace; no key, nothing", () => {
    const a = scrape(server, keys["team-a"]!).samples;
    expect(a.filter((s) => s.labels.namespace !== undefined && s.labels.namespace !== "team-a")).toEqual([]);
    const all = scrape(server, rootKey).samples;
    expect(valueOf(all, "ratequeue_acquires_total", { namespace: "team-b", resource: "other", lane: "default", result: "granted" })).toBe(2);
    expect(spawnSync("curl", ["-sf", `${server.httpUrl}/metrics`]).status).not.toBe(0);
    expect(execFileSync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", `${server.httpUrl}/metrics`], { encoding: "utf8" })).toBe("401");
  });

  test("promtool check metrics reports no problem", () => {
    const { text } = scrape(server, rootKey);
    const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(check.stdout + check.stderr).toBe("");
    expect(check.status).toBe(0);
  });
});

test("--metrics-resource-labels off: one series per namespace", async () => {
  const server = await startServerProcess({ config: { resources: { a: {}, b: {} } }, args: ["--metrics-resource-labels", "off"] });
  try {
    const client = createClient({ url: server.url });
    await (await client.acquire("a")).release();
    await (await client.acquire("b")).release();
    await client.close();
    const { samples } = scrape(server, "");
    expect(samples.some((s) => "resource" in s.labels)).toBe(false);
    expect(valueOf(samples, "ratequeue_acquires_total", { namespace: "default", lane: "default", result: "granted" })).toBe(2);
  } finally {
    await server.stop();
  }
});
