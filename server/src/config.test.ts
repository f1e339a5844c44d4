import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { parseDocument } from "yaml";
import { checkTrees, ConfigError, formatDuration, loadConfig, parseConfig, parseDuration, readPlainYaml, resourceToConfig, toConfigYaml } from "./config.js";

test("the README's example config loads with defaults filled in", () => {
  const { resources } = parseConfig({
    resources: {
      "openai-gpt4": {
        limits: [
          { dimension: "requests", amount: 500, period: "60s", burst: 20 },
          { dimension: "load", amount: 30000, period: "60s" },
        ],
        concurrency: 8,
        lanes: { "user-facing": 3, batch: 1 },
        lease_ttl: "30s",
        max_queue: 10000,
      },
    },
  });
  expect(resources).toEqual([
    {
      name: "openai-gpt4",
      limits: [
        { dimension: "requests", amount: 500, periodMs: 60_000, burst: 20 },
        { dimension: "load", amount: 30000, periodMs: 60_000, burst: 30000 },
      ],
      concurrency: 8,
      lanes: [
        { name: "user-facing", weight: 3 },
        { name: "batch", weight: 1 },
      ],
      defaultLane: "user-facing",
      leaseTtlMs: 30_000,
      maxQueue: 10_000,
      cooldownMs: 1000,
      learnLimits: true,
    },
  ]);
});

test("an empty resource gets one default lane and the default TTL and queue", () => {
  expect(parseConfig({ resources: { r: {} } }).resources[0]).toMatchObject({
    lanes: [{ name: "default", weight: 1 }],
    defaultLane: "default",
    leaseTtlMs: 30_000,
    maxQueue: 10_000,
    concurrency: 0,
  });
});

test("resources declared alike share one list of limits and of lanes; any difference keeps its own", () => {
  const limits = [{ dimension: "requests", amount: 500, period: "60s", burst: 20 }];
  const { resources } = parseConfig({
    resources: {
      a: { limits, lanes: { fast: 2, slow: 1 } },
      b: { limits, lanes: { fast: 2, slow: 1 } },
      c: { limits: [{ dimension: "requests", amount: 500, period: "60s", burst: 21 }], lanes: { fast: 2, slow: 1 } },
      d: { limits, lanes: { fast: 3, slow: 1 } },
    },
    namespaces: { "team-a": { resources: { e: { limits, lanes: { fast: 2, slow: 1 } } } } },
  });
  const [a, b, c, d, e] = resources;
  // A file of a million tenants declared alike holds them once.
  expect(b!.limits).toBe(a!.limits);
  expect(b!.lanes).toBe(a!.lanes);
  expect(e!.limits).toBe(a!.limits);
  // Never at the cost of an answer: a different burst or weight is its own list.
  expect(c!.limits).not.toBe(a!.limits);
  expect(c!.limits[0]!.burst).toBe(21);
  expect(c!.lanes).toBe(a!.lanes);
  expect(d!.limits).toBe(a!.limits);
  expect(d!.lanes).not.toBe(a!.lanes);
  expect(d!.lanes[0]).toEqual({ name: "fast", weight: 3 });
});

test("durations", () => {
  expect(parseDuration("k", "500ms")).toBe(500);
  expect(parseDuration("k", "1.5m")).toBe(90_000);
  expect(parseDuration("k", "1h")).toBe(3_600_000);
  expect(parseDuration("k", 2)).toBe(2000);
  expect(() => parseDuration("k", "soon")).toThrow(/k: 'soon' is not a duration/);
});

test("durations are written so that parseDuration reads them back", () => {
  for (const [ms, text] of [[60_000, "60s"], [500, "500ms"], [1500, "1500ms"], [0, "0ms"], [0.25, "0.25ms"], [86_400_000, "86400s"]] as const) {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDuration("k", text)).toBe(ms);
  }
});

test("a resource written in the config's shape reads back to the same spec, defaults included", () => {
  const [spec] = parseConfig({
    resources: {
      r: {
        limits: [{ dimension: "requests", amount: 500, period: "60s", burst: 20 }, { dimension: "load", amount: 3e4, period: "1.5s" }],
        concurrency: 8,
        lanes: { "user-facing": 3, batch: 1 },
        default_lane: "batch",
      },
    },
  }).resources;
  const written = resourceToConfig(spec!);
  expect(written).toEqual({
    limits: [
      { dimension: "requests", amount: 500, period: "60s", burst: 20 },
      { dimension: "load", amount: 30000, period: "1500ms", burst: 30000 },
    ],
    concurrency: 8,
    lanes: { "user-facing": 3, batch: 1 },
    default_lane: "batch",
    lease_ttl: "30s",
    max_queue: 10000,
    cooldown: "1s",
    learn_limits: true,
  });
  expect(parseConfig({ resources: { r: written } }).resources).toEqual([spec]);
});

