// The config file: resources declared in YAML (or JSON of the same shape),
// checked by the same validation as PutResource so that both paths accept
// exactly the same definitions.
import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Dimension, KeyedChildTemplateSchema, LaneSchema, LimitSchema, ResourceSchema, type Limit, type Resource } from "@ratequeue/proto";
import { Document, isMap, isScalar, isSeq, LineCounter, parseDocument, visit } from "yaml";
import { DEFAULT_COOLDOWN_MS, DEFAULT_PER_KEY_IDLE_MS, Engine, SimulatedClock, SpecPool, type LimitSpec, type ResourceSpec } from "./core/index.js";
import { RpcError } from "./errors.js";
import { checkNamespace } from "./validate/fields.js";
import { resourceFromProto } from "./validate/requests.js";
import { defaultNamespace, namespaceOf, scopeOf } from "./auth/scope.js";

export interface Config {
  /** Every resource, by engine name: a namespace's resources are qualified ("team-a@r"). */
  resources: ResourceSpec[];
  /** Namespaces declared under `namespaces:` (besides "default"). */
  namespaces: string[];
}

/** A config error names the file, the key and the rule. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "60s", "1.5m", "500ms", "1h" (a bare number means seconds) to ms. */
export function parseDuration(key: string, value: unknown): number {
  if (typeof value === "number" && Number.isFinite(value)) return value * 1000;
  const match = typeof value === "string" ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value) : null;
  if (match === null) throw new ConfigError(`${key}: '${String(value)}' is not a duration; write e.g. 500ms, 60s, 1m, 1h`);
  return Number(match[1]) * units[match[2]!]!;
}

/**
 * Writes a duration the way parseDuration reads it: whole seconds as "60s",
 * anything else in milliseconds ("500ms", "0.25ms"), to the microsecond.
 */
export function formatDuration(ms: number): string {
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${Math.round(ms * 1000) / 1000}ms`;
}

/** One limit in the config file's shape. */
export interface ConfigLimit {
  dimension: "requests" | "load";
  amount: number;
  period: string;
  burst: number;
  unit?: string;
}

/** One resource in the config file's shape: what `resources.<name>` holds. */
export interface ConfigResource {
  limits: ConfigLimit[];
  concurrency: number;
  lanes: Record<string, number>;
  default_lane: string;
  lease_ttl: string;
  max_queue: number;
  cooldown: string;
  learn_limits: boolean;
  /** A child's parent and share of it; absent on a root. */
  parent?: string;
  share?: number;
  /** The keyed children's template and how long an idle one lives; absent without one. */
  per_key?: { limits: ConfigLimit[]; concurrency: number; share: number };
  per_key_idle?: string;
  /** Namespaces that may declare children of this resource; absent when none. */
  children_from?: string[];
}

function limitToConfig(l: LimitSpec): ConfigLimit {
  return {
    dimension: l.dimension,
    amount: l.amount,
    period: formatDuration(l.periodMs),
    burst: l.burst,
    ...(l.unit !== undefined && l.unit !== "" && { unit: l.unit }),
  };
}

/**
 * A resource as the config file writes it, every default spelled out, so
 * that parseConfig reads it back to the same spec (the CLI's `get` and
 * `apply` rely on this round trip).
 */
export function resourceToConfig(spec: ResourceSpec): ConfigResource {
  const perKey = spec.perKey;
  return {
    limits: spec.limits.map(limitToConfig),
    concurrency: spec.concurrency,
    lanes: Object.fromEntries(spec.lanes.map((l) => [l.name, l.weight])),
    default_lane: spec.defaultLane,
    lease_ttl: formatDuration(spec.leaseTtlMs),
    max_queue: spec.maxQueue,
    cooldown: formatDuration(spec.cooldownMs ?? DEFAULT_COOLDOWN_MS),
    learn_limits: spec.learnLimits ?? true,
    ...(spec.parent !== undefined && { parent: spec.parent, share: spec.share ?? 1 }),
    ...(perKey !== undefined && {
      per_key: { limits: perKey.limits.map(limitToConfig), concurrency: perKey.concurrency, share: perKey.share },
      per_key_idle: formatDuration(spec.perKeyIdleMs ?? DEFAULT_PER_KEY_IDLE_MS),
    }),
    ...(spec.childrenFrom !== undefined && spec.childrenFrom.length > 0 && { children_from: [...spec.childrenFrom] }),
  };
}

/**
 * One resource's definition as the config file writes it under
 * `resources.<name>`, in YAML or JSON, as PutResource's message. Only the
 * shape is checked here: PutResource checks the values, with its own words.
 */
export function resourceFromConfigText(name: string, text: string): Resource {
  return resourceFromConfig(name, parseYaml(`resources.${name}`, text) ?? {});
}

/**
 * YAML as the README writes config: a mapping or list of plain values on
 * one line (`- { dimension: requests, amount: 500, period: 60s, burst: 20 }`),
 * everything else in blocks.
 */
export function toConfigYaml(value: unknown): string {
  const doc = new Document(value);
  visit(doc, {
    Collection(_, node, path) {
      const items = isMap(node) ? node.items.map((pair) => pair.value) : isSeq(node) ? node.items : [];
      if (path.length > 1 && items.every((item) => isScalar(item))) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0 });
}

/** How a config file is read. */
export interface ConfigOptions {
  /**
   * Top-level parents stay as written: `resources apply` sends them to the
   * namespace it acts in, where `NAME` is that namespace's resource and
   * `NAMESPACE@NAME` another's. Without it, the top level is "default".
   */
  parentsAsWritten?: boolean;
}

/** Reads and validates a config file (YAML or JSON). */
export function loadConfig(path: string, options: ConfigOptions = {}): Config {
  const doc = readDocument(path);
  try {
    return parseConfig(doc ?? {}, options);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof RpcError) throw new ConfigError(`${path}: ${err.message}`);
    throw err;
  }
}

/** The parsed document of a config file; its text is dropped on return, before the document is validated (a large file's text is as large as the resources it declares). */
function readDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${path}: cannot read: ${(err as Error).message}`);
  }
  return path.endsWith(".json") ? parseJson(path, text) : parseYaml(path, text);
}

