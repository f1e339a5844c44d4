// A resource's live statistics, read from the state the engine keeps anyway.
import { copyLimit, WAIT_BUCKETS_MS, type Resource } from "./resource.js";
import type { ChildStats, LimitStats, Millis, ParentStats, ResourceMetrics, ResourceStats } from "./types.js";

/** The bounds of the wait buckets in ResourceMetrics, ms. */
export const waitBucketsMs = WAIT_BUCKETS_MS;

function nearestRank(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] as number;
}

/** Each limit's utilisation at `now`. */
function limitStats(r: Resource, now: Millis): LimitStats[] {
  return r.limitStates().map((g) => {
    const available = g.available(now);
    return {
      limit: copyLimit(g.spec),
      available,
      utilisation: 1 - available / g.spec.burst,
      usedLastPeriod: g.usedLastPeriod(now),
      ...(g.learned !== undefined && { learnedAmount: g.learned }),
    };
  });
}

/** A child's demand and grants, over its subtree. */
export function childStats(c: Resource): ChildStats {
  return {
    name: c.name,
    share: c.spec.share ?? 1,
    keyed: c.spec.keyed === true,
    leasesInFlight: c.inFlight,
    queueDepth: c.backlog,
    grants: c.grants,
    loadGranted: c.loadGrantedTotal,
  };
}

/** A parent's state at `now`, as numbers. */
export function parentStats(p: Resource, now: Millis): ParentStats {
  return { name: p.name, leasesInFlight: p.inFlight, queueDepth: p.backlog, limits: limitStats(p, now) };
}

/** The statistics of `r` at `now`, without its tree (Engine.stats adds it). */
export function resourceStats(r: Resource, now: Millis): Omit<ResourceStats, "children" | "childrenCount" | "parent"> {
  const sorted = r.recentWaits().sort((a, b) => a - b);
  return {
    name: r.name,
    leasesInFlight: r.inFlight,
    lanes: r.laneStates().map((l) => ({
      name: l.name,
      weight: l.weight,
      queueDepth: l.queue.size,
      grants: l.grants,
      loadGranted: l.loadGranted,
    })),
    limits: limitStats(r, now),
    grants: r.grants,
    rejections: r.tally?.rejections ?? 0,
    timeouts: r.tally?.timeouts ?? 0,
    cancellations: r.tally?.cancellations ?? 0,
    expirations: r.tally?.expirations ?? 0,
    waitP50Ms: nearestRank(sorted, 0.5),
    waitP90Ms: nearestRank(sorted, 0.9),
    waitP99Ms: nearestRank(sorted, 0.99),
    waitMaxMs: sorted.length ? (sorted[sorted.length - 1] as number) : 0,
    ...(r.pausedUntil > now && { pausedUntil: r.pausedUntil }),
    throttles: r.pause?.throttles ?? 0,
  };
}

/** The counters and gauges of `r` at `now`, for metrics. */
export function resourceMetrics(r: Resource, now: Millis): ResourceMetrics {
  return {
    name: r.name,
    leasesInFlight: r.inFlight,
    lanes: r.laneStates().map((l) => ({
      name: l.name,
      queueDepth: l.queue.size,
      grants: l.grants,
      loadGranted: l.loadGranted,
      timeouts: l.timeouts,
      cancellations: l.cancellations,
      waitBuckets: l.waitCounts(),
      waitSumMs: l.waitSumMs,
    })),
    limits: r.limitStates().map((g) => ({
      limit: copyLimit(g.spec),
      available: g.available(now),
      usedLastPeriod: g.usedLastPeriod(now),
      ...(g.learned !== undefined && { learnedAmount: g.learned }),
    })),
    rejected: (r.tally?.rejections ?? 0) - (r.tally?.invalid ?? 0),
    invalid: r.tally?.invalid ?? 0,
    expirations: r.tally?.expirations ?? 0,
    loadCharged: r.tally?.loadCharged ?? 0,
    loadRefunded: r.tally?.loadRefunded ?? 0,
    throttles: r.pause?.throttles ?? 0,
    ...(r.pausedUntil > now && { pausedUntil: r.pausedUntil }),
  };
}
