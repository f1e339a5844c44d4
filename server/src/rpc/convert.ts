// Engine results to protobuf messages. Requests go the other way in validate.ts.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AcquireResponseSchema,
  HeartbeatResponseSchema,
  LaneStatsSchema,
  LeaseSchema,
  LeaseStateSchema,
  LimitStatsSchema,
  ReleaseOutcome,
  ReleaseResponseSchema,
  ResourceStatsSchema,
  type AcquireResponse,
  type HeartbeatResponse,
  type ReleaseResponse,
  type ResourceStats,
} from "@ratequeue/proto";
import type { Scope } from "../auth/scope.js";
import type * as core from "../core/index.js";
import { resourceToProto } from "./validate.js";

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

export function statsToProto(stats: core.ResourceStats, spec: core.ResourceSpec, scope?: Scope): ResourceStats {
  const resource = resourceToProto(spec);
  return create(ResourceStatsSchema, {
    name: scope === undefined ? stats.name : scope.publicName(stats.name),
    leasesInFlight: stats.leasesInFlight,
    lanes: stats.lanes.map((l) => create(LaneStatsSchema, { ...l, grants: BigInt(l.grants) })),
    limits: stats.limits.map((l, i) =>
      create(LimitStatsSchema, { limit: resource.limits[i], available: l.available, utilisation: l.utilisation }),
    ),
    grants: BigInt(stats.grants),
    rejections: BigInt(stats.rejections),
    timeouts: BigInt(stats.timeouts),
    cancellations: BigInt(stats.cancellations),
    expirations: BigInt(stats.expirations),
    waitP50: durationFromMs(stats.waitP50Ms),
    waitP90: durationFromMs(stats.waitP90Ms),
    waitP99: durationFromMs(stats.waitP99Ms),
    waitMax: durationFromMs(stats.waitMaxMs),
  });
}
