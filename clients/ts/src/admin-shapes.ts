// The admin client's shapes: resources as the config file writes them,
// statistics and API keys as plain objects, and their conversion to and
// from the protobuf messages. Fields are checked only as far as needed to
// encode them; the server checks the ranges and names the field it refuses.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampDate, type Duration, type DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  ApiKeyRole,
  Dimension,
  LimitSchema,
  type ApiKey as ApiKeyMessage,
  type Limit as LimitMessage,
  type LimitStats as LimitStatsMessage,
  type Resource as ResourceMessage,
  type ResourceSchema,
  type ResourceStats as ResourceStatsMessage,
} from "@ratequeue/proto";
import { RateQueueError } from "./errors.js";

/**
 * A duration: a string of a number and a unit, `"500ms"`, `"60s"`,
 * `"1.5m"`, `"1h"`, `"1d"` (as in the config file), or a number of
 * milliseconds. Durations the client returns are strings: whole seconds as
 * `"60s"` (also for minutes and hours: `"3600s"`), anything else in
 * milliseconds (`"1500ms"`).
 */
export type DurationInput = string | number;

/** One rate limit: at most `burst + t·amount/period` units in any interval of length t. */
export interface LimitConfig {
  /** `"requests"`: every acquire counts 1; `"load"`: every acquire counts its load. */
  dimension: "requests" | "load";
  /** Units per period; must be positive. */
  amount: number;
  /** The period, 1 ms to 366 days. */
  period: DurationInput;
  /** The most units that may be spent at once. Absent or 0: `amount`. */
  burst?: number;
  /**
   * What a load limit counts, for provider feedback: `"tokens"` (what absent
   * means), `"input_tokens"` or `"output_tokens"` (Anthropic's separate
   * budgets), or another label. Absent on requests limits.
   */
  unit?: string;
}

/**
 * A resource in the config file's shape, with the config file's keys in
 * camelCase. Only `name` is required; what is absent takes the server's
 * default.
 */
export interface ResourceConfig {
  /** 1 to 128 letters, digits, `.`, `_`, `-`, `:` or `/`, starting with a letter or digit. */
  name: string;
  /** Rate limits; an acquire is granted only when all of them allow it. At most 16. */
  limits?: LimitConfig[];
  /** The most leases held at once. Absent or 0: no cap. */
  concurrency?: number;
  /**
   * Lane name → weight (1 to 1000), in order: `{ "user-facing": 3, batch: 1 }`.
   * Absent: one lane named "default". (JavaScript puts integer-like keys such
   * as "1" first; name the default lane with `defaultLane` if you use them.)
   */
  lanes?: Record<string, number>;
  /** The lane of acquires that name none. Absent: the first lane. */
  defaultLane?: string;
  /** A lease not heartbeated for this long expires, 100 ms to 24 h. Absent: 30 s. */
  leaseTtl?: DurationInput;
  /** The most waiting requests. Absent or 0: 10 000. */
  maxQueue?: number;
  /** The first pause after the provider refused a call without saying how long to wait; doubles on further refusals. Absent: 1 s. */
  cooldown?: DurationInput;
  /** Whether a provider limit lower than a configured one becomes the limit's effective amount. Absent: true. */
  learnLimits?: boolean;
  /**
   * The resource this one is a child of: an acquire here is granted only
   * when this resource and every ancestor allow it at the same moment, and
   * counts at every level. The parent must exist first (`NOT_FOUND`
   * otherwise); a tree is at most 4 levels deep. A parent in another
   * namespace is `"NAMESPACE@NAME"` and must list this namespace in its
   * `childrenFrom`. `"NAME/KEY"` with parent `NAME` overrides NAME's
   * `perKey` template for that key. Absent: a root.
   */
  parent?: string;
  /** This child's share of its parent's grants while several children wait, relative to its siblings, 1 to 1000. Absent or 0: 1. */
  share?: number;
  /**
   * The template of keyed children: an acquire with a `key` is charged to
   * the child `"NAME/KEY"`, made from this template on first use (with this
   * resource's lanes, lease TTL, queue size and cooldown). Absent: acquires
   * with a key fail with `INVALID_ARGUMENT`.
   */
  perKey?: KeyedChildConfig;
  /** A keyed child back at full budget, with no leases and no waiters, is dropped after this long, 100 ms to 7 days. Absent: 10 min. */
  perKeyIdle?: DurationInput;
  /** Namespaces whose admins may declare children of this resource in their own namespace. */
  childrenFrom?: string[];
}

