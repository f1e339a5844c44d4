// The limiter engine: resources, their GCRA limits, lanes and queues, leases
// and timers. Pure and synchronous; time comes from the injected Clock.
//
// A call's path: settle() first applies whatever fell due (lease expiries,
// request deadlines) at clock.now(); the call changes state; pump() grants
// from the affected queues as far as they fit; finally flush() delivers the
// collected callbacks. Callbacks therefore always see a consistent engine and
// may call back into it.
//
// The Engine is the one entry point; its parts live beside it: admission.ts
// (what may be granted, and the refusals), lane-scheduling.ts (weighted fair
// queuing between lanes), lease-table.ts (held leases, their expiry order and
// tombstones), lazy-timer.ts (the deadline, expiry and rate timers),
// stats.ts, snapshot.ts and takeover.ts (what a new leader assumes it cannot see).
import { failure, hasRoom, hasRoomUp, neverFits, readyAt, readyAtUp, refusal, timeoutFailure } from "./admission.js";
import { applyFeedback, markNow, type GrantMark } from "./feedback.js";
import { Gcra } from "./gcra.js";
import { IndexedHeap } from "./indexed-heap.js";
import { chargeFlows, chooseLane, joinLane, refreshFlow, selectNext, type Wake } from "./lane-scheduling.js";
import { LazyTimer } from "./lazy-timer.js";
import { LeaseTable, parseLeaseId } from "./lease-table.js";
import { copySpec, Lane, Resource, ResourcesByTag, SpecPool, Waiter } from "./resource.js";
import { restoreResource, snapshotResource, type EngineSnapshot, type RestoreOptions } from "./snapshot.js";
import { TakeoverWindow } from "./takeover.js";
import { childStats, parentStats, resourceMetrics, resourceStats } from "./stats.js";
import { addBacklog, attach, detach, heightOf, isAncestorOrSelf, rootOf } from "./tree.js";
import {
  DEFAULT_PER_KEY_IDLE_MS,
  MAX_TREE_DEPTH,
  type AcquireRequest,
  type AcquireResult,
  type Clock,
  type Failure,
  type FailureCode,
  type FeedbackEvent,
  type Grant,
  type HeartbeatResult,
  type Lease,
  type Millis,
  type NextWaiting,
  type ProviderFeedback,
  type ReleaseOutcome,
  type ResourceMetrics,
  type ResourceSpec,
  type ResourceStats,
  type Ticket,
} from "./types.js";

/** Options of {@link Engine}. */
export interface EngineOptions {
  /** Where time comes from: systemClock in production, a SimulatedClock in tests. */
  clock: Clock;
  /** Called once for each lease that expires unheartbeated (after the engine has freed it). */
  onLeaseExpired?: (lease: Lease) => void;
  /**
   * Called once for each lease a release ends, with the engine's time of
   * the release, the units charged (positive) or refunded (negative) on its
   * load limits then, and where the engine's lease ids had got to
   * (`<prefix>-<serial>` of the last it issued: it orders the release among
   * grants of the same millisecond). For
   * diagnostics: a chaos run's referee checks the load limits and the
   * concurrency cap with it.
   */
  onLeaseReleased?: (released: { lease: Lease; at: Millis; reconciled: number; issued: string | undefined }) => void;
  /** Called for each change provider feedback made: a pause begun or lengthened, a limit learned or forgotten (for logs). */
  onFeedback?: (event: FeedbackEvent) => void;
  /** Makes lease ids; they must be unique for the server's lifetime, across restores. */
  newLeaseId?: () => string;
  /** How many ended lease ids are remembered to tell "already released"/"expired" from "unknown". Default 100 000. */
  tombstoneCapacity?: number;
  /**
   * Receives exceptions thrown by callbacks (onResult, onLeaseExpired). The
   * default rethrows them asynchronously, so the engine call that delivered
   * them returns as usual. When this function throws, the engine call (or
   * the timer) that delivered the callback throws that error, once every
   * other pending callback is delivered: tests pass `(err) => { throw err; }`
   * so that an assertion failing inside a callback fails the test at once.
   */
  onCallbackError?: (err: unknown) => void;
  /**
   * The engine grants nothing at or after this time (a group leader's lease
   * deadline, checked on every grant whatever triggered it). Default: never.
   */
  grantDeadline?: () => Millis;
}

const FAILED_AT_ONCE = null;

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
 * Resources form trees (tree.ts): a grant on a child must fit the child and
 * every ancestor at the same moment, and counts at every level, so each
 * level's guarantees hold for its whole subtree. A parent shares its grants
 * between the children with waiters by their shares (lane-scheduling.ts).
 * Keyed children ("NAME/KEY") are made from their parent's template on
 * first use and forgotten once idle at full budget.
 *
 * Not thread-safe, nor does it need to be: every method is synchronous.
 */
