// The engine's persistent state: what a snapshot carries to Redis and to a
// standby leader (plain JSON values only), and how a resource's state goes
// into one and comes back out.
import { copySpec, PauseState, type Resource } from "./resource.js";
import type { Lease, Millis, ResourceSpec } from "./types.js";

/** Lifetime counters of one resource. */
export interface CountersSnapshot {
  grants: number;
  rejections: number;
  timeouts: number;
  cancellations: number;
  expirations: number;
}

/** One resource: its spec, each limit's TAT (in spec order) and its counters. */
export interface ResourceSnapshot {
  spec: ResourceSpec;
  /** Theoretical arrival time of each limit, in the order of spec.limits. */
  tats: Millis[];
  counters: CountersSnapshot;
  lanes: { name: string; grants: number; loadGranted: number }[];
  /** Leases a previous leader may still hold here unseen (Resource.unknownLeases), while they count. */
  unknownLeases?: { count: number; until: Millis };
  /** What provider feedback left (feedback.ts): a pause, its doubling, and the learned amount of each limit (null: none). */
  feedback?: { pausedUntil: Millis; pauseStartedAt: Millis; backoffMs: Millis; throttles: number; learned: (number | null)[] };
}

/**
 * Everything needed to resume after a restart or failover, except waiters:
 * waiting callers are connected to the old process and retry on their own.
 */
export interface EngineSnapshot {
  version: 1;
  /** The engine clock's time when the snapshot was taken. */
  takenAt: Millis;
  resources: ResourceSnapshot[];
  /** Held leases. */
  leases: Lease[];
  /**
   * The snapshot's engine made lease ids with this prefix, and had issued
   * serials up to this one: a lease of that prefix with a later serial was
   * granted after the snapshot.
   */
  issued?: { prefix: string; serial: number };
}

/** Options of Engine.restore. */
export interface RestoreOptions {
  /**
   * Assume the previous leader may have kept granting until this time (for
   * example the end of its leadership lease): every limit starts as if fully
   * spent at `notBefore`. See Engine.restore for why this is enough.
   */
  notBefore?: Millis;
  /**
   * Nobody could heartbeat while no node led: every restored lease lives at
   * least one TTL from this time, so workers have a full TTL to re-attach.
   */
  leaseGraceFrom?: Millis;
}

/** The persistent state of one resource at `now`. */
export function snapshotResource(r: Resource, now: Millis): ResourceSnapshot {
  const unknown = r.unknownAt(now);
  const limits = r.limitStates();
  const learned = limits.map((g) => g.learned ?? null);
  const throttles = r.pause?.throttles ?? 0;
  const fed = throttles > 0 || r.pausedUntil > now || learned.some((l) => l !== null);
  return {
    ...(unknown > 0 && { unknownLeases: { count: unknown, until: r.unknown!.until } }),
    // JSON has no -Infinity: a resource never throttled writes no feedback.
    ...(fed && {
      feedback: {
        pausedUntil: Math.max(r.pausedUntil, 0),
        pauseStartedAt: Math.max(r.pause?.startedAt ?? -Infinity, 0),
        backoffMs: r.pause?.backoffMs ?? 0,
        throttles,
        learned,
      },
    }),
    spec: copySpec(r.spec, r.name),
    tats: limits.map((g) => g.tat),
    counters: {
      grants: r.grants,
      rejections: r.tally?.rejections ?? 0,
      timeouts: r.tally?.timeouts ?? 0,
      cancellations: r.tally?.cancellations ?? 0,
      expirations: r.tally?.expirations ?? 0,
    },
    lanes: r.laneStates().map((l) => ({ name: l.name, grants: l.grants, loadGranted: l.loadGranted })),
  };
}

/**
 * Loads a snapshot's state into a new resource made from the snapshot's
 * spec. With `notBefore`, every limit starts as if fully spent at that time
 * (Engine.restore says why that is enough). What the snapshot holds at its
 * defaults (limits all idle since one time, no counts) stays unmade.
 */
export function restoreResource(r: Resource, s: ResourceSnapshot, now: Millis, notBefore: Millis | undefined): void {
  const fb = s.feedback;
  if (fb !== undefined) {
    r.pausedUntil = fb.pausedUntil;
    const p = (r.pause = new PauseState());
    p.startedAt = fb.pauseStartedAt;
    p.backoffMs = fb.backoffMs;
    p.throttles = fb.throttles;
  }
  const specs = r.spec.limits;
  const since = specs.length === 0 ? now : (s.tats[0] ?? now);
  const alike = notBefore === undefined && specs.every((_, i) => typeof fb?.learned[i] !== "number" && Object.is(s.tats[i] ?? now, since));
  if (alike) r.limitsSince = since;
  else {
    r.ownLimits().forEach((g, i) => {
      // The learned rate first: the TAT below is in its terms.
      const learned = fb?.learned[i];
      if (typeof learned === "number" && learned > 0 && learned < g.spec.amount) g.learn(learned, now);
      let tat = s.tats[i] ?? now;
      if (notBefore !== undefined) tat = Math.max(tat, notBefore + g.tolerance);
      g.tat = tat;
    });
  }
  r.grants = s.counters.grants;
  const c = s.counters;
  if (c.rejections !== 0 || c.timeouts !== 0 || c.cancellations !== 0 || c.expirations !== 0) {
    const tally = r.ownTally();
    tally.rejections = c.rejections;
    tally.timeouts = c.timeouts;
    tally.cancellations = c.cancellations;
    tally.expirations = c.expirations;
  }
  if (s.lanes.some((ls) => ls.grants !== 0 || ls.loadGranted !== 0)) {
    const lanes = r.ownLanes();
    for (const ls of s.lanes) {
      const lane = lanes.find((l) => l.name === ls.name);
      if (lane) {
        lane.grants = ls.grants;
        lane.loadGranted = ls.loadGranted;
      }
    }
  }
}
