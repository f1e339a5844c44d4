// The one way the engine waits: a timer that only ever moves earlier.
import type { Clock, Millis, TimerId } from "./types.js";

/**
 * A timer asked to fire by some time. Already armed for that time or
 * earlier, it stays as it is: firing early is harmless, because its owner
 * then finds nothing due and asks again for the next due time. Only an
 * earlier time re-arms it at once. The deadline, lease-expiry and rate
 * timers of the engine are each one of these.
 */
export class LazyTimer {
  private id: TimerId | null = null;
  private at: Millis = Infinity;

  /** @param fire called once each time the timer fires (it is disarmed by then). */
  constructor(
    private readonly clock: Clock,
    private readonly fire: () => void,
  ) {}

  /** Makes sure the timer fires at or before `at` (undefined: nothing to wait for). */
  armBy(at: Millis | undefined): void {
    if (at === undefined || (this.id !== null && this.at <= at)) return;
    if (this.id !== null) this.clock.clearTimer(this.id);
    this.at = at;
    this.id = this.clock.setTimer(at, () => {
      this.id = null;
      this.at = Infinity;
      this.fire();
    });
  }

  /** Disarms the timer. */
  clear(): void {
    if (this.id === null) return;
    this.clock.clearTimer(this.id);
    this.id = null;
    this.at = Infinity;
  }
}