test("provider feedback settings: a limit's unit, cooldown and learn_limits read and write back", () => {
  const { resources } = parseConfig({
    resources: {
      claude: {
        limits: [
          { dimension: "requests", amount: 50, period: "60s" },
          { dimension: "load", amount: 40000, period: "60s", unit: "input_tokens" },
          { dimension: "load", amount: 8000, period: "60s", unit: "output_tokens" },
        ],
        cooldown: "2s",
        learn_limits: false,
      },
    },
  });
  expect(resources[0]).toMatchObject({ cooldownMs: 2000, learnLimits: false });
  expect(resources[0]!.limits.map((l) => l.unit)).toEqual([undefined, "input_tokens", "output_tokens"]);
  const written = resourceToConfig(resources[0]!);
  expect(written).toMatchObject({ cooldown: "2s", learn_limits: false });
  expect(parseConfig({ resources: { claude: written } }).resources).toEqual(resources);
  expect(() => parseConfig({ resources: { r: { learn_limits: "yes" } } })).toThrow(/resources\.r\.learn_limits: must be true or false/);
  expect(() => parseConfig({ resources: { r: { limits: [{ dimension: "requests", amount: 1, period: "1s", unit: "tokens" }] } } })).toThrow(
    /unit: only a load limit has a unit/,
  );
  expect(() => parseConfig({ resources: { r: { cooldown: "2m" } } })).toThrow(/cooldown/);
});

test.each([
  [{ resources: { r: { limits: [{ dimension: "tokens", amount: 1, period: "1s" }] } } }, /resources\.r\.limits\[0\]\.dimension/],
  [{ resources: { r: { limits: [{ dimension: "load", amount: 0, period: "1s" }] } } }, /resources\.r: resource\.limits\[0\]\.amount/],
  [{ resources: { r: { limits: [{ dimension: "load", amount: 5, period: "1s", burst: 0.5 }] } } }, /burst/],
  [{ resources: { r: { concurrency: 2.5 } } }, /concurrency/],
  [{ resources: { r: { lanes: { a: 0.5 } } } }, /lanes\[0\]\.weight/],
  [{ resources: { r: { default_lane: "x", lanes: { a: 1 } } } }, /default_lane/],
  [{ resources: { r: { lease_ttl: "1ms" } } }, /lease_ttl/],
  [{ resources: { r: { burst: 3 } } }, /resources\.r\.burst: unknown key/],
  [{ resources: { "bad name": {} } }, /resource\.name/],
  [{ resource: {} }, /resource: unknown key/],
])("rejects %j", (doc, message) => {
  expect(() => parseConfig(doc)).toThrow(message);
  try {
    parseConfig(doc);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
  }
});

describe("loading a file", () => {
  const dir = mkdtempSync(join(tmpdir(), "ratequeue-config-"));
  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  test("a key that appears twice in YAML is refused with its line", () => {
    const path = write("dup.yaml", "resources:\n  a: {}\n  b: {}\n  a: { concurrency: 2 }\n");
    expect(() => loadConfig(path)).toThrow(new ConfigError(`${path}:4: key 'a' appears twice in one mapping`));
  });

  test("a .json file is parsed as JSON, and a syntax error says so", () => {
    expect(loadConfig(write("ok.json", '{"resources": {"r": {"concurrency": 3}}}')).resources[0]?.concurrency).toBe(3);
    expect(() => loadConfig(write("bad.json", "resources:\n  r: {}\n"))).toThrow(/bad\.json: not valid JSON/);
    expect(() => loadConfig(write("bad.yaml", "resources: [\n"))).toThrow(/bad\.yaml: not valid YAML/);
  });

  // Both used to be quadratic (the YAML parser's duplicate-key scan; JSON went through it too):
  // 100,000 resources in JSON took 57 s. Linear, they take a few seconds; the bound is generous.
  test("a config of 100,000 resources in JSON, or 70,000 in block-style YAML, loads in linear time", { timeout: 60_000 }, () => {
    const json: Record<string, unknown> = {};
    let yaml = "resources:\n";
    for (let i = 0; i < 100_000; i++) {
      json[`r${i}`] = { limits: [{ dimension: "requests", amount: 10, period: "1s" }], concurrency: 4 };
      if (i < 70_000) yaml += `  r${i}:\n    limits:\n      - dimension: requests\n        amount: 10\n        period: 1s\n    concurrency: 4\n`;
    }
    for (const [path, count] of [
      [write("big.json", JSON.stringify({ resources: json })), 100_000],
      [write("big.yaml", yaml), 70_000],
    ] as const) {
      const started = performance.now();
      const { resources } = loadConfig(path);
      expect(resources).toHaveLength(count);
      expect(resources[count - 1]).toMatchObject({ name: `r${count - 1}`, concurrency: 4 });
      expect(performance.now() - started).toBeLessThan(25_000);
    }
  });
});

