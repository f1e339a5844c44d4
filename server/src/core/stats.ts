// A resource's live statistics, read from the state the engine keeps anyway.
import type { Resource } from "./resource.js";
import type { Millis, ResourceStats } from "./types.js";

function nearestRank(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] as number;
}

/** The statistics of `r` at `now`. */
export function resourceStats(r: Resource, now: Millis): ResourceStats {
  const sorted = r.waits.slice().sort((a, b) => a - b);
  return {
    name: r.name,
    leasesInFlight: r.inFlight,
    lanes: r.lanes.map((l) => ({
      name: l.name,
      weight: l.weight,
      queueDepth: l.queue.size,
      grants: l.grants,
      loadGranted: l.loadGranted,
    })),
    limits: r.limits.map((g) => {
      const available = g.available(now);
      return { limit: { ...g.spec }, available, utilisation: 1 - available / g.spec.burst };
    }),
    grants: r.grants,
    rejections: r.rejections,
    timeouts: r.timeouts,
    cancellations: r.cancellations,
    expirations: r.expirations,
    waitP50Ms: nearestRank(sorted, 0.5),
    waitP90Ms: nearestRank(sorted, 0.9),
    waitP99Ms: nearestRank(sorted, 0.99),
    waitMaxMs: sorted.length ? (sorted[sorted.length - 1] as number) : 0,
  };
}
