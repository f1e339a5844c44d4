// The engine's vocabulary. Nothing here knows about protobuf, gRPC, Redis or
// Node timers: the RPC layer translates to and from these plain types.

/** Milliseconds on the engine's clock (the real clock: Unix epoch ms). */
export type Millis = number;

/** A timer handle returned by {@link Clock.setTimer}. */
export type TimerId = number;

/**
 * Time, injected. The engine never reads Date.now() nor calls setTimeout; it
 * asks its clock. Production uses the system clock; tests use a simulated
 * clock they advance by hand, so every timing test is exact.
 */
export interface Clock {
  /** The current time in ms. Never goes backwards. */
  now(): Millis;
  /** Calls fn once at or after `at`. */
  setTimer(at: Millis, fn: () => void): TimerId;
  /** Cancels a timer; unknown or fired ids are ignored. */
  clearTimer(id: TimerId): void;
}

/** What a rate limit counts: 1 per acquire, or each acquire's load. */
export type Dimension = "requests" | "load";

/** At most burst + t * amount / periodMs units in any interval of t ms. */
export interface LimitSpec {
  dimension: Dimension;
  amount: number;
  periodMs: Millis;
  burst: number;
  /** What a load limit counts, for provider feedback: "" (tokens), "input_tokens", "output_tokens" or a label; undefined means "". */
  unit?: string;
}

export interface LaneSpec {
  name: string;
  weight: number;
}

/**
 * A resource with every default filled in (the edge validates and fills
 * defaults; the engine assumes a valid spec).
 */
export interface ResourceSpec {
  name: string;
  limits: LimitSpec[];
  /** The most leases held at once; 0 means no cap. */
  concurrency: number;
  /** At least one lane. */
  lanes: LaneSpec[];
  /** One of lanes' names. */
  defaultLane: string;
  leaseTtlMs: Millis;
  maxQueue: number;
  /** The first pause after a throttle that names no retry-after; undefined means 1 s. */
  cooldownMs?: Millis;
  /** Whether a provider limit lower than a configured one becomes its effective amount; undefined means true. */
  learnLimits?: boolean;
  /** The parent resource (an engine name); undefined for a root. Every grant here must fit every ancestor too. */
  parent?: string;
  /** The share of the parent's grants while several children wait; undefined means 1. */
  share?: number;
  /** The template of keyed children ("NAME/KEY"), made on first use by an acquire with a key. */
  perKey?: KeyedChildTemplate;
  /** How long a keyed child at full budget with no leases and no waiters lives on; undefined means 10 min. */
  perKeyIdleMs?: Millis;
  /** Namespaces whose admins may declare children of this resource (the engine only keeps it). */
  childrenFrom?: string[];
  /** Set by the engine on a child it made from its parent's template. */
  keyed?: boolean;
}

/** What each keyed child of a resource gets; lanes, lease TTL, queue size and cooldown come from the parent. */
export interface KeyedChildTemplate {
  limits: LimitSpec[];
  /** 0 means no cap. */
  concurrency: number;
  share: number;
}

/** The most levels of a resource tree (a root and three levels of children). */
export const MAX_TREE_DEPTH = 4;

/** How long an idle keyed child lives when its parent names no per_key_idle. */
export const DEFAULT_PER_KEY_IDLE_MS = 600_000;

/** What a provider's rate-limit headers said about one dimension of its budget. */
export interface DimensionFeedback {
  /** The provider's limit per limitPeriodMs. */
  limit?: number;
  /** The period of `limit`; undefined means 60 s. */
  limitPeriodMs?: Millis;
  /** What the provider had left after counting the call. */
  remaining?: number;
  /** Until the provider's budget is full again (informational). */
  resetMs?: Millis;
}

/** What the provider said about one call (ProviderFeedback in the contract). */
export interface ProviderFeedback {
  /** The provider refused the call (429, or 503/529 overloaded). */
  throttled: boolean;
  retryAfterMs?: Millis;
  requests?: DimensionFeedback;
  load?: DimensionFeedback;
  inputTokens?: DimensionFeedback;
  outputTokens?: DimensionFeedback;
}

/** What feedback changed, for logs (EngineOptions.onFeedback). */
export type FeedbackEvent =
  | { kind: "paused"; resource: string; at: Millis; until: Millis; pauseMs: Millis; retryAfter: boolean }
  | { kind: "learned"; resource: string; limit: number; configured: number; learned: number | undefined; periodMs: Millis };

/** The gRPC status names the engine can fail with. */
export type FailureCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "RESOURCE_EXHAUSTED"
  | "DEADLINE_EXCEEDED"
  | "CANCELLED"
  | "UNAVAILABLE"
  | "FAILED_PRECONDITION";

export interface Failure {
  code: FailureCode;
  message: string;
}