/** What each keyed child of a resource gets: its own quota inside the resource's limits. */
export interface KeyedChildConfig {
  /** Each keyed child's own rate limits. At most 16. */
  limits?: LimitConfig[];
  /** The most leases each keyed child holds at once. Absent or 0: no cap. */
  concurrency?: number;
  /** Each keyed child's share of the resource's grants, 1 to 1000. Absent or 0: 1. */
  share?: number;
}

/** A keyed child template as stored: every default filled in. */
export interface StoredKeyedChild extends KeyedChildConfig {
  limits: StoredLimit[];
  concurrency: number;
  share: number;
}

/** A limit as stored: the burst filled in, the period a canonical string. */
export interface StoredLimit extends LimitConfig {
  period: string;
  burst: number;
}

/**
 * A resource as the server stores it: every default filled in, durations as
 * canonical strings. Passing it back to putResource stores the same resource.
 * As in the config file, the tree's fields are there only where they say
 * something: `parent` and `share` on a child, `perKey` and `perKeyIdle` with
 * a template, `childrenFrom` when it names a namespace, `keyed` on a keyed
 * child.
 */
export interface StoredResource extends ResourceConfig {
  limits: StoredLimit[];
  concurrency: number;
  lanes: Record<string, number>;
  defaultLane: string;
  leaseTtl: string;
  maxQueue: number;
  cooldown: string;
  learnLimits: boolean;
  perKey?: StoredKeyedChild;
  perKeyIdle?: string;
  /** Output only: true on a child the server made from its parent's `perKey` template. putResource ignores it. */
  keyed?: boolean;
}

/** One lane's live state and counters. */
export interface LaneStats {
  name: string;
  weight: number;
  /** Requests waiting in the lane now. */
  queueDepth: number;
  /** Grants made to the lane since the resource was created. */
  grants: number;
  /** Load granted to the lane since the resource was created. */
  loadGranted: number;
}

/** One limit's current use. */
export interface LimitStats {
  limit: StoredLimit;
  /** Units that could be granted at once now. */
  available: number;
  /** The share of the burst in use now, 0 to 1. */
  utilisation: number;
  /** Units charged over the period that ends now, refunds taken off (what ratequeue_limit_utilisation_ratio divides by the amount). */
  usedLastPeriod: number;
  /** The amount per period the provider's feedback taught, when lower than the configured one; the limit admits at this rate. */
  learnedAmount?: number;
}

/** A resource's live state and counters; waits of recent grants in milliseconds. */
export interface ResourceStats {
  name: string;
  leasesInFlight: number;
  /** In the resource's lane order. */
  lanes: LaneStats[];
  /** In the resource's limit order. */
  limits: LimitStats[];
  /** Acquires granted. */
  grants: number;
  /** Acquires refused at once: queue full, or a load that can never fit. */
  rejections: number;
  /** Acquires that reached their deadline while waiting. */
  timeouts: number;
  /** Acquires withdrawn while waiting. */
  cancellations: number;
  /** Leases that expired unheartbeated. */
  expirations: number;
  waitP50Ms: number;
  waitP90Ms: number;
  waitP99Ms: number;
  waitMaxMs: number;
  /** Until when the resource grants nothing after the provider refused a call; absent when it is not paused. */
  pausedUntil?: Date;
  /** Calls the provider refused (throttled feedback from releases and reports). */
  throttles: number;
  /**
   * The direct children with the most demand (waiting, then in flight, then
   * granted), at most getResourceStats' `childrenLimit` of them (default
   * 20). A tenant admin sees only its own namespace's children.
   */
  children: ChildStats[];
  /** How many direct children the resource has now, keyed ones included. */
  childrenCount: number;
  /** The parent's state; absent on a root. */
  parent?: ParentStats;
}