export class Engine {
  private readonly clock: Clock;
  private readonly onLeaseExpired: ((lease: Lease) => void) | undefined;
  private readonly onLeaseReleased: ((released: { lease: Lease; at: Millis; reconciled: number; issued: string | undefined }) => void) | undefined;
  private readonly onCallbackError: (err: unknown) => void;
  private readonly onFeedback: ((event: FeedbackEvent) => void) | undefined;
  private readonly grantDeadline: () => Millis;
  private readonly resources = new Map<string, Resource>();
  /** The resources by the tag their lease ids end with: feedback on a lease that already ended still finds its resource. */
  private readonly byTag = new ResourcesByTag();
  /** The engine's copies of specs, equal lists shared. */
  private readonly specs = new SpecPool();
  /** The declared resources' names in order, kept between listings until one is declared or removed. */
  private declaredNames: string[] | undefined;
  private readonly leases: LeaseTable;
  private readonly deadlines = new IndexedHeap<Waiter>(
    (a, b) => a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq),
    (w) => w.deadlineIndex,
    (w, i) => {
      w.deadlineIndex = i;
    },
  );
  private readonly deadlineTimer: LazyTimer;
  private readonly expiryTimer: LazyTimer;
  /** Pending deliveries as [fn, arg, fn, arg, ...] up to outTail, delivered in order by flush(); the array keeps its length to be reused. */
  private readonly outbox: unknown[] = [];
  private outHead = 0;
  private outTail = 0;
  private seq = 0;
  private waitingTotal = 0;
  private closedMessage: string | undefined;
  private readonly dirtyList: Resource[] = [];
  /** After a takeover: the leases the old leader may hold unseen (see restore). */
  private readonly takeover = new TakeoverWindow();
  /** Keyed children with no lease and no waiter, by when they may be forgotten. */
  private readonly idle = new IndexedHeap<Resource>(
    (a, b) => a.dropAt < b.dropAt,
    (r) => r.idleIndex,
    (r, i) => {
      r.idleIndex = i;
    },
  );
  private readonly idleTimer: LazyTimer;
  /** Scratch for selectNext. */
  private readonly wake: Wake = { at: Infinity };

  /** Creates an engine with no resources. */
  constructor(options: EngineOptions) {
    this.clock = options.clock;
    this.onLeaseExpired = options.onLeaseExpired;
    this.onLeaseReleased = options.onLeaseReleased;
    this.onFeedback = options.onFeedback;
    this.grantDeadline = options.grantDeadline ?? (() => Infinity);
    this.onCallbackError =
      options.onCallbackError ??
      ((err) =>
        queueMicrotask(() => {
          throw err;
        }));
    this.leases = new LeaseTable(options.newLeaseId, Math.max(0, options.tombstoneCapacity ?? 100_000));
    this.deadlineTimer = new LazyTimer(this.clock, () => {
      this.settle(this.clock.now());
      this.deadlineTimer.armBy(this.deadlines.peek()?.deadline);
      this.flush();
    });
    this.expiryTimer = new LazyTimer(this.clock, () => {
      this.settle(this.clock.now());
      this.expiryTimer.armBy(this.leases.nextExpiry());
      this.flush();
    });
    this.idleTimer = new LazyTimer(this.clock, () => {
      this.settle(this.clock.now());
      this.dropIdle(this.clock.now());
      this.flush();
    });
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
   *
   * A spec naming a parent puts the resource under it (moving its leases
   * and waiters along when it had another). A resource declared under the
   * name of one of its parent's keyed children takes that child's place
   * (its state kept) and is no longer keyed. A new template replaces the
   * spec of every keyed child. The caller checks {@link treeProblem} first:
   * a spec it refuses throws here.
   */
  putResource(spec: ResourceSpec): { created: boolean } {
    const problem = this.treeProblem(spec);
    if (problem !== undefined) throw new Error(problem.message);
    const now = this.clock.now();
    this.settle(now);
    // A caller cannot make a keyed child: only a template can.
    const s = this.specs.own(spec.keyed === undefined ? spec : { ...spec, keyed: undefined });
    let r = this.resources.get(s.name);
    const created = r === undefined;
    // New, or a keyed child declared in its own right: listed from now on.
    if (r === undefined || r.spec.keyed === true) this.declaredNames = undefined;
    if (r === undefined) {
      r = new Resource(s.name, s, now);
      this.link(r);
    } else {
      const oldRoot = rootOf(r);
      this.reconfigure(r, s, now);
      if (rootOf(r) !== oldRoot) this.pump(oldRoot, now);
      if (r.children !== undefined) for (const c of r.children) if (c.spec.keyed === true) this.reconfigure(c, keyedSpec(r), now);
      this.touchKeyed(r, now);
    }
    this.pump(r, now);
    this.flush();
    return { created };
  }

  /**
   * Why `spec` cannot be put as it stands in the tree, or undefined: its
   * parent is unknown (NOT_FOUND) or keyed, it would be its own ancestor, or
   * the tree would grow past MAX_TREE_DEPTH levels (INVALID_ARGUMENT).
   */
  treeProblem(spec: ResourceSpec): Failure | undefined {
    const existing = this.resources.get(spec.name);
    let below = spec.perKey !== undefined ? 1 : 0;
    if (existing?.children !== undefined) {
      for (const c of existing.children) if (c.spec.keyed !== true) below = Math.max(below, 1 + heightOf(c));
    }
    let depth = 0;
    if (spec.parent !== undefined) {
      const parent = this.resources.get(spec.parent);
      if (parent === undefined) return { code: "NOT_FOUND", message: `parent '${spec.parent}' of '${spec.name}' not found; put the parent first` };
      if (parent.spec.keyed === true) {
        return { code: "INVALID_ARGUMENT", message: `parent '${spec.parent}' is a keyed child; declare it to give it children` };
      }
      if (existing !== undefined && isAncestorOrSelf(existing, parent)) {
        return { code: "INVALID_ARGUMENT", message: `parent '${spec.parent}' is '${spec.name}' or one of its children; a tree has no cycles` };
      }
      depth = parent.depth + 1;
    }
    if (depth + below + 1 > MAX_TREE_DEPTH) {
      return {
        code: "INVALID_ARGUMENT",
        message: `'${spec.name}' would make a tree of ${depth + below + 1} levels (keyed children count as one); at most ${MAX_TREE_DEPTH}`,
      };
    }
    return undefined;
  }

  /** The resource's definition, or undefined. */
  getResource(name: string): ResourceSpec | undefined {
    const r = this.resources.get(name);
    return r && copySpec(r.spec, r.name);
  }

  /**
   * Every declared resource's definition (keyed children are listed by
   * {@link listChildren}), ordered by name; with `page`, only those named
   * after `after` that `include` accepts, at most `limit` of them: a page
   * costs what it holds, not what the engine holds.
   */
  listResources(page: { after?: string; limit?: number; include?: (name: string) => boolean } = {}): ResourceSpec[] {
    if (this.declaredNames === undefined) {
      const names: string[] = [];
      for (const r of this.resources.values()) if (r.spec.keyed !== true) names.push(r.name);
      this.declaredNames = names.sort();
    }
    const names = this.declaredNames;
    const limit = page.limit ?? Infinity;
    const out: ResourceSpec[] = [];
    for (let i = page.after === undefined ? 0 : firstAfter(names, page.after); i < names.length && out.length < limit; i++) {
      const name = names[i] as string;
      if (page.include === undefined || page.include(name)) out.push(copySpec((this.resources.get(name) as Resource).spec, name));
    }
    return out;
  }

  /** The names of a resource's direct children, keyed ones included, ordered by name; undefined when unknown. */
  listChildren(name: string): string[] | undefined {
    const r = this.resources.get(name);
    if (r === undefined) return undefined;
    return r.children === undefined ? [] : [...r.children].map((c) => c.name).sort();
  }

  /**
   * Removes a resource and its keyed children. Their waiters fail with
   * NOT_FOUND; their leases end silently (a later release of one says
   * "unknown"). False when unknown. The caller checks {@link deleteProblem}
   * first: a resource with declared children throws here.
   */
  deleteResource(name: string): boolean {
    const problem = this.deleteProblem(name);
    if (problem !== undefined) throw new Error(problem.message);
    const now = this.clock.now();
    this.settle(now);
    const r = this.resources.get(name);
    if (r === undefined) return false;
    const gone = new Set<Resource>([r]);
    if (r.children !== undefined) for (const c of r.children) gone.add(c);
    for (const x of gone) this.failAllWaiters(x, "NOT_FOUND", `resource '${x.name}' was deleted`);
    this.leases.dropResources(gone);
    const root = rootOf(r);
    detach(r);
    for (const x of gone) this.forget(x);
    if (root !== r) this.pump(root, now);
    this.flush();
    return true;
  }

  /** Why a resource cannot be deleted now (it has declared children: FAILED_PRECONDITION), or undefined. */
  deleteProblem(name: string): Failure | undefined {
    const r = this.resources.get(name);
    if (r?.children === undefined) return undefined;
    const declared = [...r.children].filter((c) => c.spec.keyed !== true).map((c) => c.name);
    if (declared.length === 0) return undefined;
    const shown = declared.sort().slice(0, 5).map((n) => `'${n}'`).join(", ");
    return { code: "FAILED_PRECONDITION", message: `resource '${name}' has children (${shown}${declared.length > 5 ? ", ..." : ""}); delete them first` };
  }

  // ----------------------------------------------------------------- acquire

  /**
   * Asks for a lease. Returns null when the request resolved at once (grant
   * or failure; onResult has then already been called); otherwise a ticket,
   * and onResult is called exactly once later.
   *
   * With a key, the request goes to the keyed child "resource/key", made
   * from the resource's template on first use; an acquire may also name a
   * keyed child directly.
   *
   * Fails at once with NOT_FOUND (unknown resource), INVALID_ARGUMENT
   * (unknown lane; a cost above some limit's burst; a key the resource has
   * no template for), RESOURCE_EXHAUSTED
   * (queue full), DEADLINE_EXCEEDED (deadline not after now and no grant at
   * once) or UNAVAILABLE (after shutdown). A new request is granted at once
   * only if it is the one the queue would serve next and it fits.
   */
  acquire(req: AcquireRequest, onResult: (r: AcquireResult) => void): Ticket | null {
    const now = this.clock.now();
    this.settle(now);
    const found = this.closedMessage === undefined ? this.resolve(req.resource, req.key, now) : undefined;
    const refused = typeof found === "object" && !(found instanceof Resource) ? { ok: false as const, failure: found } : refusal(found, req, this.closedMessage);
    if (refused !== undefined) {
      this.post(onResult, refused);
      if (found instanceof Resource) this.touchKeyed(found, now);
      this.flush();
      return FAILED_AT_ONCE;
    }
    const res = found as Resource;
    const lane = res.lane(req.lane) as Lane;
    if ((res.parent === undefined ? res.backlog : rootOf(res).backlog) === 0 && hasRoomUp(res, now) && readyAtUp(res, req.load, now) <= now) {
      // Fast path: with nothing waiting in the tree, this request is the one
      // it would serve first anyway (and every finish tag is already reset).
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
      res.ownTally().timeouts++;
      w.lane.timeouts++;
      this.post(onResult, timeoutFailure(w, now));
      this.pump(res, now);
      this.touchKeyed(res, now);
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
    r.ownTally().cancellations++;
    ticket.lane.cancellations++;
    this.post(ticket.onResult, failure("CANCELLED", `acquire on '${r.name}' was cancelled`));
    this.pump(r, now);
    this.touchKeyed(r, now);
    this.flush();
    return true;
  }

  // ------------------------------------------------------------------ leases

  /**
   * Ends a lease and frees its concurrency slot. With `actualLoad`, the
   * resource's load limits are charged or refunded by actualLoad - load
   * (request limits are untouched).
   *
   * After a takeover, a lease of the old leader that this engine does not
   * know, or adopted without its estimate, is charged its whole actual load
   * (see restore): on a resource the caller may charge (`mayCharge`; the
   * RPC layer passes the caller's namespace).
   *
   * `feedback` is what the provider said about the call (see feedback.ts):
   * it applies to the lease's resource, counting what was granted after
   * this lease as in flight. A throttled call without `actualLoad` spent
   * nothing: its load is refunded.
   */
  release(
    leaseId: string,
    actualLoad?: number,
    mayCharge: (resource: string) => boolean = mayChargeAny,
    feedback?: ProviderFeedback,
  ): ReleaseOutcome {
    const now = this.clock.now();
    this.settle(now);
    if (feedback?.throttled && actualLoad === undefined) actualLoad = 0;
    const rec = this.leases.get(leaseId);
    if (rec === undefined) {
      // A lease of the old leader this engine never knew: the old leader
      // charged its estimate, unknown here, so the whole actual load is
      // charged (at least the true difference).
      const r = actualLoad === undefined ? undefined : this.takeover.resourceOf(leaseId, now);
      if (r !== undefined && mayCharge(r.name)) this.reconcile(r, actualLoad!, now);
      // Expired, released, or a previous leader's: what the provider said still counts, on the resource the id names.
      const named = feedback === undefined ? undefined : this.resourceOfLeaseId(leaseId);
      if (named !== undefined && mayCharge(named.name)) for (let n: Resource | undefined = named; n; n = n.parent) this.feedback(n, feedback!, now, markNow(n), now);
      if (r !== undefined) this.touchKeyed(r, now);
      if (named !== undefined) this.touchKeyed(named, now);
      this.flush();
      return this.leases.endedAs(leaseId);
    }
    this.leases.release(rec);
    const r = rec.res;
    // Maybe released at the old leader already: its slot stays counted until the takeover's window ends.
    if (rec.unconfirmed && r.unknown !== undefined && r.unknown.until > now) r.unknown.count++;
    let reconciled = 0;
    // An adopted lease's estimate is unknown (its load is 0 here): the whole actual load is charged.
    if (actualLoad !== undefined && actualLoad !== rec.load) {
      reconciled = actualLoad - rec.load;
      this.reconcile(r, reconciled, now);
    }
    if (this.onLeaseReleased !== undefined) this.post(this.onLeaseReleased, { lease: rec.toLease(), at: now, reconciled, issued: this.leases.lastIssued() });
    if (feedback !== undefined) {
      this.feedback(r, feedback, rec.grantedAt, { grants: rec.markGrants, load: rec.markLoad }, now);
      const marks = rec.ancestorMarks;
      let i = 0;
      for (let a = r.parent; a !== undefined; a = a.parent, i += 2) {
        // An ancestor put above the resource after the grant counts from now.
        const mark = marks !== undefined && i + 1 < marks.length ? { grants: marks[i]!, load: marks[i + 1]! } : markNow(a);
        this.feedback(a, feedback, rec.grantedAt, mark, now);
      }
    }
    this.pump(r, now);
    this.touchKeyed(r, now);
    this.flush();
    return "released";
  }

  /**
   * Extends each held lease to now + its resource's lease TTL; others come
   * back held: false.
   *
   * After a takeover, a lease this engine does not know may be one that the
   * previous leader granted after its last snapshot, and its holder is
   * re-attaching it. When the id names a resource (its tag) still in the
   * takeover's window (see restore), and `reattach.mayAdopt` allows that
   * resource for the caller, the lease is adopted: it becomes held here by
   * `reattach.owner` and counts like any other, so its holder keeps it (it
   * is not reported lost). It takes the place of one unknown lease only when
   * it was certainly held at the old leader at the takeover (granted after
   * the snapshot, not yet expired there); otherwise it may have expired there
   * and its slot been granted again, and the unknown leases still count. A
   * forged id can only matter for a resource of the caller's own namespace.
   */
  heartbeat(leaseIds: string[], reattach?: { owner: string; mayAdopt(resource: string): boolean }): HeartbeatResult[] {
    const now = this.clock.now();
    this.settle(now);
    const out: HeartbeatResult[] = [];
    for (const id of leaseIds) {
      let rec = this.leases.get(id);
      if (rec === undefined && reattach !== undefined) rec = this.adopt(id, reattach, now);
      if (rec === undefined) {
        out.push({ leaseId: id, held: false });
        continue;
      }
      this.leases.extend(rec, now);
      // A TTL lowered live makes the new expiry earlier than the one the timer waits for.
      this.expiryTimer.armBy(rec.expiresAt);
      out.push({ leaseId: id, held: true, expiresAt: rec.expiresAt });
    }
    this.flush();
    return out;
  }

  /**
   * Applies provider feedback about a call made without a lease, as if the
   * call were granted now. Returns until when the resource is paused (or
   * undefined when it is not); undefined result: no such resource.
   */
  report(resource: string, feedback: ProviderFeedback): { pausedUntil: Millis | undefined } | undefined {
    const now = this.clock.now();
    this.settle(now);
    const found = this.resolve(resource, undefined, now);
    if (!(found instanceof Resource)) return undefined;
    let pausedUntil = -Infinity;
    for (let n: Resource | undefined = found; n !== undefined; n = n.parent) {
      this.feedback(n, feedback, now, markNow(n), now);
      if (n.pausedUntil > pausedUntil) pausedUntil = n.pausedUntil;
    }
    this.pump(found, now);
    this.touchKeyed(found, now);
    this.flush();
    return { pausedUntil: pausedUntil > now ? pausedUntil : undefined };
  }

  // ------------------------------------------------------------ introspection

  /**
   * A resource's live statistics, or undefined. `children` says how many of
   * the direct children to describe, the most demanding first (waiting, then
   * in flight, then granted; default 20), and which ones the caller may see.
   */
  stats(name: string, children: { limit?: number; visible?: (name: string) => boolean } = {}): ResourceStats | undefined {
    const r = this.resources.get(name);
    if (r === undefined) return undefined;
    const now = this.clock.now();
    const visible = children.visible ?? (() => true);
    const top: Resource[] = [];
    let count = 0;
    if (r.children !== undefined) {
      for (const c of r.children) {
        if (!visible(c.name)) continue;
        count++;
        top.push(c);
      }
    }
    top.sort((a, b) => b.backlog - a.backlog || b.inFlight - a.inFlight || b.grants - a.grants || (a.name < b.name ? -1 : 1));
    top.length = Math.min(top.length, children.limit ?? 20);
    return {
      ...resourceStats(r, now),
      children: top.map(childStats),
      childrenCount: count,
      ...(r.parent !== undefined && { parent: parentStats(r.parent, now) }),
    };
  }

  /** Every declared resource's counters and gauges, read now (for metrics at scrape time; keyed children count in their parent). */
  metrics(): ResourceMetrics[] {
    const now = this.clock.now();
    const out: ResourceMetrics[] = [];
    for (const r of this.resources.values()) if (r.spec.keyed !== true) out.push(resourceMetrics(r, now));
    return out;
  }

  /** Resources held in memory, keyed children included. */
  resourceCount(): number {
    return this.resources.size;
  }

  /** The resource a held lease is on; undefined when no such lease is held. */
  leaseResource(leaseId: string): string | undefined {
    return this.leases.get(leaseId)?.res.name;
  }

  /** The request the resource will serve next and what blocks it; undefined when none waits. */
  nextWaiting(name: string): NextWaiting | undefined {
    const r = this.resources.get(name);
    if (r === undefined || r.waiting === 0) return undefined;
    const lane = chooseLane(r);
    const w = lane.queue.peek() as Waiter;
    return {
      ticket: w,
      lane: lane.name,
      load: w.load,
      priority: w.priority,
      waitingSinceMs: w.enqueuedAt,
      blockedBy: hasRoom(r, this.clock.now()) ? "rate" : "concurrency",
      readyAt: readyAt(r, w.load, this.clock.now()),
    };
  }

  /** Leases held, across resources. */
  leaseCount(): number {
    return this.leases.size;
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
      r.rateTimer?.clear();
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

  /** The engine's state as plain JSON values (waiters excluded; keyed children only while they hold state). */
  snapshot(): EngineSnapshot {
    const now = this.clock.now();
    const names: string[] = [];
    for (const r of this.resources.values()) if (r.spec.keyed !== true || this.holdsState(r, now)) names.push(r.name);
    const resources = names.sort().map((name) => snapshotResource(this.resources.get(name) as Resource, now));
    const leases = [...this.leases.values()].map((rec) => rec.toLease());
    const issued = this.leases.issued();
    return { version: 1, takenAt: now, resources, leases, ...(issued && { issued }) };
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
   * one burst of under-use.
   *
   * The concurrency cap is kept the same way: leases granted after the
   * snapshot are unknown here, so each capped resource counts as many
   * unknown leases as the old leader could have granted and held (see
   * unknownLeases in takeover.ts) until every lease of the old leader has
   * certainly expired there (notBefore + lease TTL); a holder that
   * re-attaches one by heartbeat keeps it as a held lease of this engine
   * (see heartbeat), and a restored lease released before its holder
   * re-attached it keeps its slot counted (see release). The price is
   * under-use of the slots that were in fact free, for at most one lease TTL.
   */
  restore(s: EngineSnapshot, options: RestoreOptions = {}): void {
    const now = this.clock.now();
    for (const r of this.resources.values()) {
      this.failAllWaiters(r, "UNAVAILABLE", "the engine's state was replaced by a restore; retry");
      r.rateTimer?.clear();
      r.deleted = true;
    }
    this.resources.clear();
    this.declaredNames = undefined;
    this.byTag.clear();
    this.leases.clear();
    this.idle.clear();
    this.closedMessage = undefined;
    for (const rs of s.resources) {
      const r = new Resource(rs.spec.name, this.specs.own(rs.spec), now);
      restoreResource(r, rs, now, options.notBefore);
      this.resources.set(r.name, r);
      this.byTag.set(r);
    }
    // Parents first is not promised: the tree is linked once every resource exists.
    for (const r of this.resources.values()) {
      const parent = r.spec.parent === undefined ? undefined : this.resources.get(r.spec.parent);
      if (parent !== undefined) attach(r, parent);
    }
    // Nobody could heartbeat before the takeover, nor before the old leader stopped.
    const graceFrom = options.leaseGraceFrom === undefined ? undefined : Math.max(options.leaseGraceFrom, options.notBefore ?? -Infinity);
    const expiredKnown = new Map<Resource, number>();
    for (const l of s.leases) {
      const r = this.resources.get(l.resource);
      if (r === undefined) continue;
      const graceEnd = graceFrom === undefined ? l.expiresAt : graceFrom + l.ttlMs;
      this.leases.restore(l, r, Math.max(l.expiresAt, graceEnd));
      if (options.notBefore !== undefined && l.expiresAt <= options.notBefore) expiredKnown.set(r, (expiredKnown.get(r) ?? 0) + 1);
    }
    this.takeover.begin(s, this.resources, expiredKnown, now, options.notBefore);
    for (const r of this.resources.values()) this.touchKeyed(r, now);
    this.expiryTimer.armBy(this.leases.nextExpiry());
    this.settle(now);
    this.flush();
  }

  /** Unknown leases assumed held after a takeover, across resources (see restore). */
  unknownLeaseCount(): number {
    return this.takeover.count(this.clock.now());
  }

  // ------------------------------------------------------------- internals

  /** The resource a lease id of a default generator names by its tag, or undefined. */
  private resourceOfLeaseId(id: string): Resource | undefined {
    const tag = parseLeaseId(id)?.tag;
    return tag === undefined ? undefined : this.byTag.get(tag);
  }

  /** Re-attaches an unknown lease of a previous leader (see heartbeat), or undefined. */
  private adopt(id: string, reattach: { owner: string; mayAdopt(resource: string): boolean }, now: Millis) {
    const r = this.takeover.resourceOf(id, now);
    if (r === undefined || !reattach.mayAdopt(r.name)) return undefined;
    this.takeover.reattached(id, r, now);
    const rec = this.leases.adopt(id, r, reattach.owner, now);
    this.expiryTimer.armBy(rec.expiresAt);
    return rec;
  }

  /** Makes a new resource known: by name, by tag, and under its parent (a keyed child by its `key`). */
  private link(r: Resource, key?: string): void {
    this.resources.set(r.name, r);
    this.byTag.set(r);
    const parent = r.spec.parent === undefined ? undefined : this.resources.get(r.spec.parent);
    if (parent !== undefined) attach(r, parent, key);
  }

  /** Forgets a resource that has no lease and no waiter left (deleted, or a keyed child gone idle). */
  private forget(r: Resource): void {
    if (r.spec.keyed !== true) this.declaredNames = undefined;
    detach(r);
    r.deleted = true;
    r.rateTimer?.clear();
    if (r.idleIndex >= 0) this.idle.remove(r);
    this.resources.delete(r.name);
    this.byTag.delete(r);
  }

  /**
   * The resource an acquire or report names: `name`, or with a key its keyed
   * child, or a keyed child named directly ("NAME/KEY" under a resource with
   * a template); a keyed child not held yet is made now. A failure for a key
   * that cannot be served; undefined when nothing matches.
   */
  private resolve(name: string, key: string | undefined, now: Millis): Resource | Failure | undefined {
    if (key !== undefined && key !== "") {
      const parent = this.resources.get(name);
      if (parent === undefined) return undefined;
      const known = parent.childrenByKey?.get(key);
      if (known !== undefined) return known;
      const child = this.resources.get(name + "/" + key);
      if (child !== undefined) {
        if (child.parent === parent) return child;
        return { code: "INVALID_ARGUMENT", message: `resource '${child.name}' exists but is not a child of '${name}'; acquire it without a key` };
      }
      if (parent.spec.perKey === undefined) {
        return { code: "INVALID_ARGUMENT", message: `resource '${name}' has no per_key template; declare per_key to acquire it with a key` };
      }
      return this.makeKeyed(parent, name + "/" + key, key, now);
    }
    const r = this.resources.get(name);
    if (r !== undefined) return r;
    // The longest known prefix before a '/' is the parent a keyed child would have.
    for (let i = name.lastIndexOf("/"); i > 0; i = name.lastIndexOf("/", i - 1)) {
      const parent = this.resources.get(name.slice(0, i));
      if (parent === undefined) continue;
      return parent.spec.perKey === undefined || i === name.length - 1 ? undefined : this.makeKeyed(parent, name, name.slice(i + 1), now);
    }
    return undefined;
  }

  /** A new keyed child of `parent` (its template must exist), named `name` ("PARENT/KEY"), linked and known. */
  private makeKeyed(parent: Resource, name: string, key: string, now: Millis): Resource {
    const r = new Resource(name, keyedSpec(parent), now);
    this.link(r, key);
    // Made while a takeover's window is open: the old leader may have granted on it unseen.
    this.takeover.fresh(r, now);
    return r;
  }

  /** A keyed child with no lease and no waiter is due to be forgotten once idle long enough at full budget; a busy one is not. */
  private touchKeyed(r: Resource, now: Millis): void {
    if (r.spec.keyed !== true || r.inFlight > 0 || r.backlog > 0) {
      if (r.idleIndex >= 0) this.idle.remove(r);
      return;
    }
    if (r.idleIndex >= 0) return;
    r.dropAt = Math.max(now, fullAt(r)) + idleMsOf(r);
    this.idle.push(r);
    this.idleTimer.armBy(r.dropAt);
  }

  /** Forgets the keyed children idle at full budget for their parent's per_key_idle by `now`. */
  private dropIdle(now: Millis): void {
    for (let r = this.idle.peek(); r !== undefined && r.dropAt <= now; r = this.idle.peek()) {
      this.idle.pop();
      // Feedback on an ended lease may have spent budget since it went idle: it waits again from full.
      const full = fullAt(r);
      const due = Math.max(full, r.dropAt - idleMsOf(r)) + idleMsOf(r);
      if (due > now || this.holdsState(r, now)) {
        r.dropAt = Math.max(due, now + 1);
        this.idle.push(r);
        continue;
      }
      this.forget(r);
    }
    this.idleTimer.armBy(this.idle.peek()?.dropAt);
  }

  /** True while forgetting r would lose something: a lease, a waiter, spent budget, a pause or unknown leases. */
  private holdsState(r: Resource, now: Millis): boolean {
    return r.inFlight > 0 || r.backlog > 0 || fullAt(r) > now || r.unknownAt(now) > 0;
  }

  /**
   * Grants while the request the tree chooses next fits every level on its
   * way (selectNext). Within a lane the head is served strictly: when it
   * does not fit, nothing behind it is granted. Arms the root's timer for
   * the exact time a blocked choice may fit; one blocked by concurrency
   * waits for a release or expiry instead.
   */
  private pump(r: Resource, now: Millis): void {
    // Suspended, shut down, or past the leader's deadline: grants nothing.
    if (this.closedMessage !== undefined || now >= this.grantDeadline()) return;
    const root = r.parent === undefined ? r : rootOf(r);
    const wake = this.wake;
    while (root.backlog > 0) {
      wake.at = Infinity;
      const w = selectNext(root, now, wake);
      if (w === undefined) {
        if (wake.at !== Infinity) (root.rateTimer ??= new LazyTimer(this.clock, () => this.rateTimerFired(root))).armBy(wake.at);
        return;
      }
      chargeFlows(w);
      this.removeWaiter(w);
      this.grant(w.res, w.lane, w.load, w.owner, w.enqueuedAt, w.onResult, now);
    }
  }

  /** Charges the limits of the resource and every ancestor, creates the lease and posts the grant (the request is no longer queued). */
  private grant(
    r: Resource,
    lane: Lane,
    load: number,
    owner: string,
    since: Millis,
    onResult: (r: AcquireResult) => void,
    now: Millis,
  ): void {
    const waited = now - since;
    for (let n: Resource | undefined = r; n !== undefined; n = n.parent) {
      const limits = n.limits ?? n.ownLimits();
      for (let i = 0; i < limits.length; i++) {
        const g = limits[i] as Gcra;
        const cost = g.cost(load);
        g.charge(cost, now);
        g.recordUse(cost, now);
      }
      n.grants++;
      n.loadGrantedTotal += load;
      n.recordWait(waited);
    }
    const rec = this.leases.grant(r, load, owner, now);
    this.expiryTimer.armBy(rec.expiresAt);
    if (r.idleIndex >= 0) this.idle.remove(r);
    lane.grants++;
    lane.loadGranted += load;
    lane.recordWait(waited);
    this.post(onResult, new Granted(new GrantOf(rec.toLease(), waited)));
  }

  /** Applies one call's feedback and posts what changed. */
  private feedback(r: Resource, fb: ProviderFeedback, grantedAt: Millis, mark: GrantMark, now: Millis): void {
    const events = applyFeedback(r, fb, grantedAt, mark, now);
    if (this.onFeedback !== undefined) for (const e of events) this.post(this.onFeedback, e);
  }

  /** Charges (delta > 0) or refunds (delta < 0) a release's reconciliation on the load limits of the resource and every ancestor. */
  private reconcile(r: Resource, delta: number, now: Millis): void {
    for (let n: Resource | undefined = r; n !== undefined; n = n.parent) {
      for (const g of n.ownLimits()) {
        if (g.spec.dimension !== "load") continue;
        g.adjust(delta);
        // A refund during a pause does not refill the burst the pause ends with.
        if (delta < 0 && n.pausedUntil > now) g.holdUntil(n.pausedUntil);
        g.recordUse(delta, now);
      }
      if (delta > 0) n.ownTally().loadCharged += delta;
      else n.ownTally().loadRefunded -= delta;
    }
  }

  private enqueue(r: Resource, w: Waiter): void {
    joinLane(r, w.lane, w);
    r.waiting++;
    addBacklog(r, 1);
    this.waitingTotal++;
    if (w.deadline !== Infinity) {
      this.deadlines.push(w);
      this.deadlineTimer.armBy(w.deadline);
    }
  }

  /** Takes a waiter out of its queue and the deadline heap and marks it decided. */
  private removeWaiter(w: Waiter): void {
    const r = w.res;
    w.lane.queue.remove(w);
    if (w.deadlineIndex >= 0) this.deadlines.remove(w);
    w.decided = true;
    r.waiting--;
    addBacklog(r, -1);
    this.waitingTotal--;
    // Its lane's head may have changed: so may its key among its parent's flows.
    if (r.flow !== undefined) refreshFlow(r);
  }

  private failAllWaiters(r: Resource, code: FailureCode, message: string): void {
    if (r.waiting === 0) return;
    for (const w of r.waitersByArrival()) {
      this.removeWaiter(w);
      this.post(w.onResult, failure(code, message));
    }
  }

  private reconfigure(r: Resource, spec: ResourceSpec, now: Millis): void {
    r.keyedSpec = undefined;
    if (spec.parent !== r.spec.parent) {
      detach(r);
      const parent = spec.parent === undefined ? undefined : this.resources.get(spec.parent);
      if (parent !== undefined) attach(r, parent);
    }
    // Limits: keep the state of one with the same dimension and period.
    if (r.limits === undefined && r.limitsSince <= now && r.pausedUntil <= now) {
      // All idle and unmade: each would start again at now, kept or new.
      r.limitsSince = now;
    } else {
      const old = r.ownLimits().slice();
      r.limits = spec.limits.map((ls) => {
        const i = old.findIndex((g) => g.spec.dimension === ls.dimension && g.spec.periodMs === ls.periodMs);
        if (i < 0) return new Gcra(ls, now);
        const g = old[i] as Gcra;
        old.splice(i, 1);
        g.reconfigure(ls, Math.max(now, r.pausedUntil));
        return g;
      });
    }
    // Lanes, once made: keep by name; waiters of removed lanes move to the default lane.
    const oldLanes = r.lanes;
    if (oldLanes !== undefined) {
      r.lanes = spec.lanes.map((ls) => {
        const l = oldLanes.find((x) => x.name === ls.name);
        if (l === undefined) return new Lane(ls.name, ls.weight);
        l.weight = ls.weight;
        return l;
      });
    }
    r.define(spec);
    // Its share or its lanes may have changed: so may its key or its plainness among its parent's flows.
    if (r.flow !== undefined) refreshFlow(r);
    if (oldLanes !== undefined) {
      const moved: Waiter[] = [];
      for (const l of oldLanes) if (!(r.lanes as Lane[]).includes(l)) moved.push(...l.queue.clear());
      moved.sort((a, b) => a.seq - b.seq);
      for (const w of moved) joinLane(r, r.defaultLane as Lane, w);
    }
    // Waiters here and below that can no longer ever fit fail now rather than wait forever.
    this.failNeverFitting(r);
  }

  private failNeverFitting(r: Resource): void {
    if (r.backlog === 0) return;
    for (const w of r.waitersByArrival()) {
      const never = neverFits(r, w.load);
      if (never === undefined) continue;
      this.removeWaiter(w);
      this.post(w.onResult, failure("INVALID_ARGUMENT", never));
    }
    if (r.active !== undefined) for (const c of [...r.active]) this.failNeverFitting(c);
  }

  /**
   * Applies what fell due by `now`: lease expiries, then deadlines. A waiter
   * due now still gets a last chance to be granted at this instant (its
   * queue is re-evaluated first), so the outcome does not depend on which
   * timer happened to fire first.
   */
  private settle(now: Millis): void {
    const dirty = this.dirtyList;
    for (let rec = this.leases.popExpired(now); rec !== undefined; rec = this.leases.popExpired(now)) {
      const r = rec.res;
      for (let n: Resource | undefined = r; n !== undefined; n = n.parent) n.ownTally().expirations++;
      if (this.onLeaseExpired !== undefined) this.post(this.onLeaseExpired, rec.toLease());
      const root = rootOf(r);
      if (!root.dirty) {
        root.dirty = true;
        dirty.push(root);
      }
      this.touchKeyed(r, now);
    }
    let due: Waiter[] | undefined;
    let w = this.deadlines.peek();
    while (w !== undefined && w.deadline <= now) {
      this.deadlines.pop();
      (due ??= []).push(w);
      const root = rootOf(w.res);
      if (!root.dirty) {
        root.dirty = true;
        dirty.push(root);
      }
      w = this.deadlines.peek();
    }
    if (dirty.length === 0) return;
    for (const r of dirty) if (!r.deleted) this.pump(r, now);
    if (due !== undefined) {
      for (const x of due) {
        if (x.decided) continue;
        this.removeWaiter(x);
        x.res.ownTally().timeouts++;
        x.lane.timeouts++;
        this.post(x.onResult, timeoutFailure(x, now));
        this.touchKeyed(x.res, now);
      }
      for (const r of dirty) if (!r.deleted) this.pump(r, now);
    }
    for (const r of dirty) r.dirty = false;
    dirty.length = 0;
  }

  private rateTimerFired(r: Resource): void {
    if (r.deleted) return;
    const now = this.clock.now();
    this.settle(now);
    if (!r.deleted) this.pump(r, now);
    this.flush();
  }

  private post<A>(fn: (a: A) => void, arg: A): void {
    const q = this.outbox;
    q[this.outTail++] = fn;
    q[this.outTail++] = arg;
  }

  /**
   * Delivers posted callbacks in order. Re-entrant calls drain the same
   * queue. An error onCallbackError throws is held until the queue is empty
   * and then thrown, so the engine is consistent when the caller sees it.
   */
  private flush(): void {
    const q = this.outbox;
    let thrown: { error: unknown } | undefined;
    while (this.outHead < this.outTail) {
      const fn = q[this.outHead] as (a: unknown) => void;
      const arg = q[this.outHead + 1];
      q[this.outHead] = undefined;
      q[this.outHead + 1] = undefined;
      this.outHead += 2;
      try {
        fn(arg);
      } catch (err) {
        try {
          this.onCallbackError(err);
        } catch (error) {
          thrown ??= { error };
        }
      }
    }
    this.outHead = 0;
    this.outTail = 0;
    if (thrown !== undefined) throw thrown.error;
  }
}

/** A grant's result, made by constructors rather than literals for the reason LeaseCopy gives (lease-table.ts). */
class Granted {
  readonly ok = true;
  constructor(readonly grant: Grant) {}
}

class GrantOf implements Grant {
  constructor(
    readonly lease: Lease,
    readonly waitedMs: Millis,
  ) {}
}

/** The index of the first name after `after` in sorted `names`. */
function firstAfter(names: readonly string[], after: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((names[mid] as string) <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The default of release's mayCharge. */
const mayChargeAny = (): boolean => true;

/**
 * The spec of `parent`'s keyed children: the template's limits, cap and
 * share, the parent's lanes and lease terms. One object for all of them
 * (kept on the parent until its spec changes): a keyed child's name is its
 * own (Resource.name), never the spec's.
 */
function keyedSpec(parent: Resource): ResourceSpec {
  if (parent.keyedSpec !== undefined) return parent.keyedSpec;
  const p = parent.spec;
  const t = p.perKey as NonNullable<ResourceSpec["perKey"]>;
  const s: ResourceSpec = {
    name: parent.name + "/",
    limits: t.limits,
    concurrency: t.concurrency,
    lanes: p.lanes,
    defaultLane: p.defaultLane,
    leaseTtlMs: p.leaseTtlMs,
    maxQueue: p.maxQueue,
  };
  if (p.cooldownMs !== undefined) s.cooldownMs = p.cooldownMs;
  if (p.learnLimits !== undefined) s.learnLimits = p.learnLimits;
  s.parent = parent.name;
  s.share = t.share;
  s.keyed = true;
  return (parent.keyedSpec = s);
}

/** When every limit of r is back at full budget and no pause holds it (-Infinity: already). */
function fullAt(r: Resource): Millis {
  let at = r.pausedUntil;
  for (const g of r.limitStates()) if (g.tat > at) at = g.tat;
  return at;
}

/** How long a keyed child of r's parent lives on once idle at full budget. */
function idleMsOf(r: Resource): Millis {
  return r.parent?.spec.perKeyIdleMs ?? DEFAULT_PER_KEY_IDLE_MS;
}