function parseJson(path: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Parses YAML in time linear in its size. Files in the usual shape take the
 * quick reader below (the yaml package reads about 1 MB/s: 100,000
 * resources took 20 s); the others the yaml package. Its own duplicate key
 * check compares each key with every earlier key of its map (quadratic: a
 * file of 100,000 resources took minutes), so it is off and duplicates are
 * found here with a set per map.
 */
function parseYaml(path: string, text: string): unknown {
  const quick = readPlainYaml(text);
  if (quick !== undefined) return quick.value;
  const lines = new LineCounter();
  const doc = parseDocument(text, { uniqueKeys: false, lineCounter: lines });
  const [first] = doc.errors;
  if (first !== undefined) throw new ConfigError(`${path}: not valid YAML: ${first.message}`);
  visit(doc, {
    Map(_, map) {
      if (!isMap(map)) return;
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        if (!seen.has(key)) {
          seen.add(key);
          continue;
        }
        const at = isScalar(pair.key) && pair.key.range ? lines.linePos(pair.key.range[0]) : undefined;
        throw new ConfigError(`${path}${at ? `:${at.line}` : ""}: key '${String(key)}' appears twice in one mapping`);
      }
    },
  });
  return doc.toJS();
}

/** A line of YAML with content: its indent (spaces), its text without the comment and trailing spaces. */
interface YamlLine {
  indent: number;
  text: string;
}

/** Thrown inside readPlainYaml when the text leaves the shape it reads. */
class NotPlain {}
const notPlain = new NotPlain();

/** What a line may hold outside comments: no quotes, anchors, aliases, tags, block scalars, directives, tabs... */
const plainLine = /^[A-Za-z0-9 _.\-/@+~:,[\]{}]*$/;
/** What a plain scalar may hold (and a key, without the spaces): never ':', '#', ',' or brackets. */
const plainScalar = /^(?:[A-Za-z0-9_./+~]|-(?=[^ ]))[A-Za-z0-9 _./@+~-]*$/;
const plainKey = /^(?:[A-Za-z0-9_./+~]|-(?=[^ ]))[A-Za-z0-9_./@+~-]*$/;

// The YAML 1.2 core schema's plain scalars, tried in the yaml package's order, resolved as it does.
const yamlNull = /^(?:~|[Nn]ull|NULL)?$/;
const yamlBool = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const yamlOct = /^0o[0-7]+$/;
const yamlInt = /^[-+]?[0-9]+$/;
const yamlHex = /^0x[0-9a-fA-F]+$/;
const yamlNaN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const yamlExp = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const yamlFloat = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