/** One child's demand and grants, its descendants' included. */
export interface ChildStats {
  name: string;
  /** Its share of the parent's grants. */
  share: number;
  /** True for a child made from the parent's `perKey` template. */
  keyed: boolean;
  leasesInFlight: number;
  queueDepth: number;
  /** Grants since the child was created. */
  grants: number;
  /** Load granted since the child was created. */
  loadGranted: number;
}

/** A resource's parent, as numbers. */
export interface ParentStats {
  /** The parent's name (`"NAMESPACE@NAME"` when in another namespace). */
  name: string;
  /** Leases held now under the parent, every child's included. */
  leasesInFlight: number;
  /** Requests waiting now under the parent, every child's included. */
  queueDepth: number;
  /** In the parent's limit order. */
  limits: LimitStats[];
}

/** An API key's role by name. */
export type ApiKeyRoleName = "worker" | "admin" | "root";

/** An API key, without its secret. */
export interface ApiKey {
  /** The key's public id (the part after "rq_"); revoke by it. */
  id: string;
  /** The namespace the key acts in. */
  namespace: string;
  role: ApiKeyRoleName;
  description: string;
  createTime: Date;
}

export const roleValues: Record<ApiKeyRoleName, ApiKeyRole> = { worker: ApiKeyRole.WORKER, admin: ApiKeyRole.ADMIN, root: ApiKeyRole.ROOT };

/** The name of an ApiKeyRole value (for keys from the raw admin calls). */
export function roleName(role: ApiKeyRole): ApiKeyRoleName | "unspecified" {
  return role === ApiKeyRole.WORKER ? "worker" : role === ApiKeyRole.ADMIN ? "admin" : role === ApiKeyRole.ROOT ? "root" : "unspecified";
}

const invalid = (field: string, rule: string) => new RateQueueError("INVALID_ARGUMENT", `${field}: ${rule}`);
const shown = (value: unknown) => (typeof value === "string" ? `'${value}'` : typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value));

// `keyed` is output only: accepted so that a stored resource can be put back, and not sent.
const resourceKeys = [
  "name",
  "limits",
  "concurrency",
  "lanes",
  "defaultLane",
  "leaseTtl",
  "maxQueue",
  "cooldown",
  "learnLimits",
  "parent",
  "share",
  "perKey",
  "perKeyIdle",
  "childrenFrom",
  "keyed",
] as const;
const keyedChildKeys = ["limits", "concurrency", "share"] as const;
const limitKeys = ["dimension", "amount", "period", "burst", "unit"] as const;
const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Beyond this many ms a duration no longer fits its message exactly (the server allows at most 366 days). */
const maxDurationMs = 1e15;

function record(field: string, value: unknown, keys?: readonly string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(field, "must be an object");
  const r = value as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    // Catches the config file's snake_case keys (lease_ttl) pasted in as they are.
    if (keys !== undefined && !keys.includes(key)) throw invalid(`${field}.${key}`, `unknown key; expected one of ${keys.join(", ")}`);
  }
  return r;
}

function number(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw invalid(field, `must be a finite number, got ${shown(value)}`);
  return value;
}

function flag(field: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw invalid(field, `must be true or false, got ${shown(value)}`);
  return value;
}

function text(field: string, value: unknown): string {
  if (typeof value !== "string") throw invalid(field, `must be a string, got ${shown(value)}`);
  return value;
}

/** An unsigned 32-bit integer, which is all its message field can hold; the server checks the range. */
export function count(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw invalid(field, `must be an integer of at least 0, got ${shown(value)}`);
  }
  return value;
}

