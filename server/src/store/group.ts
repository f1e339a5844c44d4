// A node of a Redis group: leader election, self-fencing, takeover from the
// last snapshot, periodic snapshots, and the durable ResourceStore.
//
// Leadership. A node leads while it holds `<p>:leader` (SET NX PX by one
// script that also INCRs `<p>:epoch`). The leader renews every TTL/3. Each
// renewal records the time it was SENT; Redis starts the new expiry when it
// RUNS it, later, so "sent + TTL" is a lower bound of the lease's end on this
// node's clock. The gate closes at sent + TTL - margin (the margin covers
// clock-rate drift between this node and Redis), i.e. before any standby can
// win the lease: two nodes never grant at once, even when the leader still
// reaches its workers but not Redis.
//
// No over-admission after takeover. Each renewal also writes a reservation:
// "the leader of term T may grant until sent + TTL". The new leader restores
// the last snapshot with notBefore = max(reservation, now): every limit starts
// as if the old leader had spent its whole budget up to then (see
// Engine.restore for the proof). Under-use for about one burst; never over-use.
// One reservation per renewal (batch), never one per grant.
//
// Leases. The snapshot (every --snapshot-every, default 500 ms) carries held
// leases; workers re-attach them to the new leader by heartbeat. Leases
// granted after the last snapshot are unknown to the new leader: restoring
// with notBefore counts them against each concurrency cap until they have
// certainly expired at the old leader, and a holder's heartbeat re-attaches
// one (Engine.restore, Engine.heartbeat). A graceful shutdown writes a final
// snapshot after it stopped granting and resigns, so a planned handover
// loses nothing and costs no burst.
//
// Redis loss ("--redis-loss"). `stop` (default): the leader cannot renew, so
// it stops granting when its lease could have lapsed (it cannot know whether
// it is alone); state stays in memory. `continue`: the operator promises a
// single node; the leader keeps granting from memory without Redis (admin
// changes fail: they cannot be made durable). Either way, when Redis returns
// the node campaigns again; if no other node led meanwhile (the epoch moved
// by exactly one, or the last snapshot is its own), its memory is the truth
// and it resumes from it and writes it back; otherwise it restores from Redis.
//
// API keys and namespaces (keyStore) are written through the same fenced
// write as resources. A new leader adds the config file's namespaces and
// reloads every key before it opens the gate, so a key the old leader
// revoked is refused from the first call; standbys reload on each poll so
// they know new keys and can answer them with the leader hint.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { leaderMetadataKey } from "@ratequeue/proto";
import type { Clock, Engine, ResourceSpec, TimerId } from "../core/index.js";
import { RpcError } from "../errors.js";
import type { Logger } from "../log.js";
import { LeaderGate } from "./leader-gate.js";
import { RedisKeyStore } from "./redis-key-store.js";
import { FencedError, RedisStore, type Term } from "./redis-store.js";
import type { ResourceStore } from "./resource-store.js";
import { planTakeover, type TakeoverPlan } from "./takeover.js";

export type RedisLoss = "stop" | "continue";

/** How a node joins a group. */
export interface GroupOptions {
  /** redis://host:port/db */
  redisUrl: string;
  /** Key prefix; nodes of one group share it. */
  prefix: string;
  /** host:port that clients of this node use; standbys hand it out as the leader hint. */
  advertise: string;
  /** Leadership lease TTL, ms. Failover takes at most about this long. */
  leaderTtlMs: number;
  /** How often the leader writes a snapshot, ms. */
  snapshotEveryMs: number;
  redisLoss: RedisLoss;
}

/** What the group reports for the health service. */
export interface GroupStatus {
  /** This node leads and may grant. */
  serving: boolean;
  /** This node follows a known leader and could take over (readiness of a standby). */
  standby: boolean;
  /** The last Redis call succeeded. */
  redis: boolean;
}

export interface GroupDeps {
  clock: Clock;
  log: Logger;
  /** Resources from the config file: seeded into Redis when Redis never held them. */
  seed: ResourceSpec[];
  /** Namespaces from the config file: added by every new leader (as a lone node creates them at every start). */
  namespaces?: string[];
  onStatus(status: GroupStatus): void;
  /** Called after each periodic snapshot reached Redis, with how long taking and writing it took (ms). */
  onSnapshot?(durationMs: number): void;
}

