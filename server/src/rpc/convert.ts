// Engine results to protobuf messages and gRPC statuses. Requests go the
// other way in validate/requests.ts.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import {
  AcquireResponseSchema,
  ChildStatsSchema,
  Dimension,
  KeyedChildTemplateSchema,
  ParentStatsSchema,
  LaneSchema,
  LimitSchema,
  ResourceSchema,
  HeartbeatResponseSchema,
  LaneStatsSchema,
  LeaseSchema,
  LeaseStateSchema,
  LimitStatsSchema,
  ReleaseOutcome,
  ReleaseResponseSchema,
  ReportResponseSchema,
  ResourceStatsSchema,
  type AcquireResponse,
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

export function grantToProto(grant: core.Grant, scope?: Scope): AcquireResponse {
  const { lease } = grant;
  return create(AcquireResponseSchema, {
    lease: create(LeaseSchema, {
      leaseId: lease.id,
      resource: scope === undefined ? lease.resource : scope.publicName(lease.resource),
      load: lease.load,
      expireTime: timestampFromMs(lease.expiresAt),
      ttl: durationFromMs(lease.ttlMs),
      grantTime: timestampFromMs(lease.grantedAt),
    }),
    waitTime: durationFromMs(grant.waitedMs),
  });
}

const outcomes: Record<core.ReleaseOutcome, [ReleaseOutcome, string]> = {
  released: [ReleaseOutcome.RELEASED, "released"],
  already_released: [ReleaseOutcome.ALREADY_RELEASED, "the lease was already released; nothing to do"],
  expired: [ReleaseOutcome.EXPIRED, "the lease had expired before this release (it was not heartbeated within its TTL); nothing to do"],
  unknown: [ReleaseOutcome.UNKNOWN, "no such lease on this server; nothing to do"],
};

export function releaseToProto(outcome: core.ReleaseOutcome): ReleaseResponse {
  const [value, message] = outcomes[outcome];
  return create(ReleaseResponseSchema, { outcome: value, message });
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
