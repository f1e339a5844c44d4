// What a new leadership term starts from: a pure decision over what Redis
// holds, this node's previous term and the time. group.ts carries it out.
import type { EngineSnapshot, Millis, ResourceSnapshot } from "../core/index.js";
import type { StoredState, Term } from "./redis-store.js";

/** Where a new term's engine state comes from. */
export type TakeoverPlan =
  /** Nobody else led since this node's previous term: its memory is the latest truth. */
  | { kind: "memory" }
  /**
   * Redis lost its data (restarted without persistence): keep the memory,
   * but as if spent up to `notBefore`, since someone may have led after us,
   * and write its resources back.
   */
  | { kind: "memory-rewrite"; notBefore: Millis }
  /** The last leader stopped granting before it wrote this snapshot (graceful handover): exact as it is. */
  | { kind: "final-snapshot"; snapshot: EngineSnapshot }
  /** The last leader may have granted after its snapshot, up to `notBefore`. */
  | { kind: "snapshot"; snapshot: EngineSnapshot; notBefore: Millis }
  /** No snapshot: the stored resources, unused; `notBefore` when a reservation says a leader may have granted. */
  | { kind: "config"; snapshot: EngineSnapshot; notBefore: Millis | undefined };

const zeroCounters = { grants: 0, rejections: 0, timeouts: 0, cancellations: 0, expirations: 0 };

/**
 * Decides what term `term` starts from. `memoryTerm` is the last term whose
 * state this node's engine holds (undefined if it never led).
 */
export function planTakeover(term: Term, memoryTerm: Term | undefined, stored: StoredState, now: Millis): TakeoverPlan {
  if (memoryTerm !== undefined) {
    if (term.epoch === memoryTerm.epoch + 1 || stored.snapshot?.term === memoryTerm.value) return { kind: "memory" };
    if (stored.snapshot === undefined && stored.reservation === undefined && stored.resources.size === 0) {
      return { kind: "memory-rewrite", notBefore: now };
    }
  }
  const base = stored.snapshot?.snapshot ?? { version: 1, takenAt: now, resources: [], leases: [] };
  const previous = new Map(base.resources.map((r) => [r.spec.name, r]));
  // The hash holds the acknowledged specs; the snapshot only their state.
  const resources: ResourceSnapshot[] = [...stored.resources.values()].map((spec) => ({
    ...(previous.get(spec.name) ?? { tats: [], counters: { ...zeroCounters }, lanes: [] }),
    spec,
  }));
  const snapshot: EngineSnapshot = { ...base, resources };
  if (stored.snapshot?.final === true) return { kind: "final-snapshot", snapshot };
  // A leader may have granted up to its reservation (or now, whichever is later).
  if (stored.snapshot !== undefined) return { kind: "snapshot", snapshot, notBefore: Math.max(stored.reservation?.until ?? 0, now) };
  return { kind: "config", snapshot, notBefore: stored.reservation === undefined ? undefined : Math.max(stored.reservation.until, now) };
}