/** What start() needs from the server. */
export interface GroupServer {
  engine: Engine;
  /** Ends every open worker stream with `err` (clients reconnect and follow the hint). */
  endSessions(err: RpcError): void;
  /** Replaces the API keys in memory with keyStore's (Authenticator.reload: ends the streams of vanished keys). */
  reloadKeys?(): Promise<void>;
}

/** How the "leading" log line names where a term's state came from. */
const planSources: Record<TakeoverPlan["kind"], string> = {
  memory: "memory",
  "memory-rewrite": "memory (Redis had lost its data)",
  "final-snapshot": "final snapshot",
  snapshot: "snapshot",
  config: "config",
};

/** Until when a plan assumes the previous leader may have granted; undefined: it did not. */
const notBeforeOf = (plan: TakeoverPlan): number | undefined => ("notBefore" in plan ? plan.notBefore : undefined);

/**
 * One node's membership in a group. Create it before the engine (the engine
 * runs on `engineClock`, whose timers check the lease deadline first), then
 * start() it once the gRPC server listens.
 */
export class RedisGroup implements ResourceStore {
  readonly gate: LeaderGate;
  /** The clock to build the engine with: every engine timer first checks the lease deadline. */
  readonly engineClock: Clock;
  /** API keys and namespaces, durable and fenced like resources. */
  readonly keyStore: RedisKeyStore;
  private readonly redis: Redis;
  private readonly store: RedisStore;
  private readonly ttl: number;
  private readonly margin: number;
  private server: GroupServer | undefined;
  /** The lease this node holds, as far as it knows. */
  private term: Term | undefined;
  /** The last term whose state the engine holds (set at takeover). */
  private memoryTerm: Term | undefined;
  /** The gate is open by our decision (it may still lapse by itself). */
  private granting = false;
  private redisUp = false;
  /** A Redis failure was logged and no success since (log transitions only). */
  private redisDownLogged = false;
  private leaderHint: string | undefined;
  private stopped = false;
  private tickTimer: TimerId | undefined;
  private snapshotTimer: TimerId | undefined;
  /** A snapshot was asked for while one was being written. */
  private snapshotAgain = false;
  private writingSnapshot = false;
  /** Fires at the gate's deadline so a lapse is noticed (logged, health) even when idle. */
  private lapseTimer: TimerId | undefined;
  private readonly token = randomUUID();
  /** Key reloads run one at a time, in order: a stale load never lands after a newer one. */
  private keysReload: Promise<void> = Promise.resolve();
  private keysRefreshing = false;

  constructor(
    private readonly options: GroupOptions,
    private readonly deps: GroupDeps,
  ) {
    const { clock } = deps;
    this.ttl = options.leaderTtlMs;
    // Clock drift between this node and Redis over one TTL, and timer slack.
    this.margin = Math.max(50, Math.round(this.ttl / 10));
    this.gate = new LeaderGate(
      () => clock.now(),
      (deadline) => this.stopGranting("the leadership lease could have lapsed (no renewal confirmed in time)", undefined, deadline),
    );
    this.engineClock = {
      now: () => clock.now(),
      setTimer: (at, fn) =>
        clock.setTimer(at, () => {
          this.gate.checkDeadline(); // A late timer past the deadline fences before the engine grants.
          fn();
        }),
      clearTimer: (id) => clock.clearTimer(id),
    };
    this.redis = new Redis(options.redisUrl, {
      // Fail at once while disconnected instead of queueing: a leader must
      // learn that its renewal did not go out, not send it seconds later.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // A Redis that hangs (paused, blackholed) must not stall renewals.
      commandTimeout: Math.max(100, Math.round(this.ttl / 3)),
      retryStrategy: (times) => Math.min(50 * times, 1000),
      connectionName: `ratequeue ${options.advertise}`,
    });
    // ioredis emits 'error' on every failed reconnect; an unhandled one would crash the process.
    this.redis.on("error", (err: Error) => this.redisFailed(err));
    this.store = new RedisStore(this.redis, options.prefix);
    this.keyStore = new RedisKeyStore(this.store, (fn) => this.write(fn), deps.log);
  }

