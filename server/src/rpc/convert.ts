// Engine results to protobuf messages and gRPC statuses. Requests go the
// other way in validate/requests.ts.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import {
  ChildStatsSchema,
  Dimension,
  KeyedChildTemplateSchema,
  ParentStatsSchema,
  LaneSchema,
  LimitSchema,
  ResourceSchema,
  HeartbeatResponseSchema,
  LaneStatsSchema,
  LeaseStateSchema,
  LimitStatsSchema,
  ReleaseOutcome,
  ReleaseResponseSchema,
  ReportResponseSchema,
  ResourceStatsSchema,
  type AcquireResponse,
  type Failure,
  type HeartbeatResponse,
  type ReleaseResponse,
  type ReportResponse,
  type Resource,
  type ResourceStats,
} from "@ratequeue/proto";
import type { Scope } from "../auth/index.js";
import { DEFAULT_COOLDOWN_MS, DEFAULT_PER_KEY_IDLE_MS } from "../core/index.js";
import type * as core from "../core/index.js";

/** The grpc-js status for an engine failure code. */
export function statusOf(code: core.FailureCode): status {
  return status[code];
}

// The answers of the session path are built as message literals, not by
// create(): protobuf-es's create() walks the schema by reflection, and a
// grant made four of them. Their values are those of create() and of the
// wkt helpers (session-codec.test.ts and convert.test.ts compare). Messages
// that are only read once made (time values, release outcomes) are frozen
// and shared between answers.

/** A frozen google.protobuf.Timestamp, as timestampFromMs(ms) makes it. */
function timestampOf(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return Object.freeze({ $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 });
}

/** A frozen google.protobuf.Duration, as durationFromMs(ms) makes it. */
export function durationOf(ms: number): Duration {
  const sign = ms < 0 ? -1 : 1;
  const abs = Math.abs(ms);
  const absSeconds = Math.floor(abs / 1000);
  const absNanos = (abs - absSeconds * 1000) * 1_000_000;
  return Object.freeze({ $typeName: "google.protobuf.Duration", seconds: BigInt(absSeconds * sign), nanos: absNanos === 0 ? 0 : absNanos * sign });
}

/**
 * The last time value made, per use: grants in the same millisecond share
 * their grant time, their expiry and their ttl.
 */
class TimeCache<T> {
  private ms = NaN;
  private value: T | undefined;
  constructor(private readonly make: (ms: number) => T) {}
  of(ms: number): T {
    if (ms !== this.ms) {
      this.value = this.make(ms);
      this.ms = ms;
    }
    return this.value!;
  }
}

const grantTimes = new TimeCache(timestampOf);
const expireTimes = new TimeCache(timestampOf);
const ttls = new TimeCache(durationOf);
const waitTimes = new TimeCache(durationOf);

export function grantToProto(grant: core.Grant, scope?: Scope): AcquireResponse {
  const { lease } = grant;
  return {
    $typeName: "ratequeue.v1.AcquireResponse",
    lease: {
      $typeName: "ratequeue.v1.Lease",
      leaseId: lease.id,
      resource: scope === undefined ? lease.resource : scope.publicName(lease.resource),
      load: lease.load,
      expireTime: expireTimes.of(lease.expiresAt),
      ttl: ttls.of(lease.ttlMs),
      grantTime: grantTimes.of(lease.grantedAt),
    },
    waitTime: waitTimes.of(grant.waitedMs),
  };
}

const outcomes: Record<core.ReleaseOutcome, [ReleaseOutcome, string]> = {
  released: [ReleaseOutcome.RELEASED, "released"],
  already_released: [ReleaseOutcome.ALREADY_RELEASED, "the lease was already released; nothing to do"],
  expired: [ReleaseOutcome.EXPIRED, "the lease had expired before this release (it was not heartbeated within its TTL); nothing to do"],
  unknown: [ReleaseOutcome.UNKNOWN, "no such lease on this server; nothing to do"],
};

/** One frozen answer per outcome. */
const releaseAnswers = Object.fromEntries(
  Object.entries(outcomes).map(([outcome, [value, message]]) => [outcome, Object.freeze(create(ReleaseResponseSchema, { outcome: value, message }))]),
) as Record<core.ReleaseOutcome, ReleaseResponse>;

export function releaseToProto(outcome: core.ReleaseOutcome): ReleaseResponse {
  return releaseAnswers[outcome];
}

