// The engine's records of a resource: its limits, lanes and counters, and
// the waiting requests in its lanes. Not exported from the core's index.
import { Gcra } from "./gcra.js";
import { IndexedHeap } from "./indexed-heap.js";
import type { LazyTimer } from "./lazy-timer.js";
import type { AcquireResult, LaneSpec, Millis, ResourceSpec, Ticket } from "./types.js";

/** Grant waits remembered per resource for the percentiles. */
export const WAIT_RING = 1024;

/** A waiting acquire; the object itself is the caller's {@link Ticket}. */
export class Waiter implements Ticket {
  /** Position in its lane's queue (-1 when out). */
  laneIndex = -1;
  /** Position in the engine's deadline heap (-1 when out or no deadline). */
  deadlineIndex = -1;
  /** Set once the outcome is decided; onResult follows exactly once. */
  decided = false;

  constructor(
    readonly seq: number,
    readonly res: Resource,
    public lane: Lane,
    readonly load: number,
    readonly priority: number,
    /** Infinity when the request waits until cancelled. */
    readonly deadline: Millis,
    readonly owner: string,
    readonly enqueuedAt: Millis,
    readonly onResult: (r: AcquireResult) => void,
  ) {}

  /** The resource's name (the Ticket field). */
  get resource(): string {
    return this.res.name;
  }
}

function waiterFirst(a: Waiter, b: Waiter): boolean {
  // Higher priority first, then arrival order.
  return a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq);
}

/** One lane: a priority queue plus its weighted-fair-queuing finish tag (lane-scheduling.ts). */
export class Lane {
  /** Virtual finish tag: grants so far, in cost / weight. */
  finish = 0;
  grants = 0;
  loadGranted = 0;
  readonly queue = new IndexedHeap<Waiter>(
    waiterFirst,
    (w) => w.laneIndex,
    (w, i) => {
      w.laneIndex = i;
    },
  );

  constructor(
    readonly name: string,
    public weight: number,
  ) {}
}

/** A resource's live state. */
export class Resource {
  readonly name: string;
  spec: ResourceSpec;
  limits: Gcra[];
  lanes: Lane[];
  laneByName = new Map<string, Lane>();
  defaultLane: Lane;
  /** Leases held (kept by the lease table). */
  inFlight = 0;
  waiting = 0;
  /** System virtual time for weighted fair queuing: the start tag of the last grant. */
  vtime = 0;
  grants = 0;
  rejections = 0;
  timeouts = 0;
  cancellations = 0;
  expirations = 0;
  /** Ring of recent grant waits (grows up to WAIT_RING, then wraps). */
  waits: number[] = [];
  waitPos = 0;
  deleted = false;
  /** Scratch mark while the engine collects resources to re-evaluate. */
  dirty = false;

  /** @param rateTimer wakes the queue when its head's limits will admit it. */
  constructor(
    spec: ResourceSpec,
    now: Millis,
    readonly rateTimer: LazyTimer,
  ) {
    this.name = spec.name;
    this.spec = spec;
    this.limits = spec.limits.map((l) => new Gcra(l, now));
    this.lanes = spec.lanes.map((l: LaneSpec) => new Lane(l.name, l.weight));
    for (const l of this.lanes) this.laneByName.set(l.name, l);
    this.defaultLane = this.laneByName.get(spec.defaultLane) ?? (this.lanes[0] as Lane);
  }

  /** Records one grant's wait for the percentiles. */
  recordWait(ms: Millis): void {
    if (this.waits.length < WAIT_RING) this.waits.push(ms);
    else {
      this.waits[this.waitPos] = ms;
      this.waitPos = (this.waitPos + 1) % WAIT_RING;
    }
  }

  /** Every waiter of every lane, in arrival order. */
  waitersByArrival(): Waiter[] {
    const all: Waiter[] = [];
    for (const l of this.lanes) all.push(...l.queue.toArray());
    return all.sort((a, b) => a.seq - b.seq);
  }
}

/** A deep copy of a spec: the engine never shares one with its callers. */
export function copySpec(s: ResourceSpec): ResourceSpec {
  return {
    name: s.name,
    limits: s.limits.map((l) => ({ dimension: l.dimension, amount: l.amount, periodMs: l.periodMs, burst: l.burst })),
    concurrency: s.concurrency,
    lanes: s.lanes.map((l) => ({ name: l.name, weight: l.weight })),
    defaultLane: s.defaultLane,
    leaseTtlMs: s.leaseTtlMs,
    maxQueue: s.maxQueue,
  };
}
