// The engine's records of a resource: its limits, lanes and counters, and
// the waiting requests in its lanes. Not exported from the core's index,
// except SpecPool, which a config file's reader uses too.
import { Gcra } from "./gcra.js";
import type { LazyTimer } from "./lazy-timer.js";
import { LaneQueue, type Bucket, type Queued } from "./lane-queue.js";
import type { AcquireResult, LaneSpec, LimitSpec, Millis, ResourceSpec, Ticket } from "./types.js";

/** The upper bounds of the wait buckets each lane counts grants in, ms (metrics' histogram). */
export const WAIT_BUCKETS_MS: readonly number[] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000];

/** The wait buckets a lane counts grants in: one per bound of WAIT_BUCKETS_MS, then one for longer waits (the literal in Lane.recordWait). */
const WAIT_BUCKET_COUNT = 16;
if (WAIT_BUCKETS_MS.length + 1 !== WAIT_BUCKET_COUNT) throw new Error("WAIT_BUCKET_COUNT must follow WAIT_BUCKETS_MS");

/** Grant waits remembered per resource for the percentiles. */
export const WAIT_RING = 1024;

/** A waiting acquire; the object itself is the caller's {@link Ticket}. */
export class Waiter implements Ticket, Queued {
  /** Its neighbours in its lane's queue (lane-queue.ts). */
  prev: Waiter | undefined = undefined;
  next: Waiter | undefined = undefined;
  bucket: Bucket | undefined = undefined;
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

/** One lane: a priority queue of waiters (itself) plus its weighted-fair-queuing finish tag (lane-scheduling.ts). */
export class Lane extends LaneQueue<Waiter> {
  /** Virtual finish tag: grants so far, in cost / weight. */
  finish = 0;
  grants = 0;
  loadGranted = 0;
  timeouts = 0;
  cancellations = 0;
  /** Grants that waited at most WAIT_BUCKETS_MS[0] (the first bucket): most do, and count here without touching the buckets. */
  shortWaits = 0;
  /** Grants per wait bucket (WAIT_BUCKETS_MS, then one for longer waits; the first counts in shortWaits), made at the first longer wait. */
  private waitBuckets: number[] | undefined;
  /** The sum of all grants' waits, ms. */
  waitSumMs = 0;

  constructor(
    readonly name: string,
    public weight: number,
  ) {
    super();
  }

  /** The waiters (the lane is their queue). */
  get queue(): LaneQueue<Waiter> {
    return this;
  }

