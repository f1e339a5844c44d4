// `ratequeue resources …` and `ratequeue top` as an operator runs them: the
// real command against a real server with keys on, each test in a namespace
// of its own. `top` runs under a pseudo-terminal made by util-linux `script`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAdminClient, createClient } from "@ratequeue/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parse as parseYaml } from "yaml";
import { rootKeyFile } from "./support/keys.js";
import { serverMain, startServerProcess, type ServerProcess } from "./support/server-process.js";

const rootKey = "test-root-key-cli-resources-0123456789";
const dir = mkdtempSync(join(tmpdir(), "ratequeue-cli-"));
let server: ServerProcess;

beforeAll(async () => {
  server = await startServerProcess({ args: ["--root-key-file", rootKeyFile(rootKey)] });
});
afterAll(async () => {
  await server.stop();
});

/** A new namespace with an admin and a worker key. */
async function tenant(namespace: string): Promise<{ admin: string; worker: string }> {
  const root = createAdminClient({ url: server.url, apiKey: rootKey });
  try {
    await root.createNamespace(namespace);
    const admin = (await root.createApiKey({ namespace, role: "admin" })).key;
    const worker = (await root.createApiKey({ namespace, role: "worker" })).key;
    return { admin, worker };
  } finally {
    root.close();
  }
}

/** The namespace's resources as the server holds them, through the TS client. */
async function serverResources(apiKey: string, namespace?: string) {
  const admin = createAdminClient({ url: server.url, apiKey, namespace });
  try {
    return Object.fromEntries((await admin.listResources()).map((r) => [r.name, r]));
  } finally {
    admin.close();
  }
}

let files = 0;
/** Writes a config-shaped file (YAML text, or an object as JSON). */
function file(content: string | object): string {
  const path = join(dir, `f${files++}.${typeof content === "string" ? "yaml" : "json"}`);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs `ratequeue ARGS` with RATEQUEUE_URL and RATEQUEUE_API_KEY set. */
function ratequeue(apiKey: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [serverMain, ...args], {
      env: { ...process.env, RATEQUEUE_URL: server.url, RATEQUEUE_API_KEY: apiKey },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    // "close", not "exit": the output is read to its end (thousands of lines may still be in the pipe at exit).
    child.once("close", (code) => resolve({ code, out, err }));
  });
}

const readme = `
resources:
  openai:
    limits:
      - { dimension: requests, amount: 500, period: 60s, burst: 20 }
      - { dimension: load, amount: 30000, period: 60s }
    concurrency: 8
    lanes: { user-facing: 3, batch: 1 }
  plain: {}
`;

/** The README's resource with every default written out, as get and list print it. */
const openaiWritten = {
  limits: [
    { dimension: "requests", amount: 500, period: "60s", burst: 20 },
    { dimension: "load", amount: 30000, period: "60s", burst: 30000 },
  ],
  concurrency: 8,
  lanes: { "user-facing": 3, batch: 1 },
  default_lane: "user-facing",
  lease_ttl: "30s",
  max_queue: 10000,
  cooldown: "1s",
  learn_limits: true,
};
const plainWritten = {
  limits: [],
  concurrency: 0,
  lanes: { default: 1 },
  default_lane: "default",
  lease_ttl: "30s",
  max_queue: 10000,
  cooldown: "1s",
  learn_limits: true,
};

