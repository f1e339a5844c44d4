// The two clocks: the system clock for production and a simulated clock that
// tests advance by hand, so every timing test is exact.
import { IndexedHeap } from "./indexed-heap.js";
import type { Clock, Millis, TimerId } from "./types.js";

/** Node refuses delays above 2^31-1 ms (about 24.8 days); longer timers re-arm. */
const MAX_DELAY = 2 ** 31 - 1;

let lastSystemNow = 0;
let nextSystemTimerId = 1;
const systemTimers = new Map<TimerId, ReturnType<typeof setTimeout>>();

function systemNow(): Millis {
  // Date.now() can step back (NTP); the Clock contract says it never does.
  const t = Date.now();
  if (t > lastSystemNow) lastSystemNow = t;
  return lastSystemNow;
}

function armSystem(id: TimerId, at: Millis, fn: () => void): void {
  const delay = Math.min(Math.max(0, at - systemNow()), MAX_DELAY);
  const handle = setTimeout(() => {
    if (!systemTimers.has(id)) return;
    // Fired early (ms rounding) or a long delay was capped: wait again.
    if (systemNow() < at) return armSystem(id, at, fn);
    systemTimers.delete(id);
    fn();
  }, delay);
  // Timers never keep the process alive: shutdown is the server's decision.
  handle.unref?.();
  systemTimers.set(id, handle);
}

/**
 * The real clock: Date.now() (made monotonic) and unref'd setTimeout timers.
 * Timers further away than setTimeout allows are re-armed until due, and a
 * timer never fires before `now() >= at`.
 */
export const systemClock: Clock = {
  now: systemNow,
  setTimer(at: Millis, fn: () => void): TimerId {
    const id = nextSystemTimerId++;
    armSystem(id, at, fn);
    return id;
  },
  clearTimer(id: TimerId): void {
    const handle = systemTimers.get(id);
    if (handle === undefined) return;
    clearTimeout(handle);
    systemTimers.delete(id);
  },
};

interface SimTimer {
  id: TimerId;
  at: Millis;
  seq: number;
  fn: () => void;
  index: number;
}

/**
 * A clock that moves only when told to. {@link SimulatedClock.advance} fires
 * due timers in deadline order (ties in creation order), with now() set to
 * each timer's time as it fires.
 */
export class SimulatedClock implements Clock {
  private time: Millis;
  private nextId = 1;
  private seq = 0;
  private readonly byId = new Map<TimerId, SimTimer>();
  private readonly heap = new IndexedHeap<SimTimer>(
    (a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq),
    (t) => t.index,
    (t, i) => {
      t.index = i;
    },
  );

  /** @param start the initial time in ms. */
  constructor(start: Millis = 0) {
    this.time = start;
  }

  /** The current simulated time. */
  now(): Millis {
    return this.time;
  }

  /**
   * Schedules `fn` at `at`. A time already past fires on the next
   * {@link advance} (even `advance(0)`), at the then-current time.
   */
  setTimer(at: Millis, fn: () => void): TimerId {
    const t: SimTimer = { id: this.nextId++, at, seq: this.seq++, fn, index: -1 };
    this.byId.set(t.id, t);
    this.heap.push(t);
    return t.id;
  }

  /** Cancels a timer; unknown or fired ids are ignored. */
  clearTimer(id: TimerId): void {
    const t = this.byId.get(id);
    if (t === undefined) return;
    this.byId.delete(id);
    this.heap.remove(t);
  }

  /**
   * Moves time forward by `ms`, firing every timer due by the end of the
   * window, including timers created by other timers while advancing.
   * @throws RangeError for a negative or non-finite `ms`: time never goes back.
   */
  advance(ms: Millis): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) {
      throw new RangeError(`SimulatedClock.advance: ms must be a finite number >= 0, got ${ms}`);
    }
    const end = this.time + ms;
    for (;;) {
      const t = this.heap.peek();
      if (t === undefined || t.at > end) break;
      this.heap.pop();
      this.byId.delete(t.id);
      if (t.at > this.time) this.time = t.at;
      t.fn();
    }
    if (end > this.time) this.time = end;
  }

  /** Moves time forward to `at` (no-op when `at` is not later than now). */
  advanceTo(at: Millis): void {
    this.advance(Math.max(0, at - this.time));
  }

  /** Timers scheduled and not yet fired or cleared. */
  pending(): number {
    return this.heap.size;
  }
}