function scalarValue(s: string): unknown {
  if (yamlNull.test(s)) return null;
  if (yamlBool.test(s)) return s[0] === "t" || s[0] === "T";
  if (yamlOct.test(s)) return parseInt(s.substring(2), 8);
  if (yamlInt.test(s)) return parseInt(s, 10);
  if (yamlHex.test(s)) return parseInt(s.substring(2), 16);
  if (yamlNaN.test(s)) return s.slice(-3).toLowerCase() === "nan" ? NaN : s[0] === "-" ? -Infinity : Infinity;
  if (yamlExp.test(s) || yamlFloat.test(s)) return parseFloat(s);
  return s;
}

/** A mapping key: a plain scalar that reads as a string (the yaml package would stringify any other). */
function keyOf(s: string): string {
  if (!plainKey.test(s) || s.length > 1000 || s === "__proto__" || typeof scalarValue(s) !== "string") throw notPlain;
  return s;
}

/**
 * Reads YAML in the shape config files usually have, about a hundred times
 * faster than the yaml package: block mappings and sequences indented with
 * spaces (a sequence's items may be mappings), flow collections on one
 * line, plain scalars, comments and blank lines. Anything else (quotes,
 * anchors, aliases, tags, block scalars, scalars or flows over several
 * lines, tabs, duplicate keys, keys that read as numbers...) gives
 * undefined, and the yaml package reads the text, with its own messages.
 * Where it answers, it answers what the yaml package reads (a property
 * test compares them).
 */
export function readPlainYaml(text: string): { value: unknown } | undefined {
  const lines: YamlLine[] = [];
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    let line = text.slice(start, end);
    start = end + 1;
    // A comment starts at a '#' that begins the line or follows a space.
    const hash = line.startsWith("#") ? 0 : line.indexOf(" #");
    let last = hash >= 0 ? hash : line.length;
    // Only spaces (and the \r of \r\n) end a line: to YAML, other blanks are text.
    while (last > 0 && (line[last - 1] === " " || line[last - 1] === "\r")) last--;
    line = line.slice(0, last);
    if (line === "") continue;
    if (!plainLine.test(line)) return undefined;
    const indent = line.length - line.trimStart().length;
    lines.push({ indent, text: line.slice(indent) });
  }
  if (lines.length === 0) return { value: null };
  if (lines[0]!.indent !== 0) return undefined;
  try {
    const reader = new PlainYamlReader(lines);
    const value = reader.block(0, 0);
    if (reader.at !== lines.length || (typeof value !== "object" && value !== null)) return undefined;
    return { value };
  } catch (err) {
    if (err === notPlain) return undefined;
    throw err;
  }
}

class PlainYamlReader {
  /** The next line to read. */
  at = 0;

  constructor(private readonly lines: YamlLine[]) {}

  /** The block that starts at line `at`, indented by `indent`: a sequence or a mapping. */
  block(at: number, indent: number): unknown {
    this.at = at;
    return isItem(this.lines[at]!.text) ? this.sequence(indent) : this.mapping(indent);
  }

  private mapping(indent: number): Record<string, unknown> {
    const map: Record<string, unknown> = {};
    const lines = this.lines;
    while (this.at < lines.length && lines[this.at]!.indent === indent) {
      const line = lines[this.at]!;
      const colon = keyEnd(line.text);
      if (colon < 0) throw notPlain;
      const key = keyOf(line.text.slice(0, colon));
      if (Object.hasOwn(map, key)) throw notPlain;
      const rest = line.text.slice(colon + 1).trimStart();
      const next = lines[this.at + 1];
      this.at++;
      if (rest !== "") map[key] = inlineValue(rest);
      else if (next !== undefined && next.indent > indent) map[key] = this.block(this.at, next.indent);
      // A sequence may sit at its key's own indent.
      else if (next !== undefined && next.indent === indent && isItem(next.text)) map[key] = this.sequence(indent);
      else map[key] = null;
      if (this.at < lines.length && lines[this.at]!.indent > indent) throw notPlain;
    }
    return map;
  }

  private sequence(indent: number): unknown[] {
    const seq: unknown[] = [];
    const lines = this.lines;
    while (this.at < lines.length && lines[this.at]!.indent === indent && isItem(lines[this.at]!.text)) {
      const line = lines[this.at]!;
      const item = line.text.slice(1).trimStart();
      const column = indent + line.text.length - item.length;
      const next = lines[this.at + 1];
      if (item === "") {
        this.at++;
        seq.push(next !== undefined && next.indent > indent ? this.block(this.at, next.indent) : null);
      } else if (isItem(item)) {
        throw notPlain;
      } else if (item[0] !== "{" && item[0] !== "[" && keyEnd(item) >= 0) {
        // "- key: value": a mapping whose keys line up after the dash.
        lines[this.at] = { indent: column, text: item };
        seq.push(this.mapping(column));
      } else {
        this.at++;
        seq.push(inlineValue(item));
      }
      if (this.at < lines.length && lines[this.at]!.indent > indent) throw notPlain;
    }
    return seq;
  }
}