describe("resources apply", () => {
  test("creates, then changes only what differs, printing one line per resource; --dry-run prints the same and changes nothing", async () => {
    const { admin } = await tenant("apply-basic");
    const first = file(readme);
    const dry = await ratequeue(admin, "resources", "apply", "-f", first, "--dry-run");
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toBe("create openai\ncreate plain\n");
    expect(await serverResources(admin)).toEqual({});

    const created = await ratequeue(admin, "resources", "apply", "-f", first);
    expect(created.code, created.err).toBe(0);
    expect(created.out).toBe("create openai\ncreate plain\n");
    const stored = await serverResources(admin);
    expect(Object.keys(stored)).toEqual(["openai", "plain"]);
    expect(stored.openai!.concurrency).toBe(8);
    expect(stored.openai!.limits.map((l) => [l.amount, l.burst])).toEqual([
      [500, 20],
      [30000, 30000],
    ]);

    const again = await ratequeue(admin, "resources", "apply", "-f", first);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toBe("unchanged openai\nunchanged plain\n");

    const second = file(readme.replace("concurrency: 8", "concurrency: 4\n    lease_ttl: 10s"));
    const changeLine = "change openai: concurrency 8 -> 4; lease_ttl 30s -> 10s\nunchanged plain\n";
    const dryChange = await ratequeue(admin, "resources", "apply", "-f", second, "--dry-run");
    expect(dryChange.code, dryChange.err).toBe(0);
    expect(dryChange.out).toBe(changeLine);
    expect((await serverResources(admin)).openai!.concurrency).toBe(8);
    const changed = await ratequeue(admin, "resources", "apply", "-f", second);
    expect(changed.code, changed.err).toBe(0);
    expect(changed.out).toBe(changeLine);
    const after = (await serverResources(admin)).openai!;
    expect(after.concurrency).toBe(4);
    expect(after.leaseTtl).toBe("10s");
  });

  test("--prune deletes the namespace's resources the file leaves out, and nothing of other namespaces", async () => {
    const { admin } = await tenant("apply-prune");
    const other = await tenant("apply-prune-other");
    const both = file({ resources: { keep: {}, drop: {} } });
    expect((await ratequeue(admin, "resources", "apply", "-f", both)).code).toBe(0);
    expect((await ratequeue(other.admin, "resources", "apply", "-f", both)).code).toBe(0);
    const onlyKeep = file({ resources: { keep: {} } });

    const withoutPrune = await ratequeue(admin, "resources", "apply", "-f", onlyKeep);
    expect(withoutPrune.out).toBe("unchanged keep\n");
    expect(Object.keys(await serverResources(admin))).toEqual(["drop", "keep"]);
    const dry = await ratequeue(admin, "resources", "apply", "-f", onlyKeep, "--prune", "--dry-run");
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toBe("unchanged keep\ndelete drop\n");
    expect(Object.keys(await serverResources(admin))).toEqual(["drop", "keep"]);

    const pruned = await ratequeue(admin, "resources", "apply", "-f", onlyKeep, "--prune");
    expect(pruned.code, pruned.err).toBe(0);
    expect(pruned.out).toBe("unchanged keep\ndelete drop\n");
    expect(Object.keys(await serverResources(admin))).toEqual(["keep"]);
    expect(Object.keys(await serverResources(other.admin))).toEqual(["drop", "keep"]);
  });

  test("a file the server would refuse is refused with the same message, naming the key, and nothing is applied", async () => {
    const { admin } = await tenant("apply-bad");
    const cases = [
      ["resources:\n  fine: {}\n  broken:\n    limits: [{ dimension: requests, amount: -1, period: 1s }]\n", "resources.broken: resource.limits[0].amount"],
      ["resources:\n  fine: {}\n  typo: { concurrancy: 3 }\n", "resources.typo.concurrancy: unknown key"],
      ["resources:\n  fine: {}\n  fine: {}\n", "key 'fine' appears twice"],
    ] as const;
    for (const [text, names] of cases) {
      const path = file(text);
      const applied = await ratequeue(admin, "resources", "apply", "-f", path);
      expect(applied.code).toBe(1);
      expect(applied.out).toBe("");
      expect(applied.err).toContain(names);
      // The server, started with the same file, stops with the same words.
      const serve = await ratequeue("", "serve", "--port", "0", "--http-port", "off", "--config", path);
      expect(serve.code).toBe(1);
      const reason = serve.err.trim().replace(/^ratequeue: /, "");
      expect(applied.err.trim()).toBe(`ratequeue resources apply: ${reason}`);
    }
    expect(await serverResources(admin)).toEqual({});
  });

  test("a file with namespaces is applied one namespace at a time, chosen with --namespace", async () => {
    const x = await tenant("apply-ns-x");
    await tenant("apply-ns-y");
    const serverConfig = file({
      resources: { outside: {} },
      namespaces: { "apply-ns-x": { resources: { "for-x": { concurrency: 2 } } }, "apply-ns-y": { resources: { "for-y": {} } } },
    });
    const unchosen = await ratequeue(rootKey, "resources", "apply", "-f", serverConfig);
    expect(unchosen.code).toBe(1);
    expect(unchosen.err).toContain("declares namespaces (default, apply-ns-x, apply-ns-y); choose the one to apply with --namespace");

    const asRoot = await ratequeue(rootKey, "resources", "apply", "-f", serverConfig, "--namespace", "apply-ns-x");
    expect(asRoot.code, asRoot.err).toBe(0);
    expect(asRoot.out).toBe("create for-x\n");
    expect(Object.keys(await serverResources(x.admin))).toEqual(["for-x"]);
    expect(await serverResources(rootKey)).not.toHaveProperty("for-x");

    // A namespace's own admin key may name its namespace too.
    const asAdmin = await ratequeue(x.admin, "resources", "apply", "-f", serverConfig, "--namespace", "apply-ns-x");
    expect(asAdmin.out).toBe("unchanged for-x\n");
    const undeclared = await ratequeue(rootKey, "resources", "apply", "-f", serverConfig, "--namespace", "apply-ns-z");
    expect(undeclared.code).toBe(1);
    expect(undeclared.err).toContain("declares no resources of namespace 'apply-ns-z'");
  });

  test("thousands of resources go a batch at a time, in order, and a refusal inside a batch says what was applied", async () => {
    const { admin } = await tenant("apply-many");
    let yaml = "resources:\n";
    for (let i = 0; i < 2500; i++) yaml += `  r${String(i).padStart(4, "0")}:\n    limits:\n      - { dimension: requests, amount: ${i + 1}, period: 60s }\n    concurrency: 4\n`;
    const created = await ratequeue(admin, "resources", "apply", "-f", file(yaml));
    expect(created.code, created.err).toBe(0);
    const lines = created.out.trim().split("\n");
    expect(lines).toHaveLength(2500);
    expect(lines[0]).toBe("create r0000");
    expect(lines[2499]).toBe("create r2499");
    const stored = await serverResources(admin);
    expect(Object.keys(stored)).toHaveLength(2500);
    expect(stored.r1234).toMatchObject({ limits: [{ amount: 1235 }], concurrency: 4 });
    // Listed a page at a time: everything is found unchanged.
    const again = await ratequeue(admin, "resources", "apply", "-f", file(yaml));
    expect(new Set(again.out.trim().split("\n").map((l) => l.split(" ")[0]))).toEqual(new Set(["unchanged"]));
    // A child whose parent does not exist, in the middle of the second batch: the lines stop before it.
    const broken = yaml.replaceAll("concurrency: 4", "concurrency: 5").replace("  r1500:\n", "  r1500:\n    parent: nowhere\n");
    const refused = await ratequeue(admin, "resources", "apply", "-f", file(broken));
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("NOT_FOUND: parent 'nowhere' of 'r1500' not found");
    const done = refused.out.trim().split("\n");
    expect(done).toHaveLength(1500);
    expect(done[1499]).toBe("change r1499: concurrency 4 -> 5");
    const after = await serverResources(admin);
    expect([after.r1499!.concurrency, after.r1500!.concurrency, after.r1501!.concurrency]).toEqual([5, 4, 4]);
  });

  test("a worker key may read but not apply or delete: the server's PERMISSION_DENIED, exit 1", async () => {
    const { admin, worker } = await tenant("apply-worker");
    expect((await ratequeue(admin, "resources", "apply", "-f", file({ resources: { r: {} } }))).code).toBe(0);
    const applied = await ratequeue(worker, "resources", "apply", "-f", file({ resources: { r: { concurrency: 1 } } }));
    expect(applied.code).toBe(1);
    expect(applied.err).toContain("PERMISSION_DENIED: PutResource needs an admin key; this key's role is worker");
    const deleted = await ratequeue(worker, "resources", "delete", "r");
    expect(deleted.code).toBe(1);
    expect(deleted.err).toContain("PERMISSION_DENIED: DeleteResource needs an admin key");
    const listed = await ratequeue(worker, "resources", "list", "-o", "json");
    expect(listed.code, listed.err).toBe(0);
    expect(JSON.parse(listed.out).resources.r.concurrency).toBe(0);
  });
});