describe("resource trees", () => {
  const tree = {
    resources: {
      "openai-gpt4/enterprise-42": { parent: "openai-gpt4", share: 4, limits: [{ dimension: "requests", amount: 200, period: "60s" }] },
      "openai-gpt4": {
        limits: [{ dimension: "requests", amount: 500, period: "60s", burst: 20 }],
        concurrency: 16,
        per_key: { limits: [{ dimension: "requests", amount: 60, period: "60s", burst: 5 }], concurrency: 4 },
        per_key_idle: "5m",
        children_from: ["team-a"],
      },
    },
    namespaces: { "team-a": { resources: { mine: { parent: "default@openai-gpt4" } } } },
  };

  test("parent, share, per_key, per_key_idle and children_from read, with parents put first, and write back", () => {
    const config = parseConfig(tree);
    checkTrees(config);
    expect(config.resources.map((r) => [r.name, r.parent])).toEqual([
      ["openai-gpt4", undefined],
      ["openai-gpt4/enterprise-42", "openai-gpt4"],
      ["team-a@mine", "openai-gpt4"],
    ]);
    const parent = config.resources[0]!;
    expect(parent).toMatchObject({ perKey: { limits: [{ amount: 60, burst: 5 }], concurrency: 4, share: 1 }, perKeyIdleMs: 300_000, childrenFrom: ["team-a"] });
    expect(resourceToConfig(parent)).toMatchObject({
      per_key: { limits: [{ dimension: "requests", amount: 60, period: "60s", burst: 5 }], concurrency: 4, share: 1 },
      per_key_idle: "300s",
      children_from: ["team-a"],
    });
    expect(resourceToConfig(config.resources[1]!)).toMatchObject({ parent: "openai-gpt4", share: 4 });
    expect(parseConfig({ resources: { x: resourceToConfig(parent) } }).resources[0]).toEqual({ ...parent, name: "x" });
  });

  test.each([
    [{ resources: { a: { parent: "b" }, b: { parent: "a" } } }, "its own ancestor"],
    [{ resources: { a: { parent: "nope" } } }, "resources.a: parent 'nope' of 'a' not found"],
    [{ resources: { a: {}, b: { parent: "a" }, c: { parent: "b" }, d: { parent: "c", per_key: {} } } }, "resources.d: 'd' would make a tree of 5 levels"],
    [{ resources: { a: {} }, namespaces: { t: { resources: { m: { parent: "default@a" } } } } }, "namespaces.t.resources.m.parent: 'a' does not list namespace 't'"],
    [{ resources: { a: { per_key: { burst: 1 } } } }, "resources.a.per_key.burst: unknown key"],
    [{ resources: { a: { share: 0.5, parent: "b" }, b: {} } }, "resource.share: must be an integer"],
  ])("a tree the engine cannot take is refused, naming the resource (%#)", (doc, message) => {
    expect(() => checkTrees(parseConfig(doc))).toThrow(message);
  });
});

