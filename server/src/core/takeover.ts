// After a takeover from a snapshot that may be stale: the leases the old
// leader may still hold on each capped resource without this engine knowing
// them, and how a holder's heartbeat re-attaches one (Engine.restore,
// Engine.heartbeat, Engine.release say how the engine uses this).
import { parseLeaseId } from "./lease-table.js";
import { UnknownLeases, type Resource } from "./resource.js";
import type { EngineSnapshot, ResourceSnapshot } from "./snapshot.js";
import type { Millis } from "./types.js";

/**
 * The leases a new leader must assume held on `r` without knowing them, and
 * until when it must be careful with the leases it does know.
 *
 * A snapshot taken at `takenAt` lists the leases held then (`known` of them
 * are on `r`); the old leader may have granted more until `notBefore` (when
 * it had certainly stopped), and those are unknown here until their holders
 * re-attach them. Their number is at most what each request limit could
 * grant from `takenAt` to `notBefore` (what it had available at the snapshot
 * plus what it refilled since), and at most what the cap left beside the
 * known leases that were still held at the old leader. A known lease may
 * have expired there before `notBefore` (`expiredKnown` of them could have:
 * their snapshot expiry is not after `notBefore`) and its slot been granted
 * again, while its holder, cut off, still uses it and re-attaches it here.
 * Every lease the old leader granted or extended expires there by
 * `notBefore` + the lease TTL, unless heartbeated, and a heartbeat can only
 * come here: that ends the window. Unknown leases a restored snapshot still
 * carried (a leader that itself took over recently) count too. Without
 * `notBefore` the snapshot is exact (a graceful handover, or our own memory)
 * and only carried ones count.
 */
export function unknownLeases(
  r: Resource,
  s: Pick<ResourceSnapshot, "tats" | "unknownLeases">,
  takenAt: Millis,
  known: number,
  expiredKnown: number,
  now: Millis,
  notBefore: Millis | undefined,
): { count: number; until: Millis } {
  const carried = s.unknownLeases !== undefined && s.unknownLeases.until > now ? s.unknownLeases : { count: 0, until: -Infinity };
  const cap = r.spec.concurrency;
  if (cap <= 0) return { count: 0, until: -Infinity };
  if (notBefore === undefined) return carried;
  let granted = Infinity;
  r.spec.limits.forEach((l, i) => {
    if (l.dimension !== "requests") return;
    // The rate the old leader granted at: a learned one is restored on r already.
    const interval = r.limits?.[i]?.interval ?? l.periodMs / l.amount;
    const tat = s.tats[i] ?? -Infinity;
    const available = l.burst - Math.max(0, tat - takenAt) / interval;
    granted = Math.min(granted, Math.floor(available + Math.max(0, notBefore - takenAt) / interval + 1e-9));
  });
  const count = Math.max(0, Math.min(cap - known + expiredKnown, granted)) + carried.count;
  return { count, until: Math.max(carried.until, notBefore + r.spec.leaseTtlMs) };
}

/** The resources whose takeover window is open, and what the restored snapshot's engine had issued. */
export class TakeoverWindow {
  private byTag = new Map<string, Resource>();
  private issued: { prefix: string; serial: number } | undefined;
  /** The restored snapshot's time and the restore's notBefore, for resources made after it (fresh). */
  private takenAt = -Infinity;
  private notBefore: Millis | undefined;

  /**
   * Opens the windows of a restore. `expiredKnown` counts, per resource, the
   * restored leases whose snapshot expiry is not after `notBefore`.
   */
  begin(s: EngineSnapshot, resources: Map<string, Resource>, expiredKnown: Map<Resource, number>, now: Millis, notBefore: Millis | undefined): void {
    this.byTag = new Map();
    for (const rs of s.resources) {
      const r = resources.get(rs.spec.name);
      if (r === undefined) continue;
      const unknown = unknownLeases(r, rs, s.takenAt, r.inFlight, expiredKnown.get(r) ?? 0, now, notBefore);
      // A window already closed counts nothing, now or later.
      r.unknown = unknown.until > now ? new UnknownLeases(unknown.count, unknown.until, s.takenAt + Math.min(rs.spec.leaseTtlMs, r.spec.leaseTtlMs)) : undefined;
      if (unknown.until > now) this.byTag.set(r.tag, r);
    }
    this.issued = notBefore === undefined ? undefined : s.issued;
    this.takenAt = s.takenAt;
    this.notBefore = notBefore;
  }

  /**
   * A resource made after the restore that the snapshot did not hold (a
   * keyed child made on first use): the old leader may have made it too
   * after its snapshot and granted on it until notBefore. It starts as a
   * restored resource would from a snapshot in which it was unused: every
   * limit spent at notBefore, and as many unknown leases as it could have
   * granted until then, for one lease TTL.
   */
  fresh(r: Resource, now: Millis): void {
    const notBefore = this.notBefore;
    if (notBefore === undefined) return;
    for (const g of r.ownLimits()) if (g.tat < notBefore + g.tolerance) g.tat = notBefore + g.tolerance;
    const unknown = unknownLeases(r, { tats: [] }, this.takenAt, 0, 0, now, notBefore);
    if (unknown.until <= now || unknown.count === 0) return;
    r.unknown = new UnknownLeases(unknown.count, unknown.until, this.takenAt + r.spec.leaseTtlMs);
    this.byTag.set(r.tag, r);
  }

  /** The resource an unknown lease id names while its window is open; else undefined. */
  resourceOf(id: string, now: Millis): Resource | undefined {
    if (this.byTag.size === 0) return undefined;
    const issued = parseLeaseId(id);
    const r = issued === undefined ? undefined : this.byTag.get(issued.tag);
    return r === undefined || r.deleted || r.unknown === undefined || now >= r.unknown.until ? undefined : r;
  }

  /**
   * A holder re-attaches `id` on `r`. Granted by the old leader after its
   * snapshot and not yet expired there whatever its heartbeats, it was held
   * there at the takeover, so it is one of the unknown leases: one fewer is
   * counted. Any other lease is one more held lease: its holder may have
   * been cut off from the old leader, which then expired it and granted its
   * slot again, to a lease that is still unknown here.
   */
  reattached(id: string, r: Resource, now: Millis): void {
    const issued = parseLeaseId(id);
    const old = this.issued;
    if (issued === undefined || old === undefined || issued.prefix !== old.prefix || issued.serial <= old.serial) return;
    const u = r.unknown;
    if (u !== undefined && now < u.stillHeldUntil && u.count > 0) u.count--;
  }

  /** Unknown leases counted now, across resources. */
  count(now: Millis): number {
    let n = 0;
    for (const r of this.byTag.values()) n += r.unknownAt(now);
    return n;
  }
}