  /** Starts campaigning. */
  start(server: GroupServer): void {
    this.server = server;
    this.deps.log.info("joining group", {
      advertise: this.options.advertise,
      prefix: this.options.prefix,
      leaderTtlMs: this.ttl,
      redisLoss: this.options.redisLoss,
    });
    this.report();
    // The first campaign waits for the connection (commands fail fast before it).
    if (this.redis.status === "ready") this.schedule(0);
    else this.redis.once("ready", () => this.schedule(0));
    this.snapshotTimer = this.deps.clock.setTimer(this.deps.clock.now() + this.options.snapshotEveryMs, () => this.snapshotTick());
  }

  /**
   * Leaves the group: the caller has closed the gate and shut the engine, so
   * the final snapshot is exact; then gives the lease up so a standby takes
   * over at once.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer !== undefined) this.deps.clock.clearTimer(this.tickTimer);
    if (this.lapseTimer !== undefined) this.deps.clock.clearTimer(this.lapseTimer);
    if (this.snapshotTimer !== undefined) this.deps.clock.clearTimer(this.snapshotTimer);
    const term = this.term;
    const wasGranting = this.granting;
    this.granting = false;
    if (term !== undefined && this.server !== undefined) {
      try {
        // Taken after the engine stopped: exact, so the next leader needs no notBefore.
        if (wasGranting) await this.store.writeSnapshot(term, this.server.engine.snapshot(), true);
        await this.store.resign(term);
        this.deps.log.info("resigned leadership", { epoch: term.epoch });
      } catch (err) {
        this.deps.log.warn("could not resign leadership; a standby takes over when the lease lapses", { error: String(err) });
      }
    }
    this.redis.disconnect();
  }

  // ResourceStore: admin changes are acknowledged after Redis holds them.

  async put(specs: ResourceSpec[]): Promise<void> {
    await this.write((term) => this.store.putResources(term, specs));
  }

  async delete(name: string): Promise<void> {
    await this.write((term) => this.store.deleteResource(term, name));
  }

  private async write(fn: (term: Term) => Promise<void>): Promise<void> {
    const term = this.term;
    if (term === undefined || !this.granting) throw this.gate.refusal() ?? new RpcError(status.UNAVAILABLE, "this node does not lead; retry");
    try {
      await fn(term);
      this.redisOk();
    } catch (err) {
      if (err instanceof FencedError) {
        this.deposed(term);
        throw new RpcError(status.UNAVAILABLE, `${err.message}; the change was not stored, retry on the leader`);
      }
      this.redisFailed(err);
      throw new RpcError(status.UNAVAILABLE, "Redis is unavailable, so the change could not be made durable and was not applied; retry");
    }
  }

  // ------------------------------------------------------------ the loop

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.tickTimer = this.deps.clock.setTimer(this.deps.clock.now() + delayMs, () => void this.tick());
  }

  private async tick(): Promise<void> {
    let next = Math.round(this.ttl / 3);
    try {
      if (this.term !== undefined) await this.renew(this.term);
      else next = await this.campaign();
    } catch (err) {
      if (err instanceof FencedError && this.term !== undefined) this.deposed(this.term);
      else this.redisFailed(err);
      // Redis is down or slow: try again soon; the lease deadline is what keeps us safe.
      next = Math.min(next, 200);
    }
    this.schedule(next);
  }

  /** Renews our lease; on success extends (or reopens) the gate. */
  private async renew(term: Term): Promise<void> {
    const sentAt = this.deps.clock.now();
    const ok = await this.store.renew(term, this.ttl, sentAt + this.ttl);
    this.redisOk();
    if (this.stopped || this.term !== term) return;
    if (!ok) {
      // The lease lapsed (or Redis lost it): win it again unless another node has.
      this.term = undefined;
      this.deps.log.warn("the leadership lease is no longer this node's", { epoch: term.epoch });
      await this.campaign();
      return;
    }
    const until = this.deadline(sentAt);
    // checkDeadline() notices a deadline that passed while the renewal was in flight
    // (the engine may have held grants back at it): then reopen from memory.
    if (this.granting && this.gate.checkDeadline()) {
      this.extend(until);
      return;
    }
    // We hold the lease but do not grant: the takeover did not finish, or the
    // gate lapsed while Redis was slow and the lease turned out to be ours still.
    if (this.memoryTerm === term) {
      if (until <= this.deps.clock.now()) return;
      this.engine().restore(this.engine().snapshot()); // reopens the engine with its exact state
      this.deps.log.info("granting again: the leadership lease held", { epoch: term.epoch });
      this.startGranting(until);
    } else {
      await this.takeover(term);
    }
  }