describe("resources list, get, stats, delete", () => {
  let admin: string;
  beforeAll(async () => {
    ({ admin } = await tenant("read"));
    const applied = await ratequeue(admin, "resources", "apply", "-f", file(readme));
    expect(applied.code, applied.err).toBe(0);
  });

  test("list prints a table, and -o json|yaml the config file's shape", async () => {
    const table = await ratequeue(admin, "resources", "list");
    expect(table.code, table.err).toBe(0);
    const lines = table.out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+PARENT\s+LIMITS\s+CONCURRENCY\s+LANES\s+LEASE_TTL\s+MAX_QUEUE$/);
    expect(lines[1]).toMatch(/^openai\s+-\s+500 requests\/60s burst 20, 30000 load\/60s burst 30000\s+8\s+user-facing=3 batch=1\s+30s\s+10000$/);
    expect(lines[2]).toMatch(/^plain\s+-\s+-\s+-\s+default=1\s+30s\s+10000$/);
    expect(lines).toHaveLength(3);

    const json = await ratequeue(admin, "resources", "list", "-o", "json");
    expect(JSON.parse(json.out)).toEqual({ resources: { openai: openaiWritten, plain: plainWritten } });
    const yaml = await ratequeue(admin, "resources", "list", "--output", "yaml");
    expect(parseYaml(yaml.out)).toEqual({ resources: { openai: openaiWritten, plain: plainWritten } });
  });

  test("get prints the resource in the config file's shape (YAML unless -o json), and apply takes it back unchanged", async () => {
    const shown = await ratequeue(admin, "resources", "get", "openai");
    expect(shown.code, shown.err).toBe(0);
    expect(parseYaml(shown.out)).toEqual({ resources: { openai: openaiWritten } });
    expect(shown.out).toContain("- { dimension: requests, amount: 500, period: 60s, burst: 20 }");
    const json = await ratequeue(admin, "resources", "get", "openai", "-o", "json");
    expect(JSON.parse(json.out)).toEqual({ resources: { openai: openaiWritten } });

    // `get -o yaml > r.yaml` then `apply -f r.yaml`: here, and into another namespace as a copy.
    const saved = join(dir, "openai.yaml");
    writeFileSync(saved, (await ratequeue(admin, "resources", "get", "openai", "-o", "yaml")).out);
    expect((await ratequeue(admin, "resources", "apply", "-f", saved)).out).toBe("unchanged openai\n");
    const copy = await tenant("read-copy");
    expect((await ratequeue(copy.admin, "resources", "apply", "-f", saved)).out).toBe("create openai\n");
    expect(JSON.parse((await ratequeue(copy.admin, "resources", "get", "openai", "-o", "json")).out)).toEqual({ resources: { openai: openaiWritten } });
  });

  test("stats prints the counters, limits and lanes; -o json|yaml gives them with the proto's field names", async () => {
    const metered = await tenant("read-stats");
    // Day-long periods: the load budget refills 1 unit in 86 s, so the figures stay exact while the test reads them.
    const limits = [
      { dimension: "requests", amount: 10, period: "24h" },
      { dimension: "load", amount: 1000, period: "24h" },
    ];
    const applied = await ratequeue(metered.admin, "resources", "apply", "-f", file({ resources: { metered: { limits, lanes: { fast: 3, slow: 1 } } } }));
    expect(applied.code, applied.err).toBe(0);
    const client = createClient({ url: server.url, apiKey: metered.worker });
    const lease = await client.acquire("metered", { load: 100, lane: "slow" });
    try {
      const table = await ratequeue(metered.worker, "resources", "stats", "metered");
      expect(table.code, table.err).toBe(0);
      const [counters, limitRows, laneRows] = table.out.trimEnd().split("\n\n").map((block) => block.split("\n"));
      expect(counters![0]).toMatch(/^RESOURCE\s+LEASES\s+QUEUED\s+GRANTS\s+REJECTIONS\s+TIMEOUTS\s+CANCELLATIONS\s+EXPIRATIONS\s+WAIT_P50\s+WAIT_P90\s+WAIT_P99\s+WAIT_MAX$/);
      expect(counters![1]).toMatch(/^metered\s+1\s+0\s+1\s+0\s+0\s+0\s+0(\s+\d+(\.\d+)?ms){4}$/);
      expect(limitRows).toEqual([
        expect.stringMatching(/^LIMIT\s+LEARNED\s+USED_LAST_PERIOD\s+BURST_IN_USE\s+AVAILABLE$/),
        expect.stringMatching(/^10 requests\/86400s burst 10\s+-\s+1 \(10%\)\s+10%\s+9$/),
        expect.stringMatching(/^1000 load\/86400s burst 1000\s+-\s+100 \(10%\)\s+10%\s+900$/),
      ]);
      expect(laneRows).toEqual([
        expect.stringMatching(/^LANE\s+WEIGHT\s+QUEUED\s+GRANTS\s+LOAD_GRANTED$/),
        expect.stringMatching(/^fast\s+3\s+0\s+0\s+0$/),
        expect.stringMatching(/^slow\s+1\s+0\s+1\s+100$/),
      ]);

      for (const format of ["json", "yaml"]) {
        const out = await ratequeue(metered.worker, "resources", "stats", "metered", "-o", format);
        expect(out.code, out.err).toBe(0);
        const stats = format === "json" ? JSON.parse(out.out) : parseYaml(out.out);
        expect(stats).toMatchObject({
          name: "metered",
          leases_in_flight: 1,
          grants: 1,
          rejections: 0,
          timeouts: 0,
          cancellations: 0,
          expirations: 0,
          throttles: 0,
          paused_until: null,
          limits: [
            { dimension: "requests", amount: 10, period: "86400s", burst: 10, learned_amount: null },
            { dimension: "load", amount: 1000, period: "86400s", burst: 1000, learned_amount: null },
          ],
          lanes: [
            { name: "fast", weight: 3, queue_depth: 0, grants: 0, load_granted: 0 },
            { name: "slow", weight: 1, queue_depth: 0, grants: 1, load_granted: 100 },
          ],
        });
        for (const key of ["wait_p50", "wait_p90", "wait_p99", "wait_max"]) expect(stats[key]).toMatch(/^\d+(\.\d+)?ms$/);
        expect(stats.limits[1].available).toBeGreaterThanOrEqual(900);
        expect(stats.limits[1].available).toBeLessThan(901);
        expect(stats.limits[1].utilisation).toBeCloseTo(0.1, 2);
        expect(stats.limits.map((l: { used_last_period: number }) => l.used_last_period)).toEqual([1, 100]);
      }
    } finally {
      await lease.release();
      await client.close();
    }
  });

  test("delete removes the resource; an unknown one exits 1 with the server's NOT_FOUND", async () => {
    expect((await ratequeue(admin, "resources", "apply", "-f", file({ resources: { doomed: {} } }))).code).toBe(0);
    const deleted = await ratequeue(admin, "resources", "delete", "doomed");
    expect(deleted.code, deleted.err).toBe(0);
    expect(deleted.out).toBe("deleted doomed\n");
    expect(await serverResources(admin)).not.toHaveProperty("doomed");
    for (const action of ["get", "stats", "delete"]) {
      const missing = await ratequeue(admin, "resources", action, "doomed");
      expect(missing.code).toBe(1);
      expect(missing.out).toBe("");
      expect(missing.err).toBe(`ratequeue resources ${action}: NOT_FOUND: resource 'doomed' not found\n`);
    }
  });

  test("usage mistakes exit 2 and say what is wrong", async () => {
    for (const [args, message] of [
      [["get"], "name the resource"],
      [["list", "-o", "xml"], "--output: must be json or yaml, got 'xml'"],
      [["apply"], "-f FILE is required"],
      [["list", "--prune"], "-f, --prune and --dry-run belong to apply"],
      [["delete", "x", "-o", "json"], "-o belongs to list, get and stats"],
      [["frobnicate"], "unknown action 'frobnicate'"],
    ] as const) {
      const run = await ratequeue(admin, "resources", ...args);
      expect(run.code, run.err).toBe(2);
      expect(run.err).toContain(message);
    }
  });
});

