// One rate limit enforced by the generic cell rate algorithm (GCRA).
import type { LimitSpec, Millis } from "./types.js";
import { addUsage, newUsageWindow, usageOver, type UsageWindow } from "./usage.js";

/** The units an acquire of `load` costs on a limit of `spec`: 1 for a requests limit, the load for a load limit. */
export function costOf(spec: LimitSpec, load: number): number {
  return spec.dimension === "requests" ? 1 : load;
}

/**
 * One GCRA limit: at most `burst + t * amount / periodMs` units in any
 * interval of t ms.
 *
 * The whole state is one number, the theoretical arrival time (TAT): the time
 * at which the limit would be fully idle again. Each unit costs the emission
 * interval T = periodMs / amount of "time debt"; a cost c fits at `now` when
 * the debt after charging it is at most burst * T.
 *
 * Exactness: {@link readyAt} is the one expression behind both the admission
 * test and the wake-up time, so a timer armed at `availableAt(c)` always
 * admits c (same floats, same result). No tolerance is added in the admitting
 * direction: float noise can delay a grant by an ulp but never admit early.
 */
export class Gcra {
  /**
   * Theoretical arrival time in ms. Below now means "idle" (same as now).
   * (Initialised here with a number, so that V8 keeps it as an unboxed double
   * updated in place: declared bare, it would hold undefined first, and every
   * charge would then allocate a new number.)
   */
  tat: Millis = 0;
  /** Units charged over the last period, for metrics (made at the first: see recordUse). */
  private usage: UsageWindow | undefined = undefined;
  /** What follows from the spec and a learned amount; shared by the limits of one spec that learned nothing. */
  private rate: Rate;

  /** @param tat initial TAT; at or before now means a full burst is available. */
  constructor(spec: LimitSpec, tat: Millis) {
    this.rate = rateOf(spec);
    this.tat = tat;
  }

  /** The limit's definition. */
  get spec(): LimitSpec {
    return this.rate.spec;
  }

  /** Emission interval: ms of debt per unit. */
  get interval(): number {
    return this.rate.interval;
  }

  /** burst * interval: the most debt the limit tolerates. */
  get tolerance(): number {
    return this.rate.tolerance;
  }

  /**
   * The amount per period provider feedback taught (below spec.amount), or
   * undefined: the limit then admits at this lower rate, with the same burst.
   */
  get learned(): number | undefined {
    return this.rate.learned;
  }

  /** Counts `units` charged (negative: refunded) at `now` in the usage over the last period. */
  recordUse(units: number, now: Millis): void {
    addUsage((this.usage ??= newUsageWindow()), this.rate.spec.periodMs, units, now);
  }

  /** Units charged over the period that ends at `now`, refunds taken off (0 or more). */
  usedLastPeriod(now: Millis): number {
    return this.usage === undefined ? 0 : usageOver(this.usage, this.rate.spec.periodMs, now);
  }

  /** The units an acquire of `load` costs here: 1 for a requests limit, the load for a load limit. */
  cost(load: number): number {
    return this.rate.perRequest ? 1 : load;
  }

  /** True when cost `c` could ever fit (it is at most the burst). */
  canEverFit(c: number): boolean {
    return c <= this.spec.burst;
  }

  /**
   * The time from which cost `c` fits, as computed at `now`; a value at or
   * before `now` means it fits now. Only meaningful for c <= burst.
   */
  readyAt(c: number, now: Millis): Millis {
    const base = this.tat > now ? this.tat : now;
    const rate = this.rate;
    return base + c * rate.interval - rate.tolerance;
  }

  /** True when cost `c` fits at `now`. */
  fits(c: number, now: Millis): boolean {
    return this.readyAt(c, now) <= now;
  }

  /** The earliest time, not before `now`, at which cost `c` fits (c <= burst). */
  availableAt(c: number, now: Millis): Millis {
    const t = this.readyAt(c, now);
    return t > now ? t : now;
  }

  /** The amount per period the limit admits at: the learned one, else the configured one. */
  get effectiveAmount(): number {
    return this.learned ?? this.spec.amount;
  }

  /**
   * Admits at `amount` per period from now on (undefined: the configured
   * amount again), keeping the debt in units as of `from` (see reconfigure).
   * A slower rate only ever delays grants compared to the configured one,
   * so the configured bound holds.
   */
  learn(amount: number | undefined, from: Millis): void {
    const debt = this.debtUnits(from);
    this.rate = amount === undefined ? rateOf(this.spec) : new Rate(this.spec, amount);
    this.tat = from + debt * this.interval;
  }

  /** Lowers what may be granted at once at `now` to at most `units` (negative: a debt beyond the burst). Never raises it. */
  limitAvailable(units: number, now: Millis): void {
    const tat = now + (this.spec.burst - units) * this.interval;
    if (tat > this.tat) this.tat = tat;
  }

  /**
   * Grants nothing before `until`, and then only at the steady rate: the
   * burst is spent at `until`, so a pause never refills it.
   */
  holdUntil(until: Millis): void {
    const tat = until + this.tolerance;
    if (tat > this.tat) this.tat = tat;
  }

  /** Spends `c` units at `now`. The caller has checked {@link fits}. */
  charge(c: number, now: Millis): void {
    this.tat = (this.tat > now ? this.tat : now) + c * this.rate.interval;
  }

  /**
   * Charges (delta > 0) or refunds (delta < 0) units after the fact, for
   * load reconciliation. A refund may move TAT below now; that only means idle.
   */
  adjust(delta: number): void {
    this.tat += delta * this.interval;
  }

  /** Units that could be granted at once at `now`, between 0 and burst. */
  available(now: Millis): number {
    const debt = this.tat > now ? this.tat - now : 0;
    const a = this.spec.burst - debt / this.interval;
    return a > 0 ? a : 0;
  }

  /** Units of debt outstanding at `now` (0 when idle). */
  debtUnits(now: Millis): number {
    return this.tat > now ? (this.tat - now) / this.interval : 0;
  }

  /**
   * Switches to a changed spec (amount, period or burst), keeping the debt in
   * units: a limit 80% used stays as many units in debt, now repaid at the
   * new rate. A learned amount is forgotten: the new spec is the user's word.
   * `from` (now, or the end of a pause: nothing is granted before it) is the
   * time whose debt is kept, so that a pause keeps its length and still ends
   * with the burst spent.
   */
  reconfigure(spec: LimitSpec, from: Millis): void {
    const debt = this.debtUnits(from);
    this.rate = rateOf(spec);
    this.tat = from + debt * this.interval;
  }
}

/** A limit's spec with what follows from it at an admitted amount: immutable, so limits of one spec share it. */
class Rate {
  /** Emission interval: ms of debt per unit. */
  readonly interval: number;
  /** burst * interval: the most debt the limit tolerates. */
  readonly tolerance: number;
  /** A requests limit: every acquire costs 1. */
  readonly perRequest: boolean;

  /** @param learned the amount admitted instead of spec.amount, or undefined. */
  constructor(
    readonly spec: LimitSpec,
    readonly learned: number | undefined,
  ) {
    this.interval = spec.periodMs / (learned ?? spec.amount);
    this.tolerance = spec.burst * this.interval;
    this.perRequest = spec.dimension === "requests";
  }
}

/** The configured rate of `spec`, shared by every limit made from the same spec object (the engine shares equal specs: resource.ts). */
const rates = new WeakMap<LimitSpec, Rate>();
function rateOf(spec: LimitSpec): Rate {
  let rate = rates.get(spec);
  if (rate === undefined) {
    rate = new Rate(spec, undefined);
    rates.set(spec, rate);
  }
  return rate;
}