  /** Tries to win the lease; returns when to try again (ms). */
  private async campaign(): Promise<number> {
    const result = await this.store.campaign(this.token, this.options.advertise, this.ttl);
    this.redisOk();
    if (this.stopped) return this.ttl;
    if ("won" in result) {
      this.term = result.won;
      this.deps.log.info("won the leadership lease", { epoch: result.won.epoch });
      await this.takeover(result.won);
      return Math.round(this.ttl / 3);
    }
    const { address, epoch, ttlMs } = result.leader;
    if (this.granting) this.stopGranting("another node leads", address);
    if (address !== this.leaderHint) this.deps.log.info("standing by", { leader: address, epoch });
    this.leaderHint = address;
    this.gate.follow(`this node is a standby; the leader is ${address}`, address);
    this.report();
    this.refreshKeys();
    // Poll again just after the current lease would lapse, at least every TTL/3.
    return Math.max(10, Math.min(Math.round(this.ttl / 3), ttlMs + 10));
  }

  /** Installs the state a new term starts from, makes it durable, then opens the gate. */
  private async takeover(term: Term): Promise<void> {
    const { clock, log } = this.deps;
    const engine = this.engine();
    const stored = await this.store.load();
    if (this.stopped || this.term !== term) return;
    // Keys first: once our epoch is set no other write lands, so this load is final.
    if (this.deps.namespaces?.length) await this.store.putNamespaces(term, this.deps.namespaces);
    await this.reloadKeys();
    if (this.stopped || this.term !== term) return;
    const now = clock.now();
    const plan = planTakeover(term, this.memoryTerm, stored, now);
    switch (plan.kind) {
      case "memory":
      case "memory-rewrite":
        // Reopens the engine (stopGranting shut it) on its own state; one
        // still granting (--redis-loss continue) has nothing to install.
        if (!this.granting) engine.restore(engine.snapshot(), { notBefore: notBeforeOf(plan), leaseGraceFrom: now });
        break;
      default:
        engine.restore(plan.snapshot, { notBefore: notBeforeOf(plan), leaseGraceFrom: now });
    }
    this.memoryTerm = term;
    if (plan.kind === "memory-rewrite") await this.store.putResources(term, engine.listResources());
    const added = await this.store.seed(term, this.deps.seed.filter((s) => !stored.resources.has(s.name)));
    for (const spec of this.deps.seed) if (added.includes(spec.name)) engine.putResource(spec);
    // The reservation goes out before the first grant of this term.
    const sentAt = clock.now();
    if (!(await this.store.renew(term, this.ttl, sentAt + this.ttl))) throw new FencedError("takeover");
    await this.store.writeSnapshot(term, engine.snapshot());
    if (this.stopped || this.term !== term) return;
    log.info("leading", {
      epoch: term.epoch,
      from: planSources[plan.kind],
      notBefore: notBeforeOf(plan),
      resources: engine.listResources().length,
      leases: engine.leaseCount(),
      unknownLeases: engine.unknownLeaseCount(),
    });
    this.startGranting(this.deadline(sentAt));
  }

  private reloadKeys(): Promise<void> {
    const reload = this.server?.reloadKeys;
    if (reload === undefined) return Promise.resolve();
    const next = this.keysReload.then(() => reload());
    this.keysReload = next.catch(() => {});
    return next;
  }

  /** A standby's refresh of its keys; failures only wait for the next poll. */
  private refreshKeys(): void {
    if (this.keysRefreshing || this.server?.reloadKeys === undefined) return;
    this.keysRefreshing = true;
    this.reloadKeys()
      .catch((err: unknown) => this.deps.log.debug("could not refresh API keys from Redis", { error: String((err as Error)?.message ?? err) }))
      .finally(() => (this.keysRefreshing = false));
  }

