// How much of a limit was used over its last period: units charged, in ten
// slices of the period, so that a scrape can say "what the limit allowed that
// was used over its last period" without keeping every grant.
import type { Millis } from "./types.js";

const SLICES = 10;

/**
 * Units charged per slice of one period, as one array of doubles (no object
 * around it: a limit of a busy resource touches one array per grant):
 * element 0 is the latest slice charged (time / slice length), and element
 * 1 + s % SLICES counts slice s for the last SLICES slices up to it; a slot
 * is zeroed as time moves past its slice. Time never goes back (the
 * engine's clock), so the latest slice is the largest.
 */
export type UsageWindow = number[];

/** An empty window. */
export function newUsageWindow(): UsageWindow {
  return [-Infinity, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
}

function sliceMsOf(periodMs: Millis): number {
  return Math.max(1, periodMs / SLICES);
}

/** Counts `units` (negative: a refund) at `now` in window `w` of a limit of `periodMs`. */
export function addUsage(w: UsageWindow, periodMs: Millis, units: number, now: Millis): void {
  const slice = Math.floor(now / sliceMsOf(periodMs));
  const last = w[0]!;
  if (slice > last) {
    // The slots of the slices passed over (at most all of them) start again at 0.
    const from = slice - last >= SLICES ? slice - SLICES + 1 : last + 1;
    for (let s = from; s <= slice; s++) w[1 + slotOf(s)] = 0;
    w[0] = slice;
  }
  w[1 + slotOf(slice)]! += units;
}

/**
 * slice % SLICES for a slice number (a whole, non-negative double, past
 * 2^31 for times since 1970): `%` on a double is a call to fmod, which
 * took a tenth of an acquire and release; this is a few instructions.
 */
function slotOf(slice: number): number {
  return slice - Math.floor(slice / SLICES) * SLICES;
}

/** Units counted in window `w` in the period that ends at `now` (its oldest slice in part). */
export function usageOver(w: UsageWindow, periodMs: Millis, now: Millis): number {
  const current = Math.floor(now / sliceMsOf(periodMs));
  const last = w[0]!;
  let sum = 0;
  for (let i = 0; i < SLICES; i++) {
    // The slice slot i counts: the one up to `last` that falls on i.
    const s = last - ((((last - i) % SLICES) + SLICES) % SLICES);
    if (s > current - SLICES) sum += w[1 + i]!;
  }
  return Math.max(0, sum);
}