/** Reads a duration ("60s", "1.5m", or a number of ms) to ms. */
export function parseDuration(field: string, value: unknown): number {
  let ms: number | undefined;
  if (typeof value === "number" && Number.isFinite(value)) ms = value;
  const match = typeof value === "string" ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value) : null;
  if (match !== null) ms = Number(match[1]) * units[match[2]!]!;
  if (ms === undefined) throw invalid(field, `${shown(value)} is not a duration; write e.g. "500ms", "60s", "1.5m", "1h", or a number of milliseconds`);
  if (Math.abs(ms) > maxDurationMs) throw invalid(field, `${shown(value)} is out of range`);
  return ms;
}

/** The canonical string of a duration in ms: whole seconds as "60s", else "1500ms". */
export function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function durationOf(ms: number): MessageInitShape<typeof DurationSchema> {
  const seconds = Math.trunc(ms / 1000);
  return { seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

function limitsToMessage(field: string, value: unknown): MessageInitShape<typeof LimitSchema>[] {
  const limits = value ?? [];
  if (!Array.isArray(limits)) throw invalid(field, "must be an array");
  return limits.map((raw, i) => {
    const at = `${field}[${i}]`;
    const l = record(at, raw, limitKeys);
    const dimension = l.dimension === "requests" ? Dimension.REQUESTS : l.dimension === "load" ? Dimension.LOAD : undefined;
    if (dimension === undefined) throw invalid(`${at}.dimension`, `must be 'requests' or 'load', got ${shown(l.dimension)}`);
    if (l.period === undefined) throw invalid(`${at}.period`, "is required");
    return {
      dimension,
      amount: number(`${at}.amount`, l.amount),
      period: durationOf(parseDuration(`${at}.period`, l.period)),
      burst: l.burst === undefined ? 0 : number(`${at}.burst`, l.burst),
      unit: l.unit === undefined ? "" : text(`${at}.unit`, l.unit),
    };
  });
}

/** The PutResource message of a config-shaped resource; refuses what it cannot encode. */
export function resourceToMessage(resource: ResourceConfig): MessageInitShape<typeof ResourceSchema> {
  const r = record("resource", resource, resourceKeys);
  const perKey = r.perKey === undefined ? undefined : record("resource.perKey", r.perKey, keyedChildKeys);
  const childrenFrom = r.childrenFrom ?? [];
  if (!Array.isArray(childrenFrom)) throw invalid("resource.childrenFrom", "must be an array");
  return {
    name: text("resource.name", r.name),
    limits: limitsToMessage("resource.limits", r.limits),
    concurrency: r.concurrency === undefined ? 0 : count("resource.concurrency", r.concurrency),
    lanes: Object.entries(record("resource.lanes", r.lanes ?? {})).map(([name, weight]) => ({ name, weight: count(`resource.lanes.${name}`, weight) })),
    defaultLane: r.defaultLane === undefined ? "" : text("resource.defaultLane", r.defaultLane),
    leaseTtl: r.leaseTtl === undefined ? undefined : durationOf(parseDuration("resource.leaseTtl", r.leaseTtl)),
    maxQueue: r.maxQueue === undefined ? 0 : count("resource.maxQueue", r.maxQueue),
    cooldown: r.cooldown === undefined ? undefined : durationOf(parseDuration("resource.cooldown", r.cooldown)),
    learnLimits: r.learnLimits === undefined ? undefined : flag("resource.learnLimits", r.learnLimits),
    parent: r.parent === undefined ? "" : text("resource.parent", r.parent),
    share: r.share === undefined ? 0 : count("resource.share", r.share),
    perKey: perKey && {
      limits: limitsToMessage("resource.perKey.limits", perKey.limits),
      concurrency: perKey.concurrency === undefined ? 0 : count("resource.perKey.concurrency", perKey.concurrency),
      share: perKey.share === undefined ? 0 : count("resource.perKey.share", perKey.share),
    },
    perKeyIdle: r.perKeyIdle === undefined ? undefined : durationOf(parseDuration("resource.perKeyIdle", r.perKeyIdle)),
    childrenFrom: childrenFrom.map((ns, i) => text(`resource.childrenFrom[${i}]`, ns)),
  };
}

const formatted = (d: Duration | undefined, unset: number) => formatDuration(d === undefined ? unset : durationMs(d));

function limitFromMessage(l: LimitMessage): StoredLimit {
  return {
    dimension: l.dimension === Dimension.LOAD ? "load" : "requests",
    amount: l.amount,
    period: formatted(l.period, 0),
    burst: l.burst,
    ...(l.unit !== "" && { unit: l.unit }),
  };
}

/** A stored Resource message in the config file's shape. */
export function resourceFromMessage(m: ResourceMessage): StoredResource {
  const perKey = m.perKey;
  return {
    name: m.name,
    limits: m.limits.map(limitFromMessage),
    concurrency: m.concurrency,
    lanes: Object.fromEntries(m.lanes.map((l) => [l.name, l.weight])),
    defaultLane: m.defaultLane,
    leaseTtl: formatted(m.leaseTtl, 30_000), // the server always sets it; unset means 30 s
    maxQueue: m.maxQueue,
    cooldown: formatted(m.cooldown, 1000), // unset means 1 s
    learnLimits: m.learnLimits ?? true,
    ...(m.parent !== "" && { parent: m.parent, share: m.share || 1 }), // a share of 0 means 1
    ...(perKey !== undefined && {
      perKey: { limits: perKey.limits.map(limitFromMessage), concurrency: perKey.concurrency, share: perKey.share || 1 },
      perKeyIdle: formatted(m.perKeyIdle, 600_000), // unset means 10 min
    }),
    ...(m.childrenFrom.length > 0 && { childrenFrom: [...m.childrenFrom] }),
    ...(m.keyed && { keyed: true }),
  };
}

function limitStatsFromMessage(l: LimitStatsMessage): LimitStats {
  return {
    limit: limitFromMessage(l.limit ?? create(LimitSchema)), // the server always sets it
    available: l.available,
    utilisation: l.utilisation,
    usedLastPeriod: l.usedLastPeriod,
    ...(l.learnedAmount !== undefined && { learnedAmount: l.learnedAmount }),
  };
}

/** A ResourceStats message as plain numbers. */
export function statsFromMessage(m: ResourceStatsMessage): ResourceStats {
  const ms = (d: Duration | undefined) => (d === undefined ? 0 : durationMs(d));
  return {
    name: m.name,
    leasesInFlight: m.leasesInFlight,
    lanes: m.lanes.map((l) => ({ name: l.name, weight: l.weight, queueDepth: l.queueDepth, grants: Number(l.grants), loadGranted: l.loadGranted })),
    limits: m.limits.map(limitStatsFromMessage),
    grants: Number(m.grants),
    rejections: Number(m.rejections),
    timeouts: Number(m.timeouts),
    cancellations: Number(m.cancellations),
    expirations: Number(m.expirations),
    waitP50Ms: ms(m.waitP50),
    waitP90Ms: ms(m.waitP90),
    waitP99Ms: ms(m.waitP99),
    waitMaxMs: ms(m.waitMax),
    ...(m.pausedUntil !== undefined && { pausedUntil: timestampDate(m.pausedUntil) }),
    throttles: Number(m.throttles),
    children: m.children.map((c) => ({
      name: c.name,
      share: c.share,
      keyed: c.keyed,
      leasesInFlight: c.leasesInFlight,
      queueDepth: c.queueDepth,
      grants: Number(c.grants),
      loadGranted: c.loadGranted,
    })),
    childrenCount: m.childrenCount,
    ...(m.parent !== undefined && {
      parent: { name: m.parent.name, leasesInFlight: m.parent.leasesInFlight, queueDepth: m.parent.queueDepth, limits: m.parent.limits.map(limitStatsFromMessage) },
    }),
  };
}

/** An ApiKey message as a plain object. */
export function apiKeyFromMessage(m: ApiKeyMessage): ApiKey {
  return {
    id: m.id,
    namespace: m.namespace,
    role: roleName(m.role) as ApiKeyRoleName, // the server gives every key a role
    description: m.description,
    createTime: m.createTime === undefined ? new Date(0) : timestampDate(m.createTime),
  };
}
