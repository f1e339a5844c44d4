// Checks the product's invariant on recorded grants: for a GCRA limit of
// amount per period with burst b, the units granted in any interval of
// length t never exceed b + t * amount / period.

export interface GrantRecord {
  /** Server time of the grant, ms. */
  at: number;
  /** Units the grant cost on the limit checked. */
  cost: number;
}

export interface Violation {
  from: number;
  to: number;
  units: number;
  allowed: number;
}

/** The worst interval, or undefined when the invariant held. O(n^2). */
export function findViolation(grants: GrantRecord[], limit: { amount: number; periodMs: number; burst: number }): Violation | undefined {
  const sorted = [...grants].sort((a, b) => a.at - b.at);
  const rate = limit.amount / limit.periodMs;
  for (let i = 0; i < sorted.length; i++) {
    let units = 0;
    for (let j = i; j < sorted.length; j++) {
      units += sorted[j]!.cost;
      const allowed = limit.burst + (sorted[j]!.at - sorted[i]!.at) * rate;
      if (units > allowed + 1e-6) return { from: sorted[i]!.at, to: sorted[j]!.at, units, allowed };
    }
  }
  return undefined;
}

/** The most intervals [start, end) open at once. */
export function maxOverlap(intervals: { start: number; end: number }[]): number {
  const events = intervals.flatMap((iv) => [
    { t: iv.start, d: 1 },
    { t: iv.end, d: -1 },
  ]);
  // Ends before starts at the same instant: a slot freed can be reused at once.
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let most = 0;
  for (const e of events) {
    open += e.d;
    most = Math.max(most, open);
  }
  return most;
}
