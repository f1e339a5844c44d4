// The held leases: by id, in expiry order, counted on their resources, and
// the memory of ended ones.
import { IndexedHeap } from "./indexed-heap.js";
import type { Resource } from "./resource.js";
import { type Ended, Tombstones } from "./tombstones.js";
import type { Lease, Millis, ReleaseOutcome } from "./types.js";

/** A held lease. */
export class LeaseRecord {
  /** Position in the expiry heap. */
  index = -1;
  /** The table's serial number of an id it made itself; -1 otherwise. */
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

/**
 * Every lease an engine holds. A lease is held from grant (or restore) until
 * it is released, expires, or its resource goes; while held it is in the id
 * map and the expiry heap and counts in its resource's inFlight. A released
 * or expired lease leaves a tombstone, so a late release can say how it ended.
 */
export class LeaseTable {
  private readonly byId = new Map<string, LeaseRecord>();
  private readonly expiries = new IndexedHeap<LeaseRecord>(
    (a, b) => a.expiresAt < b.expiresAt,
    (l) => l.index,
    (l, i) => {
      l.index = i;
    },
  );
  private readonly tombstones: Tombstones;
  private readonly newLeaseId: () => string;
  /** The default id generator's prefix; its ids carry a serial the tombstones index by. */
  private readonly idPrefix: string | undefined;
  private serial = 0;

  /**
   * @param newLeaseId makes lease ids (unique for the server's lifetime);
   *   undefined: a random prefix per table and a serial.
   * @param tombstoneCapacity how many ended leases to remember.
   */
  constructor(newLeaseId: (() => string) | undefined, tombstoneCapacity: number) {
    this.tombstones = new Tombstones(tombstoneCapacity);
    if (newLeaseId !== undefined) this.newLeaseId = newLeaseId;
    else {
      // A random prefix per engine keeps ids unique across restarts and
      // failover without reading any external state.
      const prefix = Math.floor(Math.random() * 36 ** 8)
        .toString(36)
        .padStart(8, "0");
      this.idPrefix = prefix + "-";
      this.newLeaseId = () => prefix + "-" + this.serial.toString(36);
    }
  }

  /** Leases held. */
  get size(): number {
    return this.byId.size;
  }

  /** The held lease with this id, or undefined. */
  get(id: string): LeaseRecord | undefined {
    return this.byId.get(id);
  }

  /** Every held lease. */
  values(): IterableIterator<LeaseRecord> {
    return this.byId.values();
  }

  /** When the next held lease expires; undefined when none is held. */
  nextExpiry(): Millis | undefined {
    return this.expiries.peek()?.expiresAt;
  }

  /** A new lease of `load` on `r`, held from `now` for the resource's lease TTL. */
  grant(r: Resource, load: number, owner: string, now: Millis): LeaseRecord {
    const ttl = r.spec.leaseTtlMs;
    const serial = ++this.serial;
    const rec = new LeaseRecord(this.newLeaseId(), r, load, owner, now, now + ttl, ttl);
    if (this.idPrefix !== undefined) rec.serial = serial;
    this.hold(rec);
    return rec;
  }

  /** Holds a lease from a snapshot on `r`, until `expiresAt`. */
  restore(l: Lease, r: Resource, expiresAt: Millis): void {
    this.hold(new LeaseRecord(l.id, r, l.load, l.owner, l.grantedAt, expiresAt, l.ttlMs));
  }

  /** Extends a held lease to `now` + its resource's lease TTL. */
  extend(rec: LeaseRecord, now: Millis): void {
    rec.ttlMs = rec.res.spec.leaseTtlMs;
    rec.expiresAt = now + rec.ttlMs;
    this.expiries.update(rec);
  }

  /** Ends a held lease by its release. */
  release(rec: LeaseRecord): void {
    this.expiries.remove(rec);
    this.end(rec, "released");
  }

  /** Ends and returns the earliest lease whose expiry is at or before `now`; undefined when none. */
  popExpired(now: Millis): LeaseRecord | undefined {
    const top = this.expiries.peek();
    if (top === undefined || top.expiresAt > now) return undefined;
    this.expiries.pop();
    this.end(top, "expired");
    return top;
  }

  /** What a release of a lease that is not held finds, as far as the tombstones remember. */
  endedAs(id: string): Exclude<ReleaseOutcome, "released"> {
    const t = this.tombstones.get(id, this.serialOf(id));
    return t === "released" ? "already_released" : t === "expired" ? "expired" : "unknown";
  }

  /** Forgets the leases of a deleted resource, leaving no tombstones (a later release says "unknown"). */
  dropResource(r: Resource): void {
    for (const rec of this.byId.values()) {
      if (rec.res !== r) continue;
      this.byId.delete(rec.id);
      this.expiries.remove(rec);
    }
    r.inFlight = 0;
  }

  /** Forgets every lease and tombstone (a restore replaces them). */
  clear(): void {
    this.byId.clear();
    this.expiries.clear();
    this.tombstones.clear();
  }

  private hold(rec: LeaseRecord): void {
    this.byId.set(rec.id, rec);
    this.expiries.push(rec);
    rec.res.inFlight++;
  }

  private end(rec: LeaseRecord, how: Ended): void {
    this.byId.delete(rec.id);
    rec.res.inFlight--;
    this.tombstones.add(rec.id, rec.serial, how);
  }

  /** The serial of an id made by the default generator, or -1. */
  private serialOf(id: string): number {
    const p = this.idPrefix;
    if (p === undefined || !id.startsWith(p)) return -1;
    const n = parseInt(id.slice(p.length), 36);
    return Number.isSafeInteger(n) && n.toString(36) === id.slice(p.length) ? n : -1;
  }
}
