// The limiter engine: resources, their GCRA limits, lanes and queues, leases
// and timers. Pure and synchronous; time comes from the injected Clock.
//
// A call's path: settle() first applies whatever fell due (lease expiries,
// request deadlines) at clock.now(); the call changes state; pump() grants
// from the affected queues as far as they fit; finally flush() delivers the
// collected callbacks. Callbacks therefore always see a consistent engine and
// may call back into it.
import { Gcra } from "./gcra.js";
import { IndexedHeap } from "./indexed-heap.js";
import { Lane, LeaseRecord, MIN_VIRTUAL_COST, Resource, Waiter } from "./resource.js";
import { type Ended, Tombstones } from "./tombstones.js";
import type { EngineSnapshot, ResourceSnapshot, RestoreOptions } from "./snapshot.js";
import type {
  AcquireRequest,
  AcquireResult,
  Clock,
  Failure,
  FailureCode,
  HeartbeatResult,
  Lease,
  LimitSpec,
  Millis,
  NextWaiting,
  ReleaseOutcome,
  ResourceSpec,
  ResourceStats,
  Ticket,
  TimerId,
} from "./types.js";

/** Options of {@link Engine}. */
export interface EngineOptions {
  /** Where time comes from: systemClock in production, a SimulatedClock in tests. */
  clock: Clock;
  /** Called once for each lease that expires unheartbeated (after the engine has freed it). */
  onLeaseExpired?: (lease: Lease) => void;
  /** Makes lease ids; they must be unique for the server's lifetime, across restores. */
  newLeaseId?: () => string;
  /** How many ended lease ids are remembered to tell "already released"/"expired" from "unknown". Default 100 000. */
  tombstoneCapacity?: number;
  /** Receives exceptions thrown by callbacks; the default rethrows them asynchronously. */
  onCallbackError?: (err: unknown) => void;
  /**
   * The engine grants nothing at or after this time (a group leader's lease
   * deadline, checked on every grant whatever triggered it). Default: never.
   */
  grantDeadline?: () => Millis;
}

const FAILED_AT_ONCE = null;

/** Formats a period for messages: 60000 -> "60s", 250 -> "250ms". */
function formatPeriod(ms: Millis): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function describeLimit(l: LimitSpec, i: number): string {
  return `limit ${i + 1} (${l.dimension} ${l.amount} per ${formatPeriod(l.periodMs)})`;
}

function failure(code: FailureCode, message: string): AcquireResult {
  const f: Failure = { code, message };
  return { ok: false, failure: f };
}

function copySpec(s: ResourceSpec): ResourceSpec {
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

function nearestRank(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] as number;
}

/**
 * The rate-limit engine. One instance serves every resource of a server.
 *
 * Guarantees, for every resource: a GCRA limit never lets more than
 * `burst + t * amount / periodMs` units be granted in any interval of t ms
 * (counting load reconciliations where they happen); leases in flight never
 * exceed the concurrency cap (a cap lowered live blocks grants until below);
 * and the engine is work-conserving: whenever the request chosen to go next
 * fits, it is granted at once.
 *
 * Not thread-safe, nor does it need to be: every method is synchronous.
 */
