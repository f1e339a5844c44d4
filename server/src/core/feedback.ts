// What the provider said about a call, applied to its resource: a throttle
// pauses the whole resource, the rate-limit headers lower its budget and may
// teach it a lower limit. Feedback only ever delays grants: every change here
// raises a limit's TAT or slows its rate, so the configured bound holds.
import type { Gcra } from "./gcra.js";
import { PauseState, type Resource } from "./resource.js";
import type { DimensionFeedback, FeedbackEvent, Millis, ProviderFeedback } from "./types.js";

/** The default first pause of a throttle without retry-after. */
export const DEFAULT_COOLDOWN_MS = 1000;
/** The longest pause doubling reaches. */
export const MAX_BACKOFF_MS = 60_000;
/** The period of a provider's limit when the feedback names none: OpenAI's and Anthropic's are per minute. */
export const DEFAULT_LIMIT_PERIOD_MS = 60_000;

/** Where the resource's grant counters stood just after a lease's grant: what was granted after it is counted from here. */
export interface GrantMark {
  grants: number;
  load: number;
}

/** The grant mark of a call made now (nothing granted after it). */
export function markNow(r: Resource): GrantMark {
  return { grants: r.grants, load: r.loadGrantedTotal };
}

/**
 * Applies one call's feedback to its resource at `now`. `grantedAt` and
 * `mark` say when the call was granted and where the counters stood then
 * (a report outside a lease passes now). Returns what changed, for logs.
 */
export function applyFeedback(r: Resource, fb: ProviderFeedback, grantedAt: Millis, mark: GrantMark, now: Millis): FeedbackEvent[] {
  const events: FeedbackEvent[] = [];
  if (fb.throttled) {
    const paused = throttle(r, fb.retryAfterMs, grantedAt, now);
    if (paused !== undefined) events.push(paused);
  } else if (r.pause !== undefined && grantedAt > r.pause.startedAt) {
    // A call granted after the latest pause went through: the provider takes calls again.
    r.pause.backoffMs = 0;
  }
  const learn = r.spec.learnLimits ?? true;
  for (const [dim, limits] of matchingLimits(r, fb)) {
    for (const i of limits) {
      const g = r.ownLimits()[i] as Gcra;
      if (dim.limit !== undefined && learn) {
        const e = learnLimit(r, g, i, dim, now);
        if (e !== undefined) events.push(e);
      }
      if (dim.remaining !== undefined) {
        // Calls granted after this one are in flight: the provider has not counted them yet.
        const since = g.spec.dimension === "requests" ? r.grants - mark.grants : r.loadGrantedTotal - mark.load;
        g.limitAvailable(dim.remaining - since, now);
      }
    }
  }
  return events;
}

/**
 * Pauses the resource: until now + retry-after, or for its backoff, which
 * starts at the cooldown and doubles when a call granted after the latest
 * pause began is throttled again while that pause is fresh (before its end
 * plus its length). The latest end wins; an earlier one changes nothing.
 */
function throttle(r: Resource, retryAfterMs: Millis | undefined, grantedAt: Millis, now: Millis): FeedbackEvent | undefined {
  const p = (r.pause ??= new PauseState());
  p.throttles++;
  let pauseMs: Millis;
  if (retryAfterMs !== undefined) pauseMs = retryAfterMs;
  else {
    const cooldown = r.spec.cooldownMs ?? DEFAULT_COOLDOWN_MS;
    // Still fresh: during the pause or within one more of its length after it.
    const fresh = now < r.pausedUntil + p.backoffMs;
    if (p.backoffMs === 0 || !fresh) p.backoffMs = cooldown;
    // A call granted before the pause began was already in flight: its refusal is the same news.
    else if (grantedAt > p.startedAt) p.backoffMs = Math.min(2 * p.backoffMs, MAX_BACKOFF_MS);
    pauseMs = p.backoffMs;
  }
  const until = now + pauseMs;
  if (until <= r.pausedUntil) return undefined;
  r.pausedUntil = until;
  p.startedAt = now;
  for (const g of r.ownLimits()) g.holdUntil(until);
  return { kind: "paused", resource: r.name, at: now, until, pauseMs, retryAfter: retryAfterMs !== undefined };
}

/** Makes the provider's limit (converted to g's period) g's effective amount when lower than the configured one. */
function learnLimit(r: Resource, g: Gcra, i: number, dim: DimensionFeedback, now: Millis): FeedbackEvent | undefined {
  const amount = ((dim.limit as number) * g.spec.periodMs) / (dim.limitPeriodMs ?? DEFAULT_LIMIT_PERIOD_MS);
  const learned = amount < g.spec.amount ? amount : undefined;
  if (learned === g.learned) return undefined;
  // Nothing is granted before a pause ends: the debt at its end is what carries over.
  g.learn(learned, Math.max(now, r.pausedUntil));
  return { kind: "learned", resource: r.name, limit: i, configured: g.spec.amount, learned, periodMs: g.spec.periodMs };
}

const TOKEN_UNITS = new Set(["", "tokens"]);

/**
 * Each dimension of the feedback with the indexes of the limits it applies
 * to: requests to the request limits; load to the load limits counting
 * tokens; input and output tokens to the load limits of that unit, or to
 * the only load limit when no limit declares either unit and load is absent.
 */
function matchingLimits(r: Resource, fb: ProviderFeedback): [DimensionFeedback, number[]][] {
  const out: [DimensionFeedback, number[]][] = [];
  const specs = r.spec.limits;
  const indexes = (keep: (unit: string, dimension: string) => boolean) => specs.flatMap((l, i) => (keep(l.unit ?? "", l.dimension) ? [i] : []));
  if (fb.requests !== undefined) out.push([fb.requests, indexes((_, d) => d === "requests")]);
  if (fb.load !== undefined) out.push([fb.load, indexes((u, d) => d === "load" && TOKEN_UNITS.has(u))]);
  const loadLimits = indexes((_, d) => d === "load");
  const split = specs.some((l) => l.unit === "input_tokens" || l.unit === "output_tokens");
  for (const [dim, unit] of [
    [fb.inputTokens, "input_tokens"],
    [fb.outputTokens, "output_tokens"],
  ] as const) {
    if (dim === undefined) continue;
    if (split) out.push([dim, indexes((u, d) => d === "load" && u === unit)]);
    else if (fb.load === undefined && loadLimits.length === 1) out.push([dim, loadLimits]);
  }
  return out;
}