  /**
   * Writes a snapshot now rather than at the next tick (or right after the
   * one being written): a pause the provider asked for must survive a failover.
   */
  snapshotSoon(): void {
    if (this.snapshotTimer === undefined || this.stopped) return;
    if (this.writingSnapshot) {
      this.snapshotAgain = true;
      return;
    }
    this.deps.clock.clearTimer(this.snapshotTimer);
    this.snapshotTick();
  }

  private snapshotTick(): void {
    const { clock } = this.deps;
    this.snapshotAgain = false;
    this.snapshotTimer = clock.setTimer(clock.now() + this.options.snapshotEveryMs, () => this.snapshotTick());
    const term = this.term;
    if (this.stopped || term === undefined || !this.granting || this.writingSnapshot || !this.gate.checkDeadline()) return;
    this.writingSnapshot = true;
    const started = performance.now();
    this.store
      .writeSnapshot(term, this.engine().snapshot())
      .then(
        () => {
          this.deps.onSnapshot?.(performance.now() - started);
          this.redisOk();
        },
        (err: unknown) => (err instanceof FencedError ? this.deposed(term) : this.redisFailed(err)),
      )
      .finally(() => {
        this.writingSnapshot = false;
        if (this.snapshotAgain) this.snapshotSoon();
      });
  }

  // ------------------------------------------------------------ state changes

  private deadline(sentAt: number): number {
    return this.options.redisLoss === "continue" ? Infinity : sentAt + this.ttl - this.margin;
  }

  private startGranting(until: number): void {
    this.granting = true;
    this.leaderHint = this.options.advertise;
    this.extend(until);
    this.report();
  }

  private extend(until: number): void {
    const { clock } = this.deps;
    this.gate.lead(until);
    if (this.lapseTimer !== undefined) clock.clearTimer(this.lapseTimer);
    this.lapseTimer = Number.isFinite(until) ? clock.setTimer(until, () => this.gate.checkDeadline()) : undefined;
  }

  /** Our term is over (Redis refused a fenced write or the renewal). */
  private deposed(term: Term): void {
    if (this.term !== term) return;
    this.term = undefined;
    this.deps.log.warn("lost the leadership lease", { epoch: term.epoch });
    this.stopGranting("this node lost its leadership lease");
  }

  /**
   * Closes the gate, ends every worker stream (clients re-send their waiting
   * acquires elsewhere) and fails the remaining waiters. Leases and limit
   * state stay in memory.
   */
  private stopGranting(reason: string, leader?: string, deadline?: number): void {
    this.gate.follow(`${reason}; retry`, leader);
    if (!this.granting) return;
    this.granting = false;
    // `deadline`: the instant after which this node granted nothing (the log line may come later on a busy node).
    this.deps.log.warn("stopped granting", { reason, epoch: this.term?.epoch ?? this.memoryTerm?.epoch, deadline });
    const err = new RpcError(status.UNAVAILABLE, `${reason}; retry`, leader === undefined ? {} : { [leaderMetadataKey]: leader });
    // Suspend first: ending a stream withdraws its waiters, and a withdrawal
    // must not grant the next waiter. Then fail what still waits (unary calls).
    this.engine().suspend(`${reason}; retry`);
    this.server?.endSessions(err);
    this.engine().shutdown(`${reason}; retry`);
    this.report();
  }

  private redisOk(): void {
    if (this.redisUp) return;
    this.redisUp = true;
    this.redisDownLogged = false;
    this.deps.log.info("Redis reachable", { prefix: this.options.prefix });
    this.report();
  }

  private redisFailed(err: unknown): void {
    this.redisUp = false;
    if (this.redisDownLogged) return;
    this.redisDownLogged = true;
    const behaviour =
      this.options.redisLoss === "continue"
        ? "a leader keeps granting from memory (--redis-loss continue); admin changes fail"
        : "a leader stops granting when its lease could have lapsed (--redis-loss stop)";
    this.deps.log.warn("Redis unavailable; state stays in memory", { error: String((err as Error)?.message ?? err), behaviour });
    this.report();
  }

  private report(): void {
    const serving = this.granting && this.gate.checkDeadline();
    this.deps.onStatus({ serving, standby: !serving && this.redisUp && this.leaderHint !== undefined, redis: this.redisUp });
  }

  private engine(): Engine {
    if (this.server === undefined) throw new Error("RedisGroup.start was not called");
    return this.server.engine;
  }
}