  /** Counts one grant's wait in its bucket (WAIT_BUCKETS_MS). */
  recordWait(ms: Millis): void {
    this.waitSumMs += ms;
    if (!(ms > WAIT_BUCKETS_MS[0]!)) {
      this.shortWaits++;
      return;
    }
    const buckets = (this.waitBuckets ??= [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let i = 1;
    while (i < WAIT_BUCKETS_MS.length && ms > WAIT_BUCKETS_MS[i]!) i++;
    buckets[i]!++;
  }

  /** Grants per wait bucket: one per bound of WAIT_BUCKETS_MS, then one for longer waits. */
  waitCounts(): number[] {
    const counts = this.waitBuckets === undefined ? new Array<number>(WAIT_BUCKET_COUNT).fill(0) : this.waitBuckets.slice();
    counts[0] = this.shortWaits;
    return counts;
  }
}

/** What a resource refused and how its requests and leases ended, counted from the first such event. */
export class Tally {
  /** Acquires refused at once: a full queue, or (counted in `invalid` too) an unknown lane or a load over a burst. */
  rejections = 0;
  invalid = 0;
  timeouts = 0;
  cancellations = 0;
  expirations = 0;
  /** Load charged (actual above the estimate) and refunded (below) by releases. */
  loadCharged = 0;
  loadRefunded = 0;
}

/** Provider feedback's state beyond the pause's end (feedback.ts), from the first throttle. */
export class PauseState {
  /** When the latest pause began or was extended: a call granted after it that is throttled again doubles the pause. */
  startedAt: Millis = -Infinity;
  /** The length of the latest pause without retry-after; 0 once a call succeeds. */
  backoffMs: Millis = 0;
  throttles = 0;
}

/**
 * After a takeover: leases a previous leader may have granted on a resource
 * after its last snapshot, which this engine cannot see. They count against
 * the concurrency cap until `until`: by then each has expired at the old
 * leader, unless heartbeated, and a heartbeat could only come here.
 */
export class UnknownLeases {
  constructor(
    public count: number,
    readonly until: Millis,
    /**
     * Until when a lease the old leader granted after the snapshot certainly
     * has not expired there (the snapshot's time + the lease TTL): heartbeated
     * here before then, it was held there at the takeover, so re-attaching it
     * takes the place of one unknown lease.
     */
    readonly stillHeldUntil: Millis,
  ) {}
}

/**
 * A resource's live state.
 *
 * A resource that was only declared costs a few hundred bytes: its limits'
 * state, its lanes, its wait ring, its counters, its rate timer and its
 * lease-id tag are made when it first needs them (an acquire, a waiter, a
 * refusal, feedback), so that a million rarely used resources fit in memory.
 */
export class Resource {
  // The fields an acquire and a release read come first: declared in this
  // order, they sit together in the object, in as few cache lines as can be.
  /** The definition (set through define). */
  spec!: ResourceSpec;
  /**
   * The largest load whose cost fits every limit's burst here (NaN: none,
   * a requests limit with a burst below 1): the quick check of neverFits.
   */
  fitLoad = 0;
  /** Each limit's state, in spec order; undefined until first needed (see ownLimits), every TAT at `limitsSince` until then. */
  limits: Gcra[] | undefined = undefined;
  /** The lanes of spec.lanes, in order, and the default one; made at the first grant or waiter (see ownLanes). */
  defaultLane: Lane | undefined = undefined;
  waiting = 0;
  /** Waiters in this resource and every descendant. */
  backlog = 0;
  /** Leases held in this resource's subtree (kept by the lease table and tree.ts). */
  inFlight = 0;
  /** The parent in a resource tree (tree.ts); undefined for a root. */
  parent: Resource | undefined = undefined;
  /** Until when provider feedback paused the resource (feedback.ts). */
  pausedUntil: Millis = -Infinity;
  grants = 0;
  /** Load granted over the resource's life here: with `grants`, what a lease's grant mark counts from. */
  loadGrantedTotal = 0;
  /**
   * Recent grant waits for the percentiles: grows up to WAIT_RING, then
   * wraps at waitPos. Made at the first grant that waited at all: until
   * then, `zeroWaits` grants have each waited 0 ms, and no ring is touched.
   */
  zeroWaits = 0;
  waits: number[] | undefined = undefined;
  waitPos = 0;
  /** "." and the tag, once asked for (see idSuffix). */
  private idSuffixText: string | undefined = undefined;
  /** A keyed child's position in the engine's idle heap (-1: not idle), and when it may be dropped. */
  idleIndex = -1;
  lanes: Lane[] | undefined = undefined;
  readonly name: string;
  /** The TAT of every limit while `limits` is not made: when they were (re)defined, so all idle. */
  limitsSince: Millis = 0;
  /** System virtual time for weighted fair queuing: the start tag of the last grant. */
  vtime = 0;
  /** Weighted fair queuing finish tag as a flow of the parent, valid while finishEpoch is the parent's epoch. */
  finish = 0;
  finishEpoch = -1;
  /** Counts resets of vtime: a child whose finishEpoch differs starts again at vtime. */
  epoch = 0;
  deleted = false;
  /** Scratch mark while the engine collects resources to re-evaluate. */
  dirty = false;
  /** Levels above this resource: 0 for a root. */
  depth = 0;
  /** Direct children, made at the first one. */
  children: Set<Resource> | undefined = undefined;
  /** The direct children named "NAME/KEY", by KEY: an acquire with a key finds its child without building the name (tree.ts). */
  childrenByKey: Map<string, Resource> | undefined = undefined;
  /** Children with waiters below them: the flows the scheduler weighs beside the lanes (lane-scheduling.ts), in the order they came. */
  active: Set<Resource> | undefined = undefined;
  /** The same children as the scheduler keeps them, and this resource as one of its parent's (lane-scheduling.ts). */
  flows: ChildFlows | undefined = undefined;
  flow: Flow | undefined = undefined;
  dropAt: Millis = Infinity;
  /** Counters of refusals and ends, from the first. */
  tally: Tally | undefined = undefined;
  /** Feedback's pause doubling and throttle count, from the first throttle. */
  pause: PauseState | undefined = undefined;
  /** The leases a takeover assumes held unseen, while its window is open (takeover.ts). */
  unknown: UnknownLeases | undefined = undefined;
  /** Wakes the queue when its head's limits will admit it; made the first time a queue here waits on a rate (engine.ts). */
  rateTimer: LazyTimer | undefined = undefined;
  /** The spec of this resource's keyed children, while this resource's own spec stays (engine.ts). */
  keyedSpec: ResourceSpec | undefined = undefined;

  /** @param name its own name (a keyed child shares its spec with its siblings: the spec's name is not its). */
  constructor(name: string, spec: ResourceSpec, now: Millis) {
    this.name = name;
    this.define(spec);
    this.limitsSince = now;
  }

  /** Takes `spec` as the definition; the caller keeps the limits' and the lanes' state in step (Engine.reconfigure). */
  define(spec: ResourceSpec): void {
    this.spec = spec;
    let fit = Infinity;
    let requestsFit = true;
    for (const l of spec.limits) {
      if (l.dimension === "requests") requestsFit &&= 1 <= l.burst;
      else if (!(l.burst >= fit)) fit = l.burst;
    }
    this.fitLoad = requestsFit ? fit : NaN;
    if (this.lanes !== undefined) this.defaultLane = this.findLane(spec.defaultLane) ?? this.lanes[0];
  }

  /** Names this resource in the ids of its leases, so a new leader can tell an unknown lease's resource (see nameTag). */
  get tag(): string {
    return nameTag(this.name);
  }

  /** What ends the ids of its leases: "." and the tag (kept once a lease is granted here). */
  get idSuffix(): string {
    if (this.idSuffixText === undefined) {
      hashName(this.name);
      const b = base36(hashB >>> 0);
      this.idSuffixText = "." + base36(hashA >>> 0) + ZEROS[7 - b.length] + b;
    }
    return this.idSuffixText;
  }

  /** Each limit's state, made now if it was not yet. */
  ownLimits(): Gcra[] {
    if (this.limits === undefined) {
      // Sized at once: most resources are made in bulk, and keep these for good.
      const specs = this.spec.limits;
      const limits = new Array<Gcra>(specs.length);
      for (let i = 0; i < specs.length; i++) limits[i] = new Gcra(specs[i] as LimitSpec, this.limitsSince);
      this.limits = limits;
    }
    return this.limits;
  }

  /** Each limit's state to read: the one kept, or (not kept) as it would be made now. */
  limitStates(): readonly Gcra[] {
    return this.limits ?? this.spec.limits.map((l) => new Gcra(l, this.limitsSince));
  }

  /** The lanes to read: the ones kept, or (not kept) as they would be made now. */
  laneStates(): readonly Lane[] {
    return this.lanes ?? this.spec.lanes.map((l: LaneSpec) => new Lane(l.name, l.weight));
  }

  /** The lanes, made now if they were not yet. */
  ownLanes(): Lane[] {
    if (this.lanes === undefined) {
      const specs = this.spec.lanes;
      const lanes = new Array<Lane>(specs.length);
      for (let i = 0; i < specs.length; i++) lanes[i] = new Lane((specs[i] as LaneSpec).name, (specs[i] as LaneSpec).weight);
      this.lanes = lanes;
      // A default lane that is not among the lanes means the first.
      this.defaultLane = this.findLane(this.spec.defaultLane) ?? this.lanes[0];
    }
    return this.lanes;
  }

  /** The lane named `name` ("": the default lane), made now with the others; undefined when there is no such lane. */
  lane(name: string): Lane | undefined {
    if (name === "") return this.defaultLane ?? (this.ownLanes(), this.defaultLane);
    this.ownLanes();
    return this.findLane(name);
  }

  private findLane(name: string): Lane | undefined {
    const lanes = this.lanes as Lane[];
    for (let i = 0; i < lanes.length; i++) if ((lanes[i] as Lane).name === name) return lanes[i];
    return undefined;
  }

  /** True when spec.lanes has a lane named `name` (the lanes themselves need not be made). */
  hasLane(name: string): boolean {
    for (const l of this.spec.lanes) if (l.name === name) return true;
    return false;
  }

  /** The counters, made now if they were not yet. */
  ownTally(): Tally {
    return (this.tally ??= new Tally());
  }

  /** Records one grant's wait for the percentiles. */
  recordWait(ms: Millis): void {
    let waits = this.waits;
    if (waits === undefined) {
      if (ms === 0) {
        this.zeroWaits++;
        return;
      }
      // The ring as it would be after zeroWaits waits of 0.
      waits = this.waits = new Array<number>(Math.min(this.zeroWaits, WAIT_RING)).fill(0);
      this.waitPos = this.zeroWaits <= WAIT_RING ? 0 : this.zeroWaits % WAIT_RING;
    }
    if (waits.length < WAIT_RING) waits.push(ms);
    else {
      waits[this.waitPos] = ms;
      this.waitPos = (this.waitPos + 1) % WAIT_RING;
    }
  }

  /** The unknown leases still counted at `now` (see UnknownLeases). */
  unknownAt(now: Millis): number {
    const u = this.unknown;
    return u !== undefined && now < u.until ? u.count : 0;
  }

  /** The waits the ring holds, in no particular order. */
  recentWaits(): number[] {
    return this.waits === undefined ? new Array<number>(Math.min(this.zeroWaits, WAIT_RING)).fill(0) : this.waits.slice();
  }

  /** Every waiter of every lane, in arrival order. */
  waitersByArrival(): Waiter[] {
    const all: Waiter[] = [];
    if (this.lanes !== undefined) for (const l of this.lanes) all.push(...l.queue.toArray());
    return all.sort((a, b) => a.seq - b.seq);
  }
}

/** A deep copy of a spec (named `name`, by default its own): the engine never shares one with its callers. */
export function copySpec(s: ResourceSpec, name = s.name): ResourceSpec {
  return specWith(s, name, s.limits.map(copyLimit), s.lanes.map(copyLane), s.perKey?.limits.map(copyLimit));
}

/**
 * A copy of `s` around the given lists. Built field by field in the spec's
 * order, optional fields only when set: a spec without them is a small
 * object of seven fields.
 */
function specWith(s: ResourceSpec, name: string, limits: LimitSpec[], lanes: LaneSpec[], perKeyLimits: LimitSpec[] | undefined): ResourceSpec {
  const c: ResourceSpec = {
    name,
    limits,
    concurrency: s.concurrency,
    lanes,
    defaultLane: s.defaultLane,
    leaseTtlMs: s.leaseTtlMs,
    maxQueue: s.maxQueue,
  };
  if (s.cooldownMs !== undefined) c.cooldownMs = s.cooldownMs;
  if (s.learnLimits !== undefined) c.learnLimits = s.learnLimits;
  if (s.parent !== undefined) c.parent = s.parent;
  if (s.share !== undefined) c.share = s.share;
  if (s.perKey !== undefined) c.perKey = { limits: perKeyLimits as LimitSpec[], concurrency: s.perKey.concurrency, share: s.perKey.share };
  if (s.perKeyIdleMs !== undefined) c.perKeyIdleMs = s.perKeyIdleMs;
  if (s.childrenFrom !== undefined) c.childrenFrom = [...s.childrenFrom];
  if (s.keyed === true) c.keyed = true;
  return c;
}

/** A copy of a limit with only the LimitSpec fields. */
export function copyLimit(l: LimitSpec): LimitSpec {
  const c: LimitSpec = { dimension: l.dimension, amount: l.amount, periodMs: l.periodMs, burst: l.burst };
  if (l.unit !== undefined) c.unit = l.unit;
  return c;
}

function copyLane(l: LaneSpec): LaneSpec {
  return { name: l.name, weight: l.weight };
}

/** Distinct lists remembered by a SpecPool: past this many, new ones are copied without being shared. */
const POOL_CAPACITY = 10_000;

/**
 * Copies of specs with equal lists of limits and of lanes shared: a million
 * resources declared alike hold one list of each (and their limits one rate
 * each: gcra.ts). The engine keeps its specs this way; it never changes a
 * spec in place nor hands one out (it gives copies), so sharing is
 * invisible. A config file's specs are made this way too (config.ts): no
 * reader of a Config changes one in place either.
 */
export class SpecPool {
  private readonly limitLists = new Map<string, LimitSpec[]>();
  private readonly laneLists = new Map<string, LaneSpec[]>();
  /** The lists last handed out: resources put in bulk are mostly alike, and are checked against these first. */
  private lastLimits: LimitSpec[] = [];
  private lastLanes: LaneSpec[] = [];

  /** A copy of `s` for the engine to keep, its lists shared with equal ones seen before. */
  own(s: ResourceSpec): ResourceSpec {
    return specWith(s, s.name, this.limitsOf(s.limits), this.lanesOf(s.lanes), s.perKey === undefined ? undefined : this.limitsOf(s.perKey.limits));
  }

  private limitsOf(limits: LimitSpec[]): LimitSpec[] {
    if (sameLists(limits, this.lastLimits, sameLimit)) return this.lastLimits;
    let key = "";
    for (const l of limits) key += `${l.dimension} ${num(l.amount)} ${num(l.periodMs)} ${num(l.burst)} ${l.unit === undefined ? "-" : JSON.stringify(l.unit)};`;
    return (this.lastLimits = shared(this.limitLists, key, () => limits.map(copyLimit)));
  }

  private lanesOf(lanes: LaneSpec[]): LaneSpec[] {
    if (sameLists(lanes, this.lastLanes, sameLane)) return this.lastLanes;
    let key = "";
    for (const l of lanes) key += `${JSON.stringify(l.name)} ${num(l.weight)};`;
    return (this.lastLanes = shared(this.laneLists, key, () => lanes.map(copyLane)));
  }
}

function sameLists<T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!same(a[i] as T, b[i] as T)) return false;
  return true;
}

function sameLimit(x: LimitSpec, y: LimitSpec): boolean {
  return x.dimension === y.dimension && Object.is(x.amount, y.amount) && Object.is(x.periodMs, y.periodMs) && Object.is(x.burst, y.burst) && x.unit === y.unit;
}

function sameLane(x: LaneSpec, y: LaneSpec): boolean {
  return x.name === y.name && Object.is(x.weight, y.weight);
}

/** A number as a key: every double its own (-0 too). */
function num(x: number): string {
  return Object.is(x, -0) ? "-0" : String(x);
}

function shared<T>(pool: Map<string, T>, key: string, copy: () => T): T {
  const known = pool.get(key);
  if (known !== undefined) return known;
  const value = copy();
  if (pool.size < POOL_CAPACITY) pool.set(key, value);
  return value;
}

/**
 * A short, stable tag of a resource name (two 32-bit FNV-1a hashes, base 36).
 * Two names sharing a tag only make a new leader keep a slot unknown longer:
 * adopting a lease converts an unknown slot into a held one, never frees one.
 */
export function nameTag(name: string): string {
  hashName(name);
  return tagOfHashes();
}

/** The tag of the hashes hashName left: hashA in base 36, then hashB in base 36 on 7 digits (as toString(36) and padStart write them). */
function tagOfHashes(): string {
  const b = base36(hashB >>> 0);
  return base36(hashA >>> 0) + ZEROS[7 - b.length] + b;
}

/** The numbers below 36^2 as toString(36) writes them, and on two digits: base 36 without calling toString, several times faster. */
export const SHORT_DIGITS: readonly string[] = Array.from({ length: 36 * 36 }, (_, i) => i.toString(36));
export const DIGIT_PAIRS: readonly string[] = SHORT_DIGITS.map((d) => d.padStart(2, "0"));
const ZEROS = ["", "0", "00", "000", "0000", "00000", "000000", "0000000"];

/** A non-negative integer (below 2^53) as toString(36) writes it. */
export function base36(n: number): string {
  if (n < 36 * 36) return SHORT_DIGITS[n] as string;
  const low = n % (36 * 36);
  return base36((n - low) / (36 * 36)) + DIGIT_PAIRS[low];
}

let hashA = 0;
let hashB = 0;

/** Sets hashA and hashB to the two hashes of nameTag. */
function hashName(name: string): void {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ name.length;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  hashA = a;
  hashB = b;
}

/**
 * Resources by the tag their lease ids end with, as a Map from tag to
 * resource would hold them (the last one put under a tag wins), without a
 * tag string per resource: they are kept by the tag's second hash (its last
 * seven characters), and the few that share one are told apart by their tags.
 */
export class ResourcesByTag {
  private readonly byHash = new Map<number, Resource | Resource[]>();

