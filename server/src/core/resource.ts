// The engine's records of a resource: its limits, lanes and counters, and
// the waiting requests in its lanes. Not exported from the core's index.
import { Gcra } from "./gcra.js";
import { IndexedHeap } from "./indexed-heap.js";
import type { LazyTimer } from "./lazy-timer.js";
import type { AcquireResult, LaneSpec, LimitSpec, Millis, ResourceSpec, Ticket } from "./types.js";

/** The upper bounds of the wait buckets each lane counts grants in, ms (metrics' histogram). */
export const WAIT_BUCKETS_MS: readonly number[] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000];

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
  timeouts = 0;
  cancellations = 0;
  /** Grants per wait bucket (WAIT_BUCKETS_MS, then one for longer waits), made at the first grant. */
  waitBuckets: Float64Array | undefined;
  /** The sum of all grants' waits, ms. */
  waitSumMs = 0;
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

  /** Counts one grant's wait in its bucket (WAIT_BUCKETS_MS). */
  recordWait(ms: Millis): void {
    const buckets = (this.waitBuckets ??= new Float64Array(WAIT_BUCKETS_MS.length + 1));
    let i = 0;
    while (i < WAIT_BUCKETS_MS.length && ms > WAIT_BUCKETS_MS[i]!) i++;
    buckets[i]!++;
    this.waitSumMs += ms;
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
  /** Leases held (kept by the lease table). */
  inFlight = 0;
  waiting = 0;
  /** System virtual time for weighted fair queuing: the start tag of the last grant. */
  vtime = 0;
  grants = 0;
  /** Acquires refused at once: a full queue, or (counted in `invalid` too) an unknown lane or a load over a burst. */
  rejections = 0;
  invalid = 0;
  /** Load charged (actual above the estimate) and refunded (below) by releases. */
  loadCharged = 0;
  loadRefunded = 0;
  timeouts = 0;
  cancellations = 0;
  expirations = 0;
  /** Ring of recent grant waits (grows up to WAIT_RING, then wraps). */
  waits: number[] = [];
  waitPos = 0;
  deleted = false;
  /** Scratch mark while the engine collects resources to re-evaluate. */
  dirty = false;
  /**
   * After a takeover: leases a previous leader may have granted here after
   * its last snapshot, which this engine cannot see. They count against the
   * concurrency cap until `unknownUntil`: by then each has expired at the
   * old leader, unless heartbeated, and a heartbeat could only come here.
   */
  unknownLeases = 0;
  unknownUntil: Millis = -Infinity;
  /**
   * Until when a lease the old leader granted after the snapshot certainly
   * has not expired there (the snapshot's time + the lease TTL): heartbeated
   * here before then, it was held there at the takeover, so re-attaching it
   * takes the place of one unknown lease.
   */
  unknownStillHeldUntil: Millis = -Infinity;
  /** Names this resource in the ids of its leases, so a new leader can tell an unknown lease's resource. */
  readonly tag: string;
  /** Load granted over the resource's life here: with `grants`, what a lease's grant mark counts from. */
  loadGrantedTotal = 0;
  /** Provider feedback's state: the pause, its doubling and the throttles counted (feedback.ts). */
  pausedUntil: Millis = -Infinity;
  /** When the latest pause began or was extended: a call granted after it that is throttled again doubles the pause. */
  pauseStartedAt: Millis = -Infinity;
  /** The length of the latest pause without retry-after; 0 once a call succeeds. */
  backoffMs: Millis = 0;
  throttles = 0;
  /** The parent in a resource tree (tree.ts); undefined for a root. */
  parent: Resource | undefined = undefined;
  /** Levels above this resource: 0 for a root. */
  depth = 0;
  /** Direct children, made at the first one. */
  children: Set<Resource> | undefined = undefined;
  /** Children with waiters below them: the flows the scheduler weighs beside the lanes (lane-scheduling.ts). */
  active: Set<Resource> | undefined = undefined;
  /** Waiters in this resource and every descendant. */
  backlog = 0;
  /** Weighted fair queuing finish tag as a flow of the parent, valid while finishEpoch is the parent's epoch. */
  finish = 0;
  finishEpoch = -1;
  /** Counts resets of vtime: a child whose finishEpoch differs starts again at vtime. */
  epoch = 0;
  /** A keyed child's position in the engine's idle heap (-1: not idle), and when it may be dropped. */
  idleIndex = -1;
  dropAt: Millis = Infinity;

  /** @param rateTimer wakes the queue when its head's limits will admit it. */
  constructor(
    spec: ResourceSpec,
    now: Millis,
    readonly rateTimer: LazyTimer,
  ) {
    this.name = spec.name;
    this.tag = nameTag(spec.name);
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

  /** The unknown leases still counted at `now` (see unknownLeases). */
  unknownAt(now: Millis): number {
    return now < this.unknownUntil ? this.unknownLeases : 0;
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
    limits: s.limits.map(copyLimit),
    concurrency: s.concurrency,
    lanes: s.lanes.map((l) => ({ name: l.name, weight: l.weight })),
    defaultLane: s.defaultLane,
    leaseTtlMs: s.leaseTtlMs,
    maxQueue: s.maxQueue,
    ...(s.cooldownMs !== undefined && { cooldownMs: s.cooldownMs }),
    ...(s.learnLimits !== undefined && { learnLimits: s.learnLimits }),
    ...(s.parent !== undefined && { parent: s.parent }),
    ...(s.share !== undefined && { share: s.share }),
    ...(s.perKey !== undefined && {
      perKey: { limits: s.perKey.limits.map(copyLimit), concurrency: s.perKey.concurrency, share: s.perKey.share },
    }),
    ...(s.perKeyIdleMs !== undefined && { perKeyIdleMs: s.perKeyIdleMs }),
    ...(s.childrenFrom !== undefined && { childrenFrom: [...s.childrenFrom] }),
    ...(s.keyed === true && { keyed: true }),
  };
}

function copyLimit(l: LimitSpec): LimitSpec {
  return {
    dimension: l.dimension,
    amount: l.amount,
    periodMs: l.periodMs,
    burst: l.burst,
    ...(l.unit !== undefined && { unit: l.unit }),
  };
}

/**
 * A short, stable tag of a resource name (two 32-bit FNV-1a hashes, base 36).
 * Two names sharing a tag only make a new leader keep a slot unknown longer:
 * adopting a lease converts an unknown slot into a held one, never frees one.
 */
export function nameTag(name: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ name.length;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  return (a >>> 0).toString(36) + (b >>> 0).toString(36).padStart(7, "0");
}