describe("ratequeue top", () => {
  const altScreenOn = "\x1b[?1049h";
  const altScreenOff = "\x1b[?1049l";
  const cursorShow = "\x1b[?25h";

  /** `ratequeue top` on a pseudo-terminal of 100x30; `tty` first prints the terminal's device. */
  function topInPty(apiKey: string, sttyFile: string) {
    const command = [
      "stty cols 100 rows 30",
      "tty",
      `stty -g > ${sttyFile}.before`,
      `${process.execPath} ${serverMain} top`,
      "rc=$?",
      `stty -g > ${sttyFile}.after`,
      "exit $rc",
    ].join("; ");
    const child = spawn("script", ["-qfec", command, "/dev/null"], {
      env: { ...process.env, RATEQUEUE_URL: server.url, RATEQUEUE_API_KEY: apiKey },
      stdio: ["pipe", "pipe", "inherit"],
    });
    let screen = "";
    child.stdout.on("data", (d: Buffer) => (screen += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    return {
      /** Everything the terminal received so far. */
      output: () => screen,
      /** The last fully drawn frame's lines, without control sequences. */
      frame(): string[] {
        const frames = screen.split("\x1b[H").filter((f) => f.includes("\x1b[J"));
        const last = frames.at(-1) ?? "";
        return last
          .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
          .split(/\r*\n/)
          .map((l) => l.replace(/\r/g, ""));
      },
      device: () => /\/dev\/pts\/\d+/.exec(screen)?.[0],
      press: (keys: string) => child.stdin.write(keys),
      exited,
      kill: () => child.kill(),
    };
  }

  async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test("shows each resource's grants/s against its limit, queue, p99 wait and leases; q quits and restores the terminal", async () => {
    const { admin, worker } = await tenant("top");
    const applied = await ratequeue(
      admin,
      "resources",
      "apply",
      "-f",
      file({ resources: { busy: { limits: [{ dimension: "requests", amount: 20, period: "1s", burst: 1 }] }, full: { concurrency: 1 } } }),
    );
    expect(applied.code, applied.err).toBe(0);
    // Traffic: busy grants as fast as its 20/s allows; full holds its one lease and has one waiter.
    const client = createClient({ url: server.url, apiKey: worker });
    const held = await client.acquire("full");
    const waiter = new AbortController();
    const waiting = client.acquire("full", { signal: waiter.signal }).catch(() => undefined);
    let traffic = true;
    const busyLoop = (async () => {
      while (traffic) await (await client.acquire("busy")).release();
    })();
    const sttyFile = join(dir, "top-stty");
    const top = topInPty(worker, sttyFile);
    try {
      const rows = await until("rows for busy with a grants/s figure, and full with its waiter and lease", () => {
        const lines = top.frame();
        const busy = lines.find((l) => /^busy\s+\d+\.\d\s/.test(l));
        const full = lines.find((l) => l.startsWith("full "));
        return busy !== undefined && full !== undefined && Number(busy.split(/\s+/)[1]) > 0 && { busy, full, header: lines[2]! };
      });
      expect(rows.header).toMatch(/^RESOURCE\s+GRANTS\/S\s+LIMIT\/S\s+QUEUE\s+P99 WAIT\s+LEASES\s+UTILISATION$/);
      // busy: about 20 grants/s of a 20.0/s limit, its p99 wait, its leases, and the request limit's use.
      const [, rate, limit, , p99, leases] = rows.busy.split(/\s+/);
      expect(Number(rate)).toBeGreaterThan(0);
      expect(Number(rate)).toBeLessThanOrEqual(40);
      expect(limit).toBe("20.0");
      expect(p99).toMatch(/^\d+(\.\d+)?m?s$/);
      // Each lease lives only for a release's round trip, so a reading may catch one.
      expect(leases).toMatch(/^[01]$/);
      expect(rows.busy).toMatch(/req \[[#.]{10}\]\s+\d+%$/);
      // full: no request limit, one waiting, its one lease of one held.
      expect(rows.full).toMatch(/^full\s+\d+\.\d\s+-\s+1\s+\S+\s+1\/1\s+-$/);

      top.press("q");
      expect(await top.exited).toBe(0);
      const output = top.output();
      expect(output.indexOf(altScreenOn)).toBeGreaterThan(-1);
      expect(output.lastIndexOf(cursorShow + altScreenOff)).toBeGreaterThan(output.lastIndexOf("\x1b[J"));
      // Raw mode is undone: the terminal's settings after top are those before it.
      expect(readFileSync(`${sttyFile}.after`, "utf8")).toBe(readFileSync(`${sttyFile}.before`, "utf8"));
    } finally {
      top.kill();
      traffic = false;
      await busyLoop;
      waiter.abort();
      await waiting;
      await held.release();
      await client.close();
    }
  });

  test("redraws to the terminal's new width when it is resized; Ctrl-C quits too", async () => {
    const { admin, worker } = await tenant("top-resize");
    expect((await ratequeue(admin, "resources", "apply", "-f", file({ resources: { r: {} } }))).code).toBe(0);
    const top = topInPty(worker, join(dir, "top-resize-stty"));
    try {
      // The title bar is padded to the terminal's width.
      await until("a frame 100 columns wide", () => top.frame()[0]?.length === 100 && top.frame().some((l) => l.startsWith("r ")));
      const device = await until("the terminal's device", top.device);
      const resized = spawn("stty", ["-F", device, "cols", "60", "rows", "20"], { stdio: "inherit" });
      expect(await new Promise((resolve) => resized.once("exit", resolve))).toBe(0);
      await until("a frame 60 columns wide", () => top.frame()[0]?.length === 60);
      expect(Math.max(...top.frame().map((l) => l.length))).toBe(60);
      top.press("\x03");
      expect(await top.exited).toBe(0);
      expect(top.output()).toContain(cursorShow + altScreenOff);
    } finally {
      top.kill();
    }
  });

  test("a key the server refuses: the server's message and exit 1, the screen never taken", async () => {
    const top = topInPty("rq_000000000000_" + "A".repeat(43), join(dir, "top-refused-stty"));
    expect(await top.exited).toBe(1);
    expect(top.output()).toContain("ratequeue top: UNAUTHENTICATED");
    expect(top.output()).not.toContain(altScreenOn);
  });

  test("without a terminal it refuses and points to stats", async () => {
    const run = await ratequeue(rootKey, "top");
    expect(run.code).toBe(2);
    expect(run.err).toContain("ratequeue top: needs a terminal; scripts read 'ratequeue resources stats NAME -o json'");
  });
});

describe("resource trees from the shell", () => {
  test("apply puts parents first, list --parent shows keyed children, stats shows the busiest, prune deletes children first", async () => {
    const { admin, worker } = await tenant("cli-tree");
    // The child comes first in the file: apply still puts its parent first.
    const tree = file(`
resources:
  llm/vip:
    parent: llm
    share: 3
  llm:
    limits: [ { dimension: requests, amount: 100, period: 1s } ]
    concurrency: 8
    per_key: { limits: [ { dimension: requests, amount: 10, period: 1s } ], concurrency: 2 }
    per_key_idle: 1m
`);
    const applied = await ratequeue(admin, "resources", "apply", "-f", tree);
    expect(applied.err).toBe("");
    expect(applied.out.trim().split("\n")).toEqual(["create llm", "create llm/vip"]);
    expect((await ratequeue(admin, "resources", "apply", "-f", tree)).out).toContain("unchanged llm/vip");
    expect(parseYaml((await ratequeue(admin, "resources", "get", "llm/vip")).out).resources["llm/vip"]).toMatchObject({ parent: "llm", share: 3 });

    const client = createClient({ url: server.url, apiKey: worker });
    try {
      const held = await client.acquire("llm", { key: "cust-1" });
      expect(held.resource).toBe("llm/cust-1");
      const listed = await ratequeue(admin, "resources", "list", "--parent", "llm", "-o", "json");
      expect(Object.keys(JSON.parse(listed.out).resources)).toEqual(["llm/cust-1", "llm/vip"]);
      // Declared resources only without --parent.
      expect(Object.keys(JSON.parse((await ratequeue(admin, "resources", "list", "-o", "json")).out).resources)).toEqual(["llm", "llm/vip"]);

      const stats = await ratequeue(admin, "resources", "stats", "llm");
      expect(stats.out).toContain("2 children:");
      expect(stats.out).toMatch(/^llm\/cust-1\s+1\s+yes\s+1\s+0\s+1\s+1$/m);
      const one = JSON.parse((await ratequeue(admin, "resources", "stats", "llm", "--children", "1", "-o", "json")).out);
      expect(one).toMatchObject({ children_count: 2, children: [{ name: "llm/cust-1", keyed: true, leases_in_flight: 1 }] });
      const child = await ratequeue(admin, "resources", "stats", "llm/cust-1");
      expect(child.out).toMatch(/parent llm: 1 leases, 0 queued/);
      await held.release();

      // A parent with declared children cannot go; --prune deletes the children first.
      const refused = await ratequeue(admin, "resources", "delete", "llm");
      expect(refused.code).toBe(1);
      expect(refused.err).toContain("FAILED_PRECONDITION: resource 'llm' has children ('llm/vip'); delete them first");
      const pruned = await ratequeue(admin, "resources", "apply", "--prune", "-f", file("resources: {}\n"));
      expect(pruned.out.trim().split("\n")).toEqual(["delete llm/vip", "delete llm"]);
    } finally {
      await client.close();
    }
  });

  test("a parent opened to a namespace takes that tenant's children, which see the parent only as numbers", async () => {
    const team = await tenant("cli-team");
    const other = await tenant("cli-other");
    const shared = file(`
resources:
  shared-llm:
    limits: [ { dimension: requests, amount: 100, period: 1s } ]
    concurrency: 4
    children_from: [cli-team]
`);
    expect((await ratequeue(rootKey, "resources", "apply", "-f", shared)).out).toContain("create shared-llm");
    const child = file(`
resources:
  mine:
    parent: default@shared-llm
    limits: [ { dimension: requests, amount: 50, period: 1s } ]
`);
    const put = await ratequeue(team.admin, "resources", "apply", "-f", child);
    expect(put.err).toBe("");
    expect(put.out).toContain("create mine");
    const refused = await ratequeue(other.admin, "resources", "apply", "-f", child);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("PERMISSION_DENIED: resource 'default@shared-llm' does not take children from namespace 'cli-other'");

    const client = createClient({ url: server.url, apiKey: team.worker });
    try {
      const held = await client.acquire("mine");
      // The parent's own admin sees the tenant's child (in its namespace's name) and its lease.
      const stats = JSON.parse((await ratequeue(rootKey, "resources", "stats", "shared-llm", "-o", "json")).out);
      expect(stats).toMatchObject({ leases_in_flight: 1, children_count: 1, children: [{ name: "cli-team@mine", leases_in_flight: 1 }] });
      // The tenant sees the parent's state as numbers, and only its own children of it.
      const mine = JSON.parse((await ratequeue(team.admin, "resources", "stats", "mine", "-o", "json")).out);
      expect(mine.parent).toMatchObject({ name: "default@shared-llm", leases_in_flight: 1, queue_depth: 0 });
      expect(mine.parent.limits[0]).toMatchObject({ available: expect.any(Number) });
      expect(Object.keys(JSON.parse((await ratequeue(team.admin, "resources", "list", "--parent", "default@shared-llm", "-o", "json")).out).resources)).toEqual(["mine"]);
      const notOpened = await ratequeue(other.admin, "resources", "list", "--parent", "default@shared-llm");
      expect(notOpened.code).toBe(1);
      expect(notOpened.err).toContain("NOT_FOUND");
      await held.release();
    } finally {
      await client.close();
    }
  });
});