/** An operation's failure: a grpc-js status code and a message. */
export function failureToProto(code: status, message: string): Failure {
  return { $typeName: "ratequeue.v1.Failure", code, message };
}

/** A report's answer: until when the resource is paused, if it is. */
export function reportToProto(pausedUntil: number | undefined): ReportResponse {
  return create(ReportResponseSchema, pausedUntil === undefined ? {} : { pausedUntil: timestampFromMs(pausedUntil) });
}

export function heartbeatToProto(results: core.HeartbeatResult[]): HeartbeatResponse {
  return create(HeartbeatResponseSchema, {
    leases: results.map((r) =>
      create(LeaseStateSchema, {
        leaseId: r.leaseId,
        held: r.held,
        expireTime: r.expiresAt === undefined ? undefined : timestampFromMs(r.expiresAt),
      }),
    ),
  });
}

function limitStatsToProto(l: core.LimitStats) {
  return create(LimitStatsSchema, {
    limit: limitToProto(l.limit),
    available: l.available,
    utilisation: l.utilisation,
    usedLastPeriod: l.usedLastPeriod,
    ...(l.learnedAmount !== undefined && { learnedAmount: l.learnedAmount }),
  });
}

export function statsToProto(stats: core.ResourceStats, scope?: Scope): ResourceStats {
  const publicRef = (name: string) => (scope === undefined ? name : scope.publicRef(name));
  const parent = stats.parent;
  return create(ResourceStatsSchema, {
    name: scope === undefined ? stats.name : scope.publicName(stats.name),
    leasesInFlight: stats.leasesInFlight,
    lanes: stats.lanes.map((l) => create(LaneStatsSchema, { ...l, grants: BigInt(l.grants) })),
    limits: stats.limits.map(limitStatsToProto),
    children: stats.children.map((c) => create(ChildStatsSchema, { ...c, name: publicRef(c.name), grants: BigInt(c.grants) })),
    childrenCount: stats.childrenCount,
    ...(parent !== undefined && {
      parent: create(ParentStatsSchema, {
        name: publicRef(parent.name),
        leasesInFlight: parent.leasesInFlight,
        queueDepth: parent.queueDepth,
        limits: parent.limits.map(limitStatsToProto),
      }),
    }),
    grants: BigInt(stats.grants),
    rejections: BigInt(stats.rejections),
    timeouts: BigInt(stats.timeouts),
    cancellations: BigInt(stats.cancellations),
    expirations: BigInt(stats.expirations),
    waitP50: durationFromMs(stats.waitP50Ms),
    waitP90: durationFromMs(stats.waitP90Ms),
    waitP99: durationFromMs(stats.waitP99Ms),
    waitMax: durationFromMs(stats.waitMaxMs),
    ...(stats.pausedUntil !== undefined && { pausedUntil: timestampFromMs(stats.pausedUntil) }),
    throttles: BigInt(stats.throttles),
  });
}

function limitToProto(l: core.LimitSpec) {
  return create(LimitSchema, {
    dimension: l.dimension === "requests" ? Dimension.REQUESTS : Dimension.LOAD,
    amount: l.amount,
    period: durationFromMs(l.periodMs),
    burst: l.burst,
    unit: l.unit ?? "",
  });
}

/** The Resource message for a stored spec (defaults filled in), names as given. */
export function resourceToProto(spec: core.ResourceSpec): Resource {
  const perKey = spec.perKey;
  return create(ResourceSchema, {
    name: spec.name,
    limits: spec.limits.map(limitToProto),
    concurrency: spec.concurrency,
    lanes: spec.lanes.map((l) => create(LaneSchema, { name: l.name, weight: l.weight })),
    defaultLane: spec.defaultLane,
    leaseTtl: durationFromMs(spec.leaseTtlMs),
    maxQueue: spec.maxQueue,
    cooldown: durationFromMs(spec.cooldownMs ?? DEFAULT_COOLDOWN_MS),
    learnLimits: spec.learnLimits ?? true,
    parent: spec.parent ?? "",
    share: spec.parent === undefined ? 0 : (spec.share ?? 1),
    ...(perKey !== undefined && {
      perKey: create(KeyedChildTemplateSchema, { limits: perKey.limits.map(limitToProto), concurrency: perKey.concurrency, share: perKey.share }),
      perKeyIdle: durationFromMs(spec.perKeyIdleMs ?? DEFAULT_PER_KEY_IDLE_MS),
    }),
    childrenFrom: spec.childrenFrom ?? [],
    keyed: spec.keyed === true,
  });
}
