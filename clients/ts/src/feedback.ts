// Provider feedback: what an upstream provider said about a call (it refused
// it; what its rate-limit headers said), the parser of OpenAI's and
// Anthropic's headers, and the ProviderFeedback message a release or a
// report carries. The parsing rules are the same in every client.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ProviderFeedbackSchema, type DimensionFeedbackSchema, type ProviderFeedback as ProviderFeedbackMessage } from "@ratequeue/proto";
import { RateQueueError } from "./errors.js";

/** One dimension of a provider's rate-limit headers. Every field is optional. */
export interface DimensionFeedback {
  /** The provider's limit per `limitPeriodMs` (x-ratelimit-limit-*). */
  limit?: number;
  /** The period of `limit`, ms. Absent: 60 000 (OpenAI and Anthropic both give per-minute limits). */
  limitPeriodMs?: number;
  /** What the provider had left after counting this call (x-ratelimit-remaining-*). */
  remaining?: number;
  /** How long until the provider's budget is full again, ms (x-ratelimit-reset-*). */
  resetMs?: number;
}

/** What the provider said about one call. */
export interface ProviderFeedback {
  /** The provider refused the call: HTTP 429, or 503/529 (overloaded). The whole resource pauses, fleet-wide. */
  throttled?: boolean;
  /** How long the provider asked callers to wait, ms (retry-after-ms, retry-after). */
  retryAfterMs?: number;
  /** The provider's request budget. */
  requests?: DimensionFeedback;
  /** The provider's token budget: applies to the load limits. */
  load?: DimensionFeedback;
  /** The provider's input-token budget: applies to load limits with unit "input_tokens". */
  inputTokens?: DimensionFeedback;
  /** The provider's output-token budget: applies to load limits with unit "output_tokens". */
  outputTokens?: DimensionFeedback;
}

/**
 * Response headers: a `Headers`, a plain object (header name → value, in any
 * case; an array value counts by its first element), or `[name, value]` entries.
 */
export type HeadersInput = Headers | Record<string, string | readonly string[] | number | null | undefined> | Iterable<readonly [string, string]>;

/** The HTTP statuses that mean the provider refused the call for its rate or because it is overloaded. */
export const throttledStatuses: ReadonlySet<number> = new Set([429, 503, 529]);

const dimensionKeys = ["requests", "load", "inputTokens", "outputTokens"] as const;
type DimensionKey = (typeof dimensionKeys)[number];

/** A plain non-negative decimal: "60", "149984", "0.5". */
const decimalPattern = /^\d+(?:\.\d+)?$/;
/** A Go duration: "1s", "6m0s", "120ms", "1h2m3.5s", ".5s". Longer unit names first so "ms" is not read as "m". */
const goDurationPattern = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|h|m|s))+$/;
const goDurationPart = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)/g;
const goUnitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, "μs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** An RFC 3339 time: "2024-06-21T18:39:47Z", with optional fractional seconds and an offset. */
const rfc3339Pattern = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

function decimal(value: string | undefined): number | undefined {
  if (value === undefined || !decimalPattern.test(value)) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** A Go-style duration in ms ("6m0s" → 360 000; "0" → 0), or undefined. */
function goDuration(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === "0") return 0;
  if (!goDurationPattern.test(value)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(goDurationPart)) ms += Number(amount) * goUnitMs[unit!]!;
  return Number.isFinite(ms) ? ms : undefined;
}

/** The ms from `now` until an RFC 3339 time, at least 0, or undefined. */
function untilRfc3339(value: string | undefined, now: number): number | undefined {
  if (value === undefined || !rfc3339Pattern.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** retry-after: seconds (integer or decimal) or an HTTP-date, in ms from `now` (at least 0). */
function retryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const seconds = decimal(value);
  if (seconds !== undefined) return seconds * 1000;
  // An HTTP-date starts with its weekday ("Wed, 21 Oct 2015 07:28:00 GMT"); Date.parse alone would read almost anything.
  if (!/^[A-Za-z]{3,9},? /.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Reads any HeadersInput into a lookup by lower-case name (first value wins for a repeated name). */
function headerLookup(headers: HeadersInput): (name: string) => string | undefined {
  // A Headers of any fetch implementation (a Map has get but no append, and keeps its keys' case).
  if (typeof (headers as Headers).get === "function" && typeof (headers as Headers).append === "function") {
    const h = headers as Headers;
    return (name) => h.get(name)?.trim() ?? undefined;
  }
  const map = new Map<string, string>();
  const put = (name: string, value: unknown) => {
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first !== "string" && typeof first !== "number") return;
    const key = name.toLowerCase();
    if (!map.has(key)) map.set(key, String(first).trim());
  };
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    for (const entry of headers as Iterable<readonly [string, string]>) {
      if (Array.isArray(entry) && typeof entry[0] === "string") put(entry[0], entry[1]);
    }
  } else {
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) put(name, value);
  }
  return (name) => map.get(name);
}

function dimension(limit: number | undefined, remaining: number | undefined, resetMs: number | undefined): DimensionFeedback | undefined {
  if (limit === undefined && remaining === undefined && resetMs === undefined) return undefined;
  const d: DimensionFeedback = {};
  if (limit !== undefined) d.limit = limit;
  if (remaining !== undefined) d.remaining = remaining;
  if (resetMs !== undefined) d.resetMs = resetMs;
  return d;
}