export interface AcquireRequest {
  resource: string;
  load: number;
  priority: number;
  /** Empty means the resource's default lane. */
  lane: string;
  /**
   * Absolute time at which the wait ends with DEADLINE_EXCEEDED; undefined
   * waits until cancelled. A deadline at or before now means one attempt.
   */
  deadline?: Millis;
  /** Who holds the lease once granted (a session id); echoed on expiry. */
  owner: string;
  /** A key inside the resource: the acquire is charged to its keyed child "resource/key" (made on first use). */
  key?: string;
}

export interface Lease {
  id: string;
  resource: string;
  load: number;
  owner: string;
  grantedAt: Millis;
  expiresAt: Millis;
  ttlMs: Millis;
}

export interface Grant {
  lease: Lease;
  waitedMs: Millis;
}

export type AcquireResult = { ok: true; grant: Grant } | { ok: false; failure: Failure };

export type ReleaseOutcome = "released" | "already_released" | "expired" | "unknown";

export interface HeartbeatResult {
  leaseId: string;
  held: boolean;
  expiresAt?: Millis;
}

export interface LaneStats {
  name: string;
  weight: number;
  queueDepth: number;
  grants: number;
  loadGranted: number;
}

export interface LimitStats {
  limit: LimitSpec;
  /** Units that could be granted at once now. */
  available: number;
  /** 1 - available / burst. */
  utilisation: number;
  /** Units charged over the period that ends now, refunds taken off. */
  usedLastPeriod: number;
  /** The amount provider feedback taught, when lower than limit.amount (per the limit's period). */
  learnedAmount?: number;
}

export interface ResourceStats {
  name: string;
  leasesInFlight: number;
  lanes: LaneStats[];
  limits: LimitStats[];
  grants: number;
  rejections: number;
  timeouts: number;
  cancellations: number;
  expirations: number;
  waitP50Ms: Millis;
  waitP90Ms: Millis;
  waitP99Ms: Millis;
  waitMaxMs: Millis;
  /** Until when the resource grants nothing after a throttle; undefined when not paused. */
  pausedUntil?: Millis;
  /** Throttled feedback received (releases and reports). */
  throttles: number;
  /** The direct children with the most demand (see Engine.stats); empty for a leaf. */
  children: ChildStats[];
  /** How many direct children the resource has, keyed ones included. */
  childrenCount: number;
  /** The parent's state; undefined for a root. */
  parent?: ParentStats;
}

/** One child's demand and grants (counted over its subtree). */
export interface ChildStats {
  name: string;
  share: number;
  keyed: boolean;
  leasesInFlight: number;
  queueDepth: number;
  grants: number;
  loadGranted: number;
}

/** A parent's state, as numbers. */
export interface ParentStats {
  name: string;
  leasesInFlight: number;
  queueDepth: number;
  limits: LimitStats[];
}

/**
 * A waiting acquire, returned by Engine.acquire when the request did not
 * resolve at once; pass it to Engine.cancel to withdraw the request.
 */
export interface Ticket {
  /** The resource the request waits on. */
  readonly resource: string;
  /** The engine-wide arrival number (FIFO order among equal priorities). */
  readonly seq: number;
}

/** Why the next request of a queue is not granted yet. */
export type BlockedBy = "concurrency" | "rate";

/** The request a resource will serve next and what it waits for. */
export interface NextWaiting {
  ticket: Ticket;
  lane: string;
  load: number;
  priority: number;
  waitingSinceMs: Millis;
  blockedBy: BlockedBy;
  /** When the rate limits will allow it (concurrency aside). */
  readyAt: Millis;
}

/** One lane's counters for metrics (Engine.metrics). */
export interface LaneMetrics {
  name: string;
  queueDepth: number;
  grants: number;
  loadGranted: number;
  timeouts: number;
  cancellations: number;
  /** Grants per wait bucket: one per bound of `waitBucketsMs`, then one for longer waits (not cumulative). */
  waitBuckets: readonly number[];
  waitSumMs: number;
}

/** One limit's state for metrics. */
export interface LimitMetrics {
  limit: LimitSpec;
  /** Units that could be granted at once now. */
  available: number;
  /** Units charged over the last period (grants and reconciliations). */
  usedLastPeriod: number;
  /** The amount provider feedback taught, when lower than limit.amount. */
  learnedAmount?: number;
}

/** A resource's counters and gauges for metrics, read at scrape time from what the engine keeps. */
export interface ResourceMetrics {
  name: string;
  leasesInFlight: number;
  lanes: LaneMetrics[];
  limits: LimitMetrics[];
  /** Acquires refused at once because the queue was full. */
  rejected: number;
  /** Acquires refused at once for an unknown lane or a load over a burst. */
  invalid: number;
  expirations: number;
  /** Load charged and refunded by reconciliations at release. */
  loadCharged: number;
  loadRefunded: number;
  /** Throttled feedback received. */
  throttles: number;
  /** Until when the resource is paused; undefined when not. */
  pausedUntil?: Millis;
}
