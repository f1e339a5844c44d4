// The engine's persistent state: what a snapshot carries to Redis and to a
// standby leader. Plain JSON values only.
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