/**
 * Reads a provider's answer into feedback: `status` 429, 503 or 529 is
 * throttled; `retry-after-ms` (ms) wins over `retry-after` (seconds or an
 * HTTP-date); OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
 * (resets as Go durations, `6m0s`) give `requests` and `load`; Anthropic's
 * `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
 * (resets as RFC 3339 times) give `requests`, `load`, `inputTokens` and
 * `outputTokens`. Names are case-insensitive; a value that does not parse is
 * ignored, never thrown. Both providers' limits are per minute, so
 * `limitPeriodMs` is left unset. `now` (epoch ms) is what dates are counted from.
 */
export function parseRateLimitHeaders(headers: HeadersInput, status?: number, now: number = Date.now()): ProviderFeedback {
  const get = headerLookup(headers);
  const feedback: ProviderFeedback = {};
  if (status !== undefined && throttledStatuses.has(status)) feedback.throttled = true;
  const retryMs = decimal(get("retry-after-ms")) ?? retryAfter(get("retry-after"), now);
  if (retryMs !== undefined) feedback.retryAfterMs = retryMs;

  const set = (key: DimensionKey, d: DimensionFeedback | undefined) => {
    if (d !== undefined) feedback[key] = { ...feedback[key], ...d };
  };
  for (const [suffix, key] of [["requests", "requests"], ["tokens", "load"]] as const) {
    set(key, dimension(decimal(get(`x-ratelimit-limit-${suffix}`)), decimal(get(`x-ratelimit-remaining-${suffix}`)), goDuration(get(`x-ratelimit-reset-${suffix}`))));
  }
  for (const [infix, key] of [["requests", "requests"], ["tokens", "load"], ["input-tokens", "inputTokens"], ["output-tokens", "outputTokens"]] as const) {
    const name = (field: string) => get(`anthropic-ratelimit-${infix}-${field}`);
    set(key, dimension(decimal(name("limit")), decimal(name("remaining")), untilRfc3339(name("reset"), now)));
  }
  return feedback;
}

/**
 * Merges `more` into `into` (changed in place and returned): throttled stays
 * true once true; every other value given in `more` replaces the earlier one.
 */
export function mergeFeedback(into: ProviderFeedback, more: ProviderFeedback): ProviderFeedback {
  if (more.throttled) into.throttled = true;
  if (more.retryAfterMs !== undefined) into.retryAfterMs = more.retryAfterMs;
  for (const key of dimensionKeys) {
    const d = more[key];
    if (d === undefined) continue;
    const merged: DimensionFeedback = { ...into[key] };
    for (const field of ["limit", "limitPeriodMs", "remaining", "resetMs"] as const) {
      if (d[field] !== undefined) merged[field] = d[field];
    }
    into[key] = merged;
  }
  return into;
}

/** True when the feedback says nothing at all. */
export function isEmptyFeedback(f: ProviderFeedback): boolean {
  return !f.throttled && f.retryAfterMs === undefined && dimensionKeys.every((key) => f[key] === undefined);
}

const invalid = (field: string, rule: string) => new RateQueueError("INVALID_ARGUMENT", `${field}: ${rule}`);

function checkNumber(field: string, value: unknown, positive = false): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (positive && value === 0)) {
    throw invalid(field, `must be a finite number ${positive ? "> 0" : ">= 0"}, got ${String(value)}`);
  }
}

/**
 * Refuses feedback that cannot be encoded (the server checks the rest), in
 * the server's "field: rule" form: `feedback.retryAfterMs: must be ...`.
 */
export function checkFeedback(f: ProviderFeedback, field = "feedback"): void {
  if (typeof f !== "object" || f === null) throw invalid(field, "must be an object");
  if (f.throttled !== undefined && typeof f.throttled !== "boolean") throw invalid(`${field}.throttled`, `must be a boolean, got ${String(f.throttled)}`);
  checkNumber(`${field}.retryAfterMs`, f.retryAfterMs);
  for (const key of dimensionKeys) {
    const d = f[key];
    if (d === undefined) continue;
    if (typeof d !== "object" || d === null) throw invalid(`${field}.${key}`, "must be an object");
    checkNumber(`${field}.${key}.limit`, d.limit);
    checkNumber(`${field}.${key}.limitPeriodMs`, d.limitPeriodMs, true);
    checkNumber(`${field}.${key}.remaining`, d.remaining);
    checkNumber(`${field}.${key}.resetMs`, d.resetMs);
  }
}

/** A Duration of ms, to the nanosecond. */
function duration(ms: number | undefined): { seconds: bigint; nanos: number } | undefined {
  if (ms === undefined) return undefined;
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6)) };
}

function dimensionMessage(d: DimensionFeedback | undefined): MessageInitShape<typeof DimensionFeedbackSchema> | undefined {
  if (d === undefined) return undefined;
  return { limit: d.limit, limitPeriod: duration(d.limitPeriodMs), remaining: d.remaining, reset: duration(d.resetMs) };
}

/** The ProviderFeedback message of checked feedback. */
export function feedbackToMessage(f: ProviderFeedback): ProviderFeedbackMessage {
  return create(ProviderFeedbackSchema, {
    throttled: f.throttled ?? false,
    retryAfter: duration(f.retryAfterMs),
    requests: dimensionMessage(f.requests),
    load: dimensionMessage(f.load),
    inputTokens: dimensionMessage(f.inputTokens),
    outputTokens: dimensionMessage(f.outputTokens),
  });
}

/** A ReportResponse's paused_until as a Date, or undefined when the resource is not paused. */
export function pausedUntilDate(t: Timestamp | undefined): Date | undefined {
  return t === undefined ? undefined : new Date(timestampMs(t));
}