describe("the quick YAML reader", () => {
  type Node = { scalar: string } | { map: [string, Node][]; flow: boolean } | { seq: Node[]; flow: boolean };
  const scalars = [
    "60s", "500", "0", "00", "017", "-0", "+1", "-7", "1.5", "1.50", ".5", "5.", "1e3", "1E+3", "-1.5e-3", "0x1F", "0o17", "0o9", "1_000",
    "12345678901234567890", ".inf", "-.Inf", "+.INF", ".nan", ".NaN", "nan", "inf", "~", "null", "Null", "NULL", "nULL", "true", "True", "TRUE",
    "tRue", "false", "False", "yes", "no", "on", "a", "requests", "user-facing", "team-a@r", "a/b", "/a", "a.b", ".", "..", "...", "-", "-a", "--a",
    "a b", "a  b", "@a", "a@", "~a", "+", "a:b", "a: b", "a #b", "a#b", "#a", "[a]", "{a}", "a,b", "'a'", '"a"', "a'b", "é", "a\tb", "- a", "? a",
    "&a", "*a", "!a", "|", ">", "%a", "`a", "a]", "b}",
  ];
  const keys = ["a", "b", "limits", "user-facing", "team-a@r", "d.e", "x/y", "1", "true", "null", "~", "__proto__", "constructor", "a b", "-x", "x:y", "@k", "k ", "0x1"];
  // Mostly what configs hold, so that the quick path is taken often; the rest tries its edges.
  const scalar = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...scalars.slice(0, 46)) }, { weight: 1, arbitrary: fc.constantFrom(...scalars) });
  const key = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...keys.slice(0, 7)) }, { weight: 1, arbitrary: fc.constantFrom(...keys) });
  const node: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
    node: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.record({ scalar }),
      fc.record({ map: fc.uniqueArray(fc.tuple(key, tie("node")), { maxLength: 4, selector: ([k]) => k }), flow: fc.boolean() }),
      fc.record({ seq: fc.array(tie("node"), { maxLength: 4 }), flow: fc.boolean() }),
    ),
  })).node;
  const style = fc.record({ indent: fc.constantFrom(1, 2, 4), indentless: fc.boolean(), comments: fc.boolean(), crlf: fc.boolean(), space: fc.constantFrom("", " ") });
  type Style = typeof style extends fc.Arbitrary<infer S> ? S : never;

  function flow(n: Node, sp: string): string {
    if ("scalar" in n) return n.scalar;
    if ("map" in n) return `{${sp}${n.map.map(([k, v]) => `${k}: ${flow(v, sp)}`).join(`,${sp}`)}${sp}}`;
    return `[${sp}${n.seq.map((v) => flow(v, sp)).join(`,${sp}`)}${sp}]`;
  }
  /** The lines of `n` as a block at `indent` ("- " items, "key: value" entries), flows where `flow` says. */
  function block(n: Node, indent: number, s: Style): string[] {
    const pad = " ".repeat(indent);
    const comment = s.comments ? "  # note" : "";
    if ("map" in n) {
      return n.map.flatMap(([k, v]) => {
        if ("scalar" in v || v.flow || (v.seq ?? v.map ?? []).length === 0) return [`${pad}${k}: ${flow(v, s.space)}${comment}`];
        const inner = "seq" in v && s.indentless ? indent : indent + s.indent;
        return [`${pad}${k}:`, ...(s.comments ? [`${pad}# about ${k}`, ""] : []), ...block(v, inner, s)];
      });
    }
    if ("seq" in n) {
      return n.seq.flatMap((v) => {
        if ("scalar" in v || v.flow || (v.seq ?? v.map ?? []).length === 0) return [`${pad}- ${flow(v, s.space)}${comment}`];
        // A mapping item starts on the dash's line; a sequence item below it.
        if ("map" in v) {
          const lines = block(v, indent + 2, s);
          return [`${pad}- ${lines[0]!.slice(indent + 2)}`, ...lines.slice(1)];
        }
        return [`${pad}-`, ...block(v, indent + s.indent, s)];
      });
    }
    return [`${pad}${n.scalar}`];
  }

  /** What the yaml package reads, or "error" (duplicate keys are errors too, as the config loader makes them). */
  function oracle(text: string): unknown {
    const doc = parseDocument(text, { uniqueKeys: true });
    return doc.errors.length > 0 ? "error" : doc.toJS();
  }

  test("reads what the yaml package reads, or leaves the text to it", () => {
    let read = 0;
    fc.assert(
      fc.property(fc.record({ map: fc.array(fc.tuple(key, node), { minLength: 1, maxLength: 4 }), flow: fc.constant(false) }), style, (root, s) => {
        const text = block(root, 0, s).join(s.crlf ? "\r\n" : "\n") + "\n";
        const quick = readPlainYaml(text);
        if (quick === undefined) return;
        read++;
        const full = oracle(text);
        expect(full).not.toBe("error");
        expect(quick.value).toEqual(full);
      }),
      { numRuns: 3000 },
    );
    // The generator reaches the quick path often enough to mean something.
    expect(read).toBeGreaterThan(300);
  });

  test("reads config files as `resources get -o yaml` and the README write them", () => {
    const written = toConfigYaml({
      resources: Object.fromEntries(parseConfig(tree()).resources.map((spec) => [spec.name, resourceToConfig(spec)])),
    });
    const text = `# tenants\nresources:\n  r:\n    limits:\n      - dimension: requests\n        amount: 10\n        period: 1s\n    lanes: { a: 1, b: 2 }\n${written.slice("resources:\n".length)}`;
    const quick = readPlainYaml(text);
    expect(quick).toBeDefined();
    expect(quick!.value).toEqual(oracle(text));
  });

  function tree() {
    return {
      resources: {
        "openai-gpt4": {
          limits: [{ dimension: "requests", amount: 500, period: "60s", burst: 20 }, { dimension: "load", amount: 30000, period: "60s", unit: "input_tokens" }],
          concurrency: 16,
          lanes: { "user-facing": 3, batch: 1 },
          per_key: { limits: [{ dimension: "requests", amount: 60, period: "60s", burst: 5 }], concurrency: 4 },
          per_key_idle: "5m",
          children_from: ["team-a", "team-b"],
        },
        "openai-gpt4/enterprise-42": { parent: "openai-gpt4", share: 4 },
      },
    };
  }
});