/** True for a sequence item: "-" alone or followed by a space. */
function isItem(text: string): boolean {
  return text === "-" || text.startsWith("- ");
}

/** Where the ':' of a "key: value" or "key:" line is, or -1. */
function keyEnd(text: string): number {
  const colon = text.indexOf(":");
  if (colon <= 0 || (colon + 1 < text.length && text[colon + 1] !== " ") || text[colon - 1] === " ") return -1;
  return colon;
}

/** A value written on its key's or its dash's line: a flow collection or a plain scalar. */
function inlineValue(text: string): unknown {
  if (text[0] === "{" || text[0] === "[") {
    const flow = new FlowReader(text);
    const value = flow.value();
    flow.skipSpaces();
    if (flow.at !== text.length) throw notPlain;
    return value;
  }
  if (!plainScalar.test(text)) throw notPlain;
  return scalarValue(text);
}

/** A flow collection on one line: { key: value, ... } and [ value, ... ], nested. */
class FlowReader {
  at = 0;

  constructor(private readonly text: string) {}

  skipSpaces(): void {
    while (this.text[this.at] === " ") this.at++;
  }

  value(): unknown {
    this.skipSpaces();
    const c = this.text[this.at];
    if (c === "{") return this.mapping();
    if (c === "[") return this.sequence();
    const start = this.at;
    while (this.at < this.text.length && !",]}:".includes(this.text[this.at]!)) this.at++;
    const s = this.text.slice(start, this.at).trimEnd();
    if (s === "" || !plainScalar.test(s)) throw notPlain;
    return scalarValue(s);
  }

  private mapping(): Record<string, unknown> {
    const map: Record<string, unknown> = {};
    this.at++;
    this.skipSpaces();
    if (this.text[this.at] === "}") {
      this.at++;
      return map;
    }
    for (;;) {
      this.skipSpaces();
      const start = this.at;
      while (this.at < this.text.length && !",]}: ".includes(this.text[this.at]!)) this.at++;
      const key = keyOf(this.text.slice(start, this.at));
      if (this.text[this.at] !== ":" || this.text[this.at + 1] !== " " || Object.hasOwn(map, key)) throw notPlain;
      this.at++;
      map[key] = this.value();
      this.skipSpaces();
      const c = this.text[this.at++];
      if (c === "}") return map;
      if (c !== ",") throw notPlain;
    }
  }

  private sequence(): unknown[] {
    const seq: unknown[] = [];
    this.at++;
    this.skipSpaces();
    if (this.text[this.at] === "]") {
      this.at++;
      return seq;
    }
    for (;;) {
      seq.push(this.value());
      this.skipSpaces();
      const c = this.text[this.at++];
      if (c === "]") return seq;
      if (c !== ",") throw notPlain;
    }
  }
}

/**
 * Validates a parsed config document. Top-level `resources` belong to the
 * "default" namespace; `namespaces: { team-a: { resources: {...} } }` puts
 * resources in other namespaces.
 */
