// The engine's internal records: a resource with its limits and lanes, a
// waiting request, a held lease. Not exported from the core's index.
import { Gcra } from "./gcra.js";
import { IndexedHeap } from "./indexed-heap.js";
import type { AcquireResult, LaneSpec, Lease, Millis, ResourceSpec, Ticket } from "./types.js";

/** Grant waits remembered per resource for the percentiles. */
export const WAIT_RING = 1024;

/**
 * The smallest virtual cost of a grant, so 0-load requests still advance
 * their lane's finish tag and weights still share them out.
 */
export const MIN_VIRTUAL_COST = 1e-6;

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

/** One lane: a priority queue plus its weighted-fair-queuing finish tag. */
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

/** A held lease. */
export class LeaseRecord {
  /** Position in the engine's expiry heap. */
  index = -1;
  /** The engine's serial number of an id it made itself; -1 otherwise. */
  serial = -1;

  constructor(
    readonly id: string,
    readonly res: Resource,
    readonly load: number,
    readonly owner: string,
    readonly grantedAt: Millis,
    public expiresAt: Millis,
    public ttlMs: Millis,
  ) {}

  /** A plain copy for callers. */
  toLease(): Lease {
    return {
      id: this.id,
      resource: this.res.name,
      load: this.load,
      owner: this.owner,
      grantedAt: this.grantedAt,
      expiresAt: this.expiresAt,
      ttlMs: this.ttlMs,
    };
  }
}

/** A resource's live state. */
export class Resource {
  readonly name: string;
  spec: ResourceSpec;
  limits: Gcra[];
  lanes: Lane[];
  laneByName = new Map<string, Lane>();
  defaultLane: Lane;
  inFlight = 0;
  waiting = 0;
  /** System virtual time for weighted fair queuing: the start tag of the last grant. */
  vtime = 0;
  timerId: number | null = null;
  timerAt: Millis = Infinity;
  grants = 0;
  rejections = 0;
  timeouts = 0;
  cancellations = 0;
  expirations = 0;
  /** Ring of recent grant waits (grows up to WAIT_RING, then wraps). */
  waits: number[] = [];
  waitPos = 0;
  /** Bumped on each spec change. */
  epoch = 0;
  deleted = false;
  /** Scratch mark while the engine collects resources to re-evaluate. */
  dirty = false;

  constructor(spec: ResourceSpec, now: Millis) {
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

  /** Forgets virtual time once the queue is empty, so tags stay small and no lane keeps credit or debt. */
  resetVirtualTime(): void {
    this.vtime = 0;
    for (const l of this.lanes) l.finish = 0;
  }
}
