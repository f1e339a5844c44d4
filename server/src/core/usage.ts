// How much of a limit was used over its last period: units charged, in ten
// slices of the period, so that a scrape can say "what the limit allowed that
// was used over its last period" without keeping every grant.
import type { Millis } from "./types.js";

const SLICES = 10;

/** Units charged per slice of one period, slices recycled as time moves on. */
export class UsageWindow {
  private readonly units = new Float64Array(SLICES);
  /** The slice number (time / slice length) that `units[slice % SLICES]` counts. */
  private readonly slices = new Float64Array(SLICES).fill(-1);
  private readonly sliceMs: number;

  constructor(periodMs: Millis) {
    this.sliceMs = Math.max(1, periodMs / SLICES);
  }

  /** Counts `units` (negative: a refund) at `now`. */
  add(units: number, now: Millis): void {
    const slice = Math.floor(now / this.sliceMs);
    const i = slice % SLICES;
    if (this.slices[i] !== slice) {
      this.slices[i] = slice;
      this.units[i] = 0;
    }
    this.units[i]! += units;
  }

  /** Units counted in the period that ends at `now` (its oldest slice in part). */
  used(now: Millis): number {
    const current = Math.floor(now / this.sliceMs);
    let sum = 0;
    for (let i = 0; i < SLICES; i++) {
      const s = this.slices[i]!;
      if (s > current - SLICES && s <= current) sum += this.units[i]!;
    }
    return Math.max(0, sum);
  }
}