  /** Files r under its tag, in place of any other resource with that tag. */
  set(r: Resource): void {
    hashName(r.name);
    const key = hashB | 0;
    const held = this.byHash.get(key);
    if (held === undefined) this.byHash.set(key, r);
    else if (!Array.isArray(held)) this.byHash.set(key, held === r || held.tag === r.tag ? r : [held, r]);
    else {
      const i = held.findIndex((x) => x === r || x.tag === r.tag);
      if (i >= 0) held[i] = r;
      else held.push(r);
    }
  }

  /** Forgets r, if it is the one filed under its tag. */
  delete(r: Resource): void {
    hashName(r.name);
    const key = hashB | 0;
    const held = this.byHash.get(key);
    if (held === r) this.byHash.delete(key);
    else if (Array.isArray(held)) {
      const i = held.indexOf(r);
      if (i < 0) return;
      held.splice(i, 1);
      if (held.length === 1) this.byHash.set(key, held[0] as Resource);
    }
  }

  /** The resource filed under `tag`, or undefined. */
  get(tag: string): Resource | undefined {
    const held = this.byHash.get(parseInt(tag.slice(-7), 36) | 0);
    if (held === undefined) return undefined;
    if (!Array.isArray(held)) return held.tag === tag ? held : undefined;
    return held.find((x) => x.tag === tag);
  }

  clear(): void {
    this.byHash.clear();
  }
}

/** A child with waiters below it, as one of its parent's flows (from when it has waiters until it has none). */
export interface Flow {
  /** Its place in the order the parent's children came to have waiters: ties between children go by it. */
  readonly rank: number;
  /** A plain child's next waiter and key (its finish tag plus that waiter's cost), and its place in the parent's heap; -1: weighed one by one. */
  offer: Waiter | undefined;
  key: number;
  index: number;
}

/**
 * A parent's children with waiters (the same as Resource.active, which
 * keeps them in rank order): the plain ones in a binary heap by (key,
 * rank), the others in a set.
 */
export class ChildFlows {
  readonly heap: Resource[] = [];
  readonly others = new Set<Resource>();
  private ranks = 0;

  nextRank(): number {
    return ++this.ranks;
  }
}
