// How much of a limit was used over its last period: units charged, in ten
// slices of the period, so that a scrape can say "what the limit allowed that
// was used over its last period" without keeping every grant.
import type { Millis } from "./types.js";

const SLICES = 10;

/**
 * Units charged per slice of one period: slot `s % SLICES` counts slice `s`
 * (time / slice length) for the last SLICES slices up to the latest one
 * charged; a slot is zeroed as time moves past its slice. Time never goes
 * back (the engine's clock), so the latest slice is the largest.
 */
export class UsageWindow {
  private readonly units: number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  /** The latest slice charged. */
  private last = -Infinity;
  private readonly sliceMs: number;

  constructor(periodMs: Millis) {
    this.sliceMs = Math.max(1, periodMs / SLICES);
  }

  /** Counts `units` (negative: a refund) at `now`. */
  add(units: number, now: Millis): void {
    const slice = Math.floor(now / this.sliceMs);
    if (slice > this.last) {
      // The slots of the slices passed over (at most all of them) start again at 0.
      const from = slice - this.last >= SLICES ? slice - SLICES + 1 : this.last + 1;
      for (let s = from; s <= slice; s++) this.units[s % SLICES] = 0;
      this.last = slice;
    }
    this.units[slice % SLICES]! += units;
  }

  /** Units counted in the period that ends at `now` (its oldest slice in part). */
  used(now: Millis): number {
    const current = Math.floor(now / this.sliceMs);
    const last = this.last;
    let sum = 0;
    for (let i = 0; i < SLICES; i++) {
      // The slice slot i counts: the one up to `last` that falls on i.
      const s = last - ((((last - i) % SLICES) + SLICES) % SLICES);
      if (s > current - SLICES) sum += this.units[i]!;
    }
    return Math.max(0, sum);
  }
}