export function parseConfig(doc: unknown, options: ConfigOptions = {}): Config {
  const root = asObject("config", doc);
  for (const key of Object.keys(root)) {
    if (key !== "resources" && key !== "namespaces") throw new ConfigError(`${key}: unknown key; the config holds 'resources' and 'namespaces'`);
  }
  // Resources declared alike share their lists of limits and lanes, as in
  // the engine: a file of a million of them is held once in that form.
  const pool = new SpecPool();
  const resources = resourcesFromConfig("resources", root.resources, options.parentsAsWritten === true ? undefined : defaultNamespace, pool);
  const names = new Set(resources.map((r) => r.name));
  const namespaces: string[] = [];
  for (const [ns, value] of Object.entries(asObject("namespaces", root.namespaces ?? {}))) {
    try {
      checkNamespace(`namespaces.${ns}`, ns);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    const body = asObject(`namespaces.${ns}`, value ?? {});
    for (const key of Object.keys(body)) {
      if (key !== "resources") throw new ConfigError(`namespaces.${ns}.${key}: unknown key; a namespace holds 'resources'`);
    }
    const more = resourcesFromConfig(`namespaces.${ns}.resources`, body.resources, ns, pool);
    for (const spec of more) {
      if (names.has(spec.name)) throw new ConfigError(`namespaces.${ns}.resources.${scopeOf(ns).publicName(spec.name)}: declared twice`);
      names.add(spec.name);
    }
    resources.push(...more);
    if (ns !== defaultNamespace) namespaces.push(ns);
  }
  return { resources: parentsFirst(resources), namespaces };
}

/**
 * The resources with every parent before its children, the order in which
 * they can be put. A cycle is an error. A parent the file does not declare
 * must exist where the file is applied (`resources apply`); a server's own
 * config must declare it (checkTrees).
 */
function parentsFirst(specs: ResourceSpec[]): ResourceSpec[] {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  const placed = new Set<string>();
  const out: ResourceSpec[] = [];
  for (const spec of specs) {
    const chain: ResourceSpec[] = [];
    for (let s: ResourceSpec | undefined = spec; s !== undefined && !placed.has(s.name); ) {
      if (chain.includes(s)) throw new ConfigError(`${configKey(spec.name)}.parent: '${s.name}' is its own ancestor; a tree has no cycles`);
      chain.push(s);
      if (s.parent === undefined) break;
      s = byName.get(s.parent);
    }
    for (const s of chain.reverse()) {
      placed.add(s.name);
      out.push(s);
    }
  }
  return out;
}

/**
 * Refuses a server's config whose trees the engine could not take, naming
 * the resource: a parent the file does not declare, a parent of another
 * namespace that does not list the child's, a tree deeper than the engine
 * allows. The engine's own check decides (Engine.treeProblem).
 */
export function checkTrees(config: Config): void {
  const inTrees = new Set<string>();
  for (const spec of config.resources) {
    if (spec.parent === undefined && spec.perKey === undefined) continue;
    inTrees.add(spec.name);
    if (spec.parent !== undefined) inTrees.add(spec.parent);
  }
  if (inTrees.size === 0) return;
  const byName = new Map(config.resources.map((spec) => [spec.name, spec]));
  const scratch = new Engine({ clock: new SimulatedClock(0) });
  for (const spec of config.resources) {
    if (!inTrees.has(spec.name)) continue;
    const problem = scratch.treeProblem(spec);
    if (problem !== undefined) throw new ConfigError(`${configKey(spec.name)}: ${problem.message}`);
    const parent = spec.parent === undefined ? undefined : byName.get(spec.parent);
    if (parent !== undefined && namespaceOf(parent.name) !== namespaceOf(spec.name) && !(parent.childrenFrom ?? []).includes(namespaceOf(spec.name))) {
      throw new ConfigError(`${configKey(spec.name)}.parent: '${parent.name}' does not list namespace '${namespaceOf(spec.name)}' in its children_from`);
    }
    scratch.putResource(spec);
  }
}

/** Where an engine name is declared in the config file. */
function configKey(engineName: string): string {
  const i = engineName.indexOf("@");
  return i < 0 ? `resources.${engineName}` : `namespaces.${engineName.slice(0, i)}.resources.${engineName.slice(i + 1)}`;
}

/** The resources under `key`, with engine names of `namespace` (undefined: names as written). */
function resourcesFromConfig(key: string, value: unknown, namespace: string | undefined, pool: SpecPool): ResourceSpec[] {
  const scope = namespace === undefined ? undefined : scopeOf(namespace);
  const bodies = asObject(key, value ?? {});
  const specs: ResourceSpec[] = [];
  for (const name of Object.keys(bodies)) {
    try {
      const spec = resourceFromProto(resourceFromConfig(name, bodies[name], key));
      specs.push(pool.own(scope === undefined ? spec : scope.engineSpec(spec)));
    } catch (err) {
      if (err instanceof RpcError) throw new ConfigError(`${key}.${name}: ${err.message}`);
      throw err;
    }
  }
  return specs;
}

const resourceKeys = new Set([
  "limits",
  "concurrency",
  "lanes",
  "default_lane",
  "lease_ttl",
  "max_queue",
  "cooldown",
  "learn_limits",
  "parent",
  "share",
  "per_key",
  "per_key_idle",
  "children_from",
]);
const limitKeys = new Set(["dimension", "amount", "period", "burst", "unit"]);
const perKeyKeys = new Set(["limits", "concurrency", "share"]);

function resourceFromConfig(name: string, value: unknown, parent = "resources"): Resource {
  const key = `${parent}.${name}`;
  const r = asObject(key, value ?? {});
  for (const k of Object.keys(r)) {
    if (!resourceKeys.has(k)) throw new ConfigError(`${key}.${k}: unknown key; expected one of ${[...resourceKeys].join(", ")}`);
  }
  let perKey: Record<string, unknown> | undefined;
  if (r.per_key !== undefined) {
    perKey = asObject(`${key}.per_key`, r.per_key ?? {});
    for (const k of Object.keys(perKey)) {
      if (!perKeyKeys.has(k)) throw new ConfigError(`${key}.per_key.${k}: unknown key; expected one of ${[...perKeyKeys].join(", ")}`);
    }
  }
  const childrenFrom = r.children_from ?? [];
  if (!Array.isArray(childrenFrom) || childrenFrom.some((ns) => typeof ns !== "string")) {
    throw new ConfigError(`${key}.children_from: must be a list of namespace names`);
  }
  return create(ResourceSchema, {
    name,
    limits: limitsFromConfig(`${key}.limits`, r.limits),
    concurrency: r.concurrency === undefined ? 0 : asNumber(`${key}.concurrency`, r.concurrency),
    lanes: Object.entries(asObject(`${key}.lanes`, r.lanes ?? {})).map(([lane, weight]) =>
      create(LaneSchema, { name: lane, weight: asNumber(`${key}.lanes.${lane}`, weight) }),
    ),
    defaultLane: r.default_lane === undefined ? "" : String(r.default_lane),
    leaseTtl: r.lease_ttl === undefined ? undefined : durationFromMs(parseDuration(`${key}.lease_ttl`, r.lease_ttl)),
    maxQueue: r.max_queue === undefined ? 0 : asNumber(`${key}.max_queue`, r.max_queue),
    cooldown: r.cooldown === undefined ? undefined : durationFromMs(parseDuration(`${key}.cooldown`, r.cooldown)),
    ...(r.learn_limits !== undefined && { learnLimits: asBoolean(`${key}.learn_limits`, r.learn_limits) }),
    parent: r.parent === undefined ? "" : String(r.parent),
    share: r.share === undefined ? 0 : asNumber(`${key}.share`, r.share),
    ...(perKey !== undefined && {
      perKey: create(KeyedChildTemplateSchema, {
        limits: limitsFromConfig(`${key}.per_key.limits`, perKey.limits),
        concurrency: perKey.concurrency === undefined ? 0 : asNumber(`${key}.per_key.concurrency`, perKey.concurrency),
        share: perKey.share === undefined ? 0 : asNumber(`${key}.per_key.share`, perKey.share),
      }),
    }),
    ...(r.per_key_idle !== undefined && { perKeyIdle: durationFromMs(parseDuration(`${key}.per_key_idle`, r.per_key_idle)) }),
    childrenFrom: childrenFrom as string[],
  });
}

function limitsFromConfig(key: string, value: unknown): Limit[] {
  const limits = value === undefined ? [] : value;
  if (!Array.isArray(limits)) throw new ConfigError(`${key}: must be a list`);
  return limits.map((raw, i) => {
    const lkey = `${key}[${i}]`;
    const l = asObject(lkey, raw);
    for (const k of Object.keys(l)) {
      if (!limitKeys.has(k)) throw new ConfigError(`${lkey}.${k}: unknown key; expected one of ${[...limitKeys].join(", ")}`);
    }
    const dimension = l.dimension === "requests" ? Dimension.REQUESTS : l.dimension === "load" ? Dimension.LOAD : undefined;
    if (dimension === undefined) throw new ConfigError(`${lkey}.dimension: must be 'requests' or 'load'`);
    return create(LimitSchema, {
      dimension,
      amount: asNumber(`${lkey}.amount`, l.amount),
      period: durationFromMs(parseDuration(`${lkey}.period`, l.period)),
      burst: l.burst === undefined ? 0 : asNumber(`${lkey}.burst`, l.burst),
      unit: l.unit === undefined ? "" : String(l.unit),
    });
  });
}

function asBoolean(key: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new ConfigError(`${key}: must be true or false`);
  return value;
}

function asObject(key: string, value: unknown): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(`${key}: must be a mapping`);
  return value as Record<string, unknown>;
}

function asNumber(key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new ConfigError(`${key}: must be a number, got ${JSON.stringify(value)}`);
  return value;
}