export class Engine {
  private readonly clock: Clock;
  private readonly onLeaseExpired: ((lease: Lease) => void) | undefined;
  private readonly newLeaseId: () => string;
  private readonly onCallbackError: (err: unknown) => void;
  private readonly resources = new Map<string, Resource>();
  private readonly leases = new Map<string, LeaseRecord>();
  private readonly deadlines = new IndexedHeap<Waiter>(
    (a, b) => a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq),
    (w) => w.deadlineIndex,
    (w, i) => {
      w.deadlineIndex = i;
    },
  );
  private readonly expiries = new IndexedHeap<LeaseRecord>(
    (a, b) => a.expiresAt < b.expiresAt,
    (l) => l.index,
    (l, i) => {
      l.index = i;
    },
  );
  private deadlineTimer: TimerId | null = null;
  private deadlineTimerAt: Millis = Infinity;
  private expiryTimer: TimerId | null = null;
  private expiryTimerAt: Millis = Infinity;
  private readonly tombstones: Tombstones;
  /** The default id generator's prefix; its ids carry a serial the tombstones index by. */
  private readonly idPrefix: string | undefined;
  private leaseSerial = 0;
  /** Pending deliveries as [fn, arg, fn, arg, ...], delivered in order by flush(). */
  private readonly outbox: unknown[] = [];
  private outHead = 0;
  private seq = 0;
  private waitingTotal = 0;
  private heldLeases = 0;
  private closedMessage: string | undefined;
  private readonly grantDeadline: () => Millis;
  private readonly dirtyList: Resource[] = [];

  /** Creates an engine with no resources. */
  constructor(options: EngineOptions) {
    this.clock = options.clock;
    this.onLeaseExpired = options.onLeaseExpired;
    this.grantDeadline = options.grantDeadline ?? (() => Infinity);
    if (options.newLeaseId !== undefined) this.newLeaseId = options.newLeaseId;
    else {
      // A random prefix per engine keeps ids unique across restarts and
      // failover without reading any external state.
      const prefix = Math.floor(Math.random() * 36 ** 8)
        .toString(36)
        .padStart(8, "0");
      this.idPrefix = prefix + "-";
      this.newLeaseId = () => prefix + "-" + this.leaseSerial.toString(36);
    }
    this.onCallbackError =
      options.onCallbackError ??
      ((err) =>
        queueMicrotask(() => {
          throw err;
        }));
    this.tombstones = new Tombstones(Math.max(0, options.tombstoneCapacity ?? 100_000));
  }

  // ---------------------------------------------------------------- resources

  /**
   * Creates a resource or replaces its definition, effective at once.
   *
   * On replace: a limit of the same dimension and period keeps its debt in
   * units (repaid at the new rate); other limits start unused; held leases
   * keep counting against the new concurrency; waiters of a removed lane
   * move to the default lane; waiters whose cost now exceeds a burst fail
   * with INVALID_ARGUMENT; then the queue is re-evaluated.
   */
  putResource(spec: ResourceSpec): { created: boolean } {
    const now = this.clock.now();
    this.settle(now);
    const s = copySpec(spec);
    let r = this.resources.get(s.name);
    const created = r === undefined;
    if (r === undefined) {
      r = new Resource(s, now);
      this.resources.set(s.name, r);
    } else {
      this.reconfigure(r, s, now);
    }
    this.pump(r, now);
    this.flush();
    return { created };
  }

  /** The resource's definition, or undefined. */
  getResource(name: string): ResourceSpec | undefined {
    const r = this.resources.get(name);
    return r && copySpec(r.spec);
  }

  /** Every resource's definition, ordered by name. */
  listResources(): ResourceSpec[] {
    return [...this.resources.keys()].sort().map((n) => copySpec((this.resources.get(n) as Resource).spec));
  }

  /**
   * Removes a resource. Its waiters fail with NOT_FOUND; its leases end
   * silently (a later release of one says "unknown"). False when unknown.
   */
  deleteResource(name: string): boolean {
    const now = this.clock.now();
    this.settle(now);
    const r = this.resources.get(name);
    if (r === undefined) return false;
    this.failAllWaiters(r, "NOT_FOUND", `resource '${name}' was deleted`);
    for (const rec of this.leases.values()) {
      if (rec.res !== r) continue;
      this.leases.delete(rec.id);
      this.expiries.remove(rec);
      this.heldLeases--;
    }
    r.inFlight = 0;
    r.deleted = true;
    this.clearRateTimer(r);
    this.resources.delete(name);
    this.flush();
    return true;
  }

  // ----------------------------------------------------------------- acquire

  /**
   * Asks for a lease. Returns null when the request resolved at once (grant
   * or failure; onResult has then already been called); otherwise a ticket,
   * and onResult is called exactly once later.
   *
   * Fails at once with NOT_FOUND (unknown resource), INVALID_ARGUMENT
   * (unknown lane; a cost above some limit's burst), RESOURCE_EXHAUSTED
   * (queue full), DEADLINE_EXCEEDED (deadline not after now and no grant at
   * once) or UNAVAILABLE (after shutdown). A new request is granted at once
   * only if it is the one the queue would serve next and it fits.
   */
  acquire(req: AcquireRequest, onResult: (r: AcquireResult) => void): Ticket | null {
    const now = this.clock.now();
    this.settle(now);
    const r = this.resources.get(req.resource);
    const refusal = this.refusal(r, req);
    if (refusal !== undefined) {
      this.post(onResult, refusal);
      this.flush();
      return FAILED_AT_ONCE;
    }
    const res = r as Resource;
    const lane = req.lane === "" ? res.defaultLane : (res.laneByName.get(req.lane) as Lane);
    if (res.waiting === 0 && this.roomFor(res) && this.readyAt(res, req.load, now) <= now) {
      // Fast path: an empty queue would serve this request first anyway
      // (and with no waiter, every finish tag is already reset).
      this.grant(res, lane, req.load, req.owner, now, onResult, now);
      this.flush();
      return null;
    }
    const deadline = req.deadline ?? Infinity;
    const w = new Waiter(this.seq++, res, lane, req.load, req.priority, deadline, req.owner, now, onResult);
    this.enqueue(res, w);
    this.pump(res, now);
    if (!w.decided && deadline <= now) {
      this.removeWaiter(w);
      res.timeouts++;
      this.post(onResult, this.timeoutFailure(w, now));
      this.pump(res, now);
    }
    this.flush();
    return w.decided ? null : w;
  }

  /**
   * Withdraws a waiting request at once: onResult gets CANCELLED. False when
   * the request was already decided (granted, failed or cancelled).
   */
  cancel(ticket: Ticket): boolean {
    // Only a live ticket of this engine (not another engine's).
    if (!(ticket instanceof Waiter) || ticket.decided || this.resources.get(ticket.res.name) !== ticket.res) return false;
    const now = this.clock.now();
    this.settle(now);
    if (ticket.decided) {
      this.flush();
      return false;
    }
    const r = ticket.res;
    this.removeWaiter(ticket);
    r.cancellations++;
    this.post(ticket.onResult, failure("CANCELLED", `acquire on '${r.name}' was cancelled`));
    this.pump(r, now);
    this.flush();
    return true;
  }

  // ------------------------------------------------------------------ leases

  /**
   * Ends a lease and frees its concurrency slot. With `actualLoad`, the
   * resource's load limits are charged or refunded by actualLoad - load
   * (request limits are untouched).
   */
  release(leaseId: string, actualLoad?: number): ReleaseOutcome {
    const now = this.clock.now();
    this.settle(now);
    const rec = this.leases.get(leaseId);
    if (rec === undefined) {
      this.flush();
      const t = this.tombstones.get(leaseId, this.serialOf(leaseId));
      return t === "released" ? "already_released" : t === "expired" ? "expired" : "unknown";
    }
    this.expiries.remove(rec);
    this.endLease(rec, "released");
    const r = rec.res;
    if (actualLoad !== undefined && actualLoad !== rec.load) {
      const delta = actualLoad - rec.load;
      for (const g of r.limits) if (g.spec.dimension === "load") g.adjust(delta);
    }
    if (r.waiting > 0) this.pump(r, now);
    this.flush();
    return "released";
  }

  /** Extends each held lease to now + its resource's lease TTL; others come back held: false. */
  heartbeat(leaseIds: string[]): HeartbeatResult[] {
    const now = this.clock.now();
    this.settle(now);
    const out: HeartbeatResult[] = [];
    for (const id of leaseIds) {
      const rec = this.leases.get(id);
      if (rec === undefined) {
        out.push({ leaseId: id, held: false });
        continue;
      }
      rec.ttlMs = rec.res.spec.leaseTtlMs;
      rec.expiresAt = now + rec.ttlMs;
      this.expiries.update(rec);
      out.push({ leaseId: id, held: true, expiresAt: rec.expiresAt });
    }
    this.flush();
    return out;
  }

  // ------------------------------------------------------------ introspection

  /** A resource's live statistics, or undefined. */
  stats(name: string): ResourceStats | undefined {
    const r = this.resources.get(name);
    if (r === undefined) return undefined;
    const now = this.clock.now();
    const sorted = r.waits.slice().sort((a, b) => a - b);
    return {
      name,
      leasesInFlight: r.inFlight,
      lanes: r.lanes.map((l) => ({
        name: l.name,
        weight: l.weight,
        queueDepth: l.queue.size,
        grants: l.grants,
        loadGranted: l.loadGranted,
      })),
      limits: r.limits.map((g) => {
        const available = g.available(now);
        return { limit: { ...g.spec }, available, utilisation: 1 - available / g.spec.burst };
      }),
      grants: r.grants,
      rejections: r.rejections,
      timeouts: r.timeouts,
      cancellations: r.cancellations,
      expirations: r.expirations,
      waitP50Ms: nearestRank(sorted, 0.5),
      waitP90Ms: nearestRank(sorted, 0.9),
      waitP99Ms: nearestRank(sorted, 0.99),
      waitMaxMs: sorted.length ? (sorted[sorted.length - 1] as number) : 0,
    };
  }

  /** The resource a held lease is on; undefined when no such lease is held. */
  leaseResource(leaseId: string): string | undefined {
    return this.leases.get(leaseId)?.res.name;
  }

  /** The request the resource will serve next and what blocks it; undefined when none waits. */
  nextWaiting(name: string): NextWaiting | undefined {
    const r = this.resources.get(name);
    if (r === undefined || r.waiting === 0) return undefined;
    const lane = this.chooseLane(r);
    const w = lane.queue.peek() as Waiter;
    const readyAt = this.readyAt(r, w.load, this.clock.now());
    return {
      ticket: w,
      lane: lane.name,
      load: w.load,
      priority: w.priority,
      waitingSinceMs: w.enqueuedAt,
      blockedBy: this.roomFor(r) ? "rate" : "concurrency",
      readyAt,
    };
  }

  /** Leases held, across resources. */
  leaseCount(): number {
    return this.heldLeases;
  }

  /** Requests waiting, across resources. */
  waiterCount(): number {
    return this.waitingTotal;
  }

  // --------------------------------------------------------------- lifecycle

  /**
   * Graceful shutdown: every waiter fails with UNAVAILABLE and `message`, and
   * so does every later acquire. Leases stay (releases and heartbeats still work).
   */
  shutdown(message: string): void {
    const now = this.clock.now();
    this.settle(now);
    this.closedMessage = message;
    for (const r of this.resources.values()) {
      this.failAllWaiters(r, "UNAVAILABLE", message);
      this.clearRateTimer(r);
    }
    this.flush();
  }

  /**
   * Stops granting at once without failing anyone: new acquires fail
   * UNAVAILABLE with `message`, waiters stay queued (and are never granted)
   * until cancelled or until shutdown() fails them. A leader that loses its
   * lease suspends first, so that worker streams can withdraw their waiters
   * (clients re-send them to the new leader) without a withdrawal granting
   * the next waiter. restore() reopens a suspended engine.
   */
  suspend(message: string): void {
    this.closedMessage = message;
  }

  /** The engine's state as plain JSON values (waiters excluded). */
  snapshot(): EngineSnapshot {
    const now = this.clock.now();
    const resources: ResourceSnapshot[] = [];
    for (const name of [...this.resources.keys()].sort()) {
      const r = this.resources.get(name) as Resource;
      resources.push({
        spec: copySpec(r.spec),
        tats: r.limits.map((g) => g.tat),
        counters: {
          grants: r.grants,
          rejections: r.rejections,
          timeouts: r.timeouts,
          cancellations: r.cancellations,
          expirations: r.expirations,
        },
        lanes: r.lanes.map((l) => ({ name: l.name, grants: l.grants, loadGranted: l.loadGranted })),
      });
    }
    const leases: Lease[] = [];
    for (const rec of this.leases.values()) leases.push(rec.toLease());
    return { version: 1, takenAt: now, resources, leases };
  }

  /**
   * Replaces the engine's state with a snapshot. Current waiters fail with
   * UNAVAILABLE; leases already past their expiry expire at once. A restore
   * also reopens an engine closed by shutdown(): a node that stopped granting
   * when it lost its leadership lease resumes from the restored state.
   *
   * `notBefore` makes a new leader conservative after failover. The old
   * leader may have granted more after its last snapshot, up to notBefore
   * (when it is known to have stopped). A GCRA grant at time t is admitted
   * only if the TAT after it is <= t + burst*T, and between grants TAT only
   * falls by refunds; so whatever the old leader did, its TAT at notBefore
   * was at most notBefore + burst*T (ignoring overcharges from releases it
   * never told us about). Starting each limit at TAT = max(snapshotTAT,
   * notBefore + burst*T) means our TAT is at least the true one from then on
   * (GCRA updates are monotone in TAT), so the old and new grants together
   * form one GCRA-conforming sequence and the window bound
   * burst + t*amount/period holds across the handover. The price is at most
   * one burst of under-use. Concurrency is not covered: leases granted after
   * the snapshot are unknown here.
   */
  restore(s: EngineSnapshot, options: RestoreOptions = {}): void {
    const now = this.clock.now();
    for (const r of this.resources.values()) {
      this.failAllWaiters(r, "UNAVAILABLE", "the engine's state was replaced by a restore; retry");
      this.clearRateTimer(r);
      r.deleted = true;
    }
    this.resources.clear();
    this.leases.clear();
    this.expiries.clear();
    this.heldLeases = 0;
    this.tombstones.clear();
    this.closedMessage = undefined;
    const notBefore = options.notBefore;
    for (const rs of s.resources) {
      const r = new Resource(copySpec(rs.spec), now);
      r.limits.forEach((g, i) => {
        let tat = rs.tats[i] ?? now;
        if (notBefore !== undefined) tat = Math.max(tat, notBefore + g.tolerance);
        g.tat = tat;
      });
      r.grants = rs.counters.grants;
      r.rejections = rs.counters.rejections;
      r.timeouts = rs.counters.timeouts;
      r.cancellations = rs.counters.cancellations;
      r.expirations = rs.counters.expirations;
      for (const ls of rs.lanes) {
        const lane = r.laneByName.get(ls.name);
        if (lane) {
          lane.grants = ls.grants;
          lane.loadGranted = ls.loadGranted;
        }
      }
      this.resources.set(r.name, r);
    }
    for (const l of s.leases) {
      const r = this.resources.get(l.resource);
      if (r === undefined) continue;
      const graceEnd = options.leaseGraceFrom === undefined ? l.expiresAt : options.leaseGraceFrom + l.ttlMs;
      const rec = new LeaseRecord(l.id, r, l.load, l.owner, l.grantedAt, Math.max(l.expiresAt, graceEnd), l.ttlMs);
      this.leases.set(l.id, rec);
      this.expiries.push(rec);
      this.heldLeases++;
      r.inFlight++;
    }
    this.armExpiryTimer();
    this.settle(now);
    this.flush();
  }

  // ------------------------------------------------------------- internals

  /** Why a request is refused at once, or undefined. Counts the refusal. */
  private refusal(r: Resource | undefined, req: AcquireRequest): AcquireResult | undefined {
    if (this.closedMessage !== undefined) return failure("UNAVAILABLE", this.closedMessage);
    if (r === undefined) return failure("NOT_FOUND", `resource '${req.resource}' not found`);
    if (req.lane !== "" && !r.laneByName.has(req.lane)) {
      r.rejections++;
      const valid = r.lanes.map((l) => l.name).join(", ");
      return failure("INVALID_ARGUMENT", `lane '${req.lane}' is not a lane of '${r.name}'; valid lanes: ${valid}`);
    }
    const never = this.neverFits(r, req.load);
    if (never !== undefined) {
      r.rejections++;
      return failure("INVALID_ARGUMENT", never);
    }
    if (r.waiting >= r.spec.maxQueue) {
      r.rejections++;
      return failure("RESOURCE_EXHAUSTED", `queue of '${r.name}' is full (${r.waiting} waiting)`);
    }
    return undefined;
  }

  /** A message when `load` exceeds some limit's burst (it can never be granted). */
  private neverFits(r: Resource, load: number): string | undefined {
    for (let i = 0; i < r.limits.length; i++) {
      const g = r.limits[i] as Gcra;
      const c = g.cost(load);
      if (!g.canEverFit(c)) {
        const what = g.spec.dimension === "load" ? `load ${load}` : "a request's cost of 1";
        return `${what} exceeds the burst ${g.spec.burst} of ${describeLimit(g.spec, i)}; it can never be granted`;
      }
    }
    return undefined;
  }

  private roomFor(r: Resource): boolean {
    const cap = r.spec.concurrency;
    return cap <= 0 || r.inFlight < cap;
  }

  /** The time from which every limit admits `load` (<= now: it fits now). */
  private readyAt(r: Resource, load: number, now: Millis): Millis {
    let at = -Infinity;
    const limits = r.limits;
    for (let i = 0; i < limits.length; i++) {
      const g = limits[i] as Gcra;
      const t = g.readyAt(g.spec.dimension === "requests" ? 1 : load, now);
      if (t > at) at = t;
    }
    return at;
  }

  /** The lane to serve next: smallest finish + cost / weight among non-empty lanes (ties: lane order). */
  private chooseLane(r: Resource): Lane {
    const lanes = r.lanes;
    if (lanes.length === 1) return lanes[0] as Lane;
    let best: Lane | undefined;
    let bestKey = Infinity;
    for (let i = 0; i < lanes.length; i++) {
      const l = lanes[i] as Lane;
      const head = l.queue.peek();
      if (head === undefined) continue;
      const key = l.finish + Math.max(head.load, MIN_VIRTUAL_COST) / l.weight;
      if (best === undefined || key < bestKey) {
        best = l;
        bestKey = key;
      }
    }
    return best as Lane;
  }

  /**
   * Grants from the queue while its chosen head fits. The head is served
   * strictly: when it does not fit, nothing behind it is granted. Arms the
   * resource's timer for the exact time the head's limits allow it; a head
   * blocked by concurrency waits for a release or expiry instead.
   */
  private pump(r: Resource, now: Millis): void {
    // Suspended, shut down, or past the leader's deadline: grants nothing.
    if (this.closedMessage !== undefined || now >= this.grantDeadline()) return;
    while (r.waiting > 0) {
      if (!this.roomFor(r)) return;
      const lane = this.chooseLane(r);
      const w = lane.queue.peek() as Waiter;
      const at = this.readyAt(r, w.load, now);
      if (at > now) {
        this.armRateTimer(r, at);
        return;
      }
      this.removeWaiter(w);
      // Weighted fair queuing: the system virtual time is the start tag of
      // the request in service; the lane's finish tag advances by cost/weight.
      if (lane.finish > r.vtime) r.vtime = lane.finish;
      lane.finish += Math.max(w.load, MIN_VIRTUAL_COST) / lane.weight;
      this.grant(r, lane, w.load, w.owner, w.enqueuedAt, w.onResult, now);
    }
  }

  /** Charges the limits, creates the lease and posts the grant (the request is no longer queued). */
  private grant(
    r: Resource,
    lane: Lane,
    load: number,
    owner: string,
    since: Millis,
    onResult: (r: AcquireResult) => void,
    now: Millis,
  ): void {
    const limits = r.limits;
    for (let i = 0; i < limits.length; i++) {
      const g = limits[i] as Gcra;
      g.charge(g.spec.dimension === "requests" ? 1 : load, now);
    }
    r.inFlight++;
    const ttl = r.spec.leaseTtlMs;
    const serial = ++this.leaseSerial;
    const rec = new LeaseRecord(this.newLeaseId(), r, load, owner, now, now + ttl, ttl);
    if (this.idPrefix !== undefined) rec.serial = serial;
    this.leases.set(rec.id, rec);
    this.heldLeases++;
    this.expiries.push(rec);
    if (rec.expiresAt < this.expiryTimerAt) this.armExpiryTimer();
    r.grants++;
    lane.grants++;
    lane.loadGranted += load;
    const waited = now - since;
    r.recordWait(waited);
    this.post(onResult, { ok: true, grant: { lease: rec.toLease(), waitedMs: waited } });
  }

  private enqueue(r: Resource, w: Waiter): void {
    const lane = w.lane;
    // A lane that was idle starts at the system virtual time: no banked credit.
    if (lane.queue.size === 0 && lane.finish < r.vtime) lane.finish = r.vtime;
    lane.queue.push(w);
    r.waiting++;
    this.waitingTotal++;
    if (w.deadline !== Infinity) {
      this.deadlines.push(w);
      if (w.deadline < this.deadlineTimerAt) this.armDeadlineTimer();
    }
  }

  /** Takes a waiter out of its queue and the deadline heap and marks it decided. */
  private removeWaiter(w: Waiter): void {
    const r = w.res;
    w.lane.queue.remove(w);
    if (w.deadlineIndex >= 0) this.deadlines.remove(w);
    w.decided = true;
    r.waiting--;
    this.waitingTotal--;
    if (r.waiting === 0) r.resetVirtualTime();
  }

  private failAllWaiters(r: Resource, code: FailureCode, message: string): void {
    if (r.waiting === 0) return;
    const all: Waiter[] = [];
    for (const l of r.lanes) all.push(...l.queue.toArray());
    all.sort((a, b) => a.seq - b.seq);
    for (const w of all) {
      this.removeWaiter(w);
      this.post(w.onResult, failure(code, message));
    }
  }

  private timeoutFailure(w: Waiter, now: Millis): AcquireResult {
    return failure(
      "DEADLINE_EXCEEDED",
      `waited ${Math.round(now - w.enqueuedAt)} ms for '${w.res.name}'; no slot was free before the deadline`,
    );
  }

  private reconfigure(r: Resource, spec: ResourceSpec, now: Millis): void {
    // Limits: keep the state of one with the same dimension and period.
    const old = r.limits.slice();
    r.limits = spec.limits.map((ls) => {
      const i = old.findIndex((g) => g.spec.dimension === ls.dimension && g.spec.periodMs === ls.periodMs);
      if (i < 0) return new Gcra(ls, now);
      const g = old[i] as Gcra;
      old.splice(i, 1);
      g.reconfigure(ls, now);
      return g;
    });
    // Lanes: keep by name; waiters of removed lanes move to the default lane.
    const oldLanes = r.lanes;
    r.lanes = spec.lanes.map((ls) => {
      const l = r.laneByName.get(ls.name);
      if (l === undefined) return new Lane(ls.name, ls.weight);
      l.weight = ls.weight;
      return l;
    });
    r.laneByName = new Map(r.lanes.map((l) => [l.name, l]));
    r.defaultLane = r.laneByName.get(spec.defaultLane) ?? (r.lanes[0] as Lane);
    r.spec = spec;
    r.epoch++;
    const moved: Waiter[] = [];
    for (const l of oldLanes) if (r.laneByName.get(l.name) !== l) moved.push(...l.queue.clear());
    moved.sort((a, b) => a.seq - b.seq);
    for (const w of moved) {
      const lane = r.defaultLane;
      if (lane.queue.size === 0 && lane.finish < r.vtime) lane.finish = r.vtime;
      w.lane = lane;
      lane.queue.push(w);
    }
    // Waiters that can no longer ever fit fail now rather than wait forever.
    if (r.waiting > 0) {
      const all: Waiter[] = [];
      for (const l of r.lanes) all.push(...l.queue.toArray());
      all.sort((a, b) => a.seq - b.seq);
      for (const w of all) {
        const never = this.neverFits(r, w.load);
        if (never === undefined) continue;
        this.removeWaiter(w);
        this.post(w.onResult, failure("INVALID_ARGUMENT", never));
      }
    }
  }

  /**
   * Applies what fell due by `now`: lease expiries, then deadlines. A waiter
   * due now still gets a last chance to be granted at this instant (its
   * queue is re-evaluated first), so the outcome does not depend on which
   * timer happened to fire first.
   */
  private settle(now: Millis): void {
    const dirty = this.dirtyList;
    let top = this.expiries.peek();
    while (top !== undefined && top.expiresAt <= now) {
      this.expiries.pop();
      this.endLease(top, "expired");
      const r = top.res;
      r.expirations++;
      if (this.onLeaseExpired !== undefined) this.post(this.onLeaseExpired, top.toLease());
      if (!r.dirty) {
        r.dirty = true;
        dirty.push(r);
      }
      top = this.expiries.peek();
    }
    let due: Waiter[] | undefined;
    let w = this.deadlines.peek();
    while (w !== undefined && w.deadline <= now) {
      this.deadlines.pop();
      (due ??= []).push(w);
      if (!w.res.dirty) {
        w.res.dirty = true;
        dirty.push(w.res);
      }
      w = this.deadlines.peek();
    }
    if (dirty.length === 0) return;
    for (const r of dirty) if (!r.deleted) this.pump(r, now);
    if (due !== undefined) {
      for (const x of due) {
        if (x.decided) continue;
        this.removeWaiter(x);
        x.res.timeouts++;
        this.post(x.onResult, this.timeoutFailure(x, now));
      }
      for (const r of dirty) if (!r.deleted) this.pump(r, now);
    }
    for (const r of dirty) r.dirty = false;
    dirty.length = 0;
  }

  /** Ends a held lease (already out of the expiry heap) and remembers how. */
  private endLease(rec: LeaseRecord, how: Ended): void {
    this.leases.delete(rec.id);
    rec.res.inFlight--;
    this.heldLeases--;
    this.tombstones.add(rec.id, rec.serial, how);
  }

  /** The serial of an id made by the default generator, or -1. */
  private serialOf(id: string): number {
    const p = this.idPrefix;
    if (p === undefined || !id.startsWith(p)) return -1;
    const n = parseInt(id.slice(p.length), 36);
    return Number.isSafeInteger(n) && n.toString(36) === id.slice(p.length) ? n : -1;
  }

  private post<A>(fn: (a: A) => void, arg: A): void {
    this.outbox.push(fn, arg);
  }

  /** Delivers posted callbacks in order. Re-entrant calls drain the same queue. */
  private flush(): void {
    const q = this.outbox;
    while (this.outHead < q.length) {
      const fn = q[this.outHead] as (a: unknown) => void;
      const arg = q[this.outHead + 1];
      q[this.outHead] = undefined;
      q[this.outHead + 1] = undefined;
      this.outHead += 2;
      try {
        fn(arg);
      } catch (err) {
        this.onCallbackError(err);
      }
    }
    q.length = 0;
    this.outHead = 0;
  }

  // ------------------------------------------------------------------ timers
  // Timers are lazy: a timer armed too early just fires, finds nothing due
  // and re-arms; only a due time earlier than the armed one re-arms at once.

  private armRateTimer(r: Resource, at: Millis): void {
    if (r.timerId !== null && r.timerAt <= at) return;
    if (r.timerId !== null) this.clock.clearTimer(r.timerId);
    r.timerAt = at;
    r.timerId = this.clock.setTimer(at, () => {
      r.timerId = null;
      r.timerAt = Infinity;
      if (r.deleted) return;
      const now = this.clock.now();
      this.settle(now);
      if (!r.deleted) this.pump(r, now);
      this.flush();
    });
  }

  private clearRateTimer(r: Resource): void {
    if (r.timerId === null) return;
    this.clock.clearTimer(r.timerId);
    r.timerId = null;
    r.timerAt = Infinity;
  }

  private armDeadlineTimer(): void {
    const w = this.deadlines.peek();
    if (w === undefined) return;
    if (this.deadlineTimer !== null) {
      if (this.deadlineTimerAt <= w.deadline) return;
      this.clock.clearTimer(this.deadlineTimer);
    }
    this.deadlineTimerAt = w.deadline;
    this.deadlineTimer = this.clock.setTimer(w.deadline, () => {
      this.deadlineTimer = null;
      this.deadlineTimerAt = Infinity;
      this.settle(this.clock.now());
      this.armDeadlineTimer();
      this.flush();
    });
  }

  private armExpiryTimer(): void {
    const rec = this.expiries.peek();
    if (rec === undefined) return;
    if (this.expiryTimer !== null) {
      if (this.expiryTimerAt <= rec.expiresAt) return;
      this.clock.clearTimer(this.expiryTimer);
    }
    this.expiryTimerAt = rec.expiresAt;
    this.expiryTimer = this.clock.setTimer(rec.expiresAt, () => {
      this.expiryTimer = null;
      this.expiryTimerAt = Infinity;
      this.settle(this.clock.now());
      this.armExpiryTimer();
      this.flush();
    });
  }
}
