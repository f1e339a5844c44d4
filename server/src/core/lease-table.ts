// The held leases: by id, in expiry order, counted on their resources, and
// the memory of ended ones.
import { IndexedHeap } from "./indexed-heap.js";
import { base36, DIGIT_PAIRS, SHORT_DIGITS, type Resource } from "./resource.js";
import { type Ended, Tombstones } from "./tombstones.js";
import { addInFlight } from "./tree.js";
import type { Lease, Millis, ReleaseOutcome } from "./types.js";

/** Separates a lease id made by the default generator from its resource's tag. */
const tagSeparator = ".";


/** Where a default generator (of any engine) issued a lease id: its prefix, serial and resource tag. */
export interface IssuedId {
  prefix: string;
  serial: number;
  tag: string;
}

/** The parts of a lease id made by a default generator, or undefined for any other id. */
export function parseLeaseId(id: string): IssuedId | undefined {
  const match = /^([0-9a-z]+)-([0-9a-z]+)\.([0-9a-z]+)$/.exec(id);
  if (match === null) return undefined;
  const serial = parseInt(match[2]!, 36);
  return Number.isSafeInteger(serial) ? { prefix: match[1]!, serial, tag: match[3]! } : undefined;
}

/** A held lease. */
export class LeaseRecord {
  /** Position in the expiry heap. */
  index = -1;
  /** The table's serial number of an id it made itself; -1 otherwise. */
  serial = -1;
  /**
   * Restored from a snapshot and not heartbeated here since. Its holder may
   * have released it at the previous leader already (a release sent again
   * after a reconnect), so releasing it here must not free its slot while a
   * takeover's unknown leases are counted (Engine.release).
   */
  unconfirmed = false;
  /**
   * Where its resource's grant counters stood once this lease was counted
   * (grants, load granted): provider feedback on this call subtracts what
   * was granted after it. A restored or adopted lease counts from its restore.
   */
  markGrants = 0;
  markLoad = 0;
  /** The same marks for each ancestor of its resource, nearest first, as [grants, load, ...]; undefined for a root's lease. */
  ancestorMarks: number[] | undefined = undefined;
  /** When the table took it, counted: the table lists its leases in this order. */
  order = 0;

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
    return new LeaseCopy(this.id, this.res.name, this.load, this.owner, this.grantedAt, this.expiresAt, this.ttlMs);
  }
}

/**
 * A lease as callers see it: made by a constructor, not an object literal.
 * V8 watches the objects a literal makes and, when many of them outlive a
 * young-generation collection (as in a warm-up, or a burst of grants held
 * by a slow consumer), makes that literal allocate straight into the old
 * generation for good; a copy per grant then fills it with garbage. The
 * engine bench ran at half speed in about one run of three that way.
 */
class LeaseCopy implements Lease {
  constructor(
    readonly id: string,
    readonly resource: string,
    readonly load: number,
    readonly owner: string,
    readonly grantedAt: Millis,
    readonly expiresAt: Millis,
    readonly ttlMs: Millis,
  ) {}
}

/**
 * Every lease an engine holds. A lease is held from grant (or restore) until
 * it is released, expires, or its resource goes; while held it is in the id
 * map and the expiry heap and counts in its resource's inFlight. A released
 * or expired lease leaves a tombstone, so a late release can say how it ended.
 */
export class LeaseTable {
  /** The leases with ids the table made (by their serial), and the others (by id). */
  private readonly bySerial = new SerialIndex();
  private readonly byId = new Map<string, LeaseRecord>();
  /** Leases taken so far (LeaseRecord.order). */
  private taken = 0;
  private readonly expiries = new IndexedHeap<LeaseRecord>(
    (a, b) => a.expiresAt < b.expiresAt,
    (l) => l.index,
    (l, i) => {
      l.index = i;
    },
  );
  private readonly tombstones: Tombstones;
  private readonly newLeaseId: ((r: Resource) => string) | undefined;
  /** The default id generator's prefix and "-"; its ids carry a serial the tombstones index by. */
  private readonly idPrefix: string | undefined;
  private serial = 0;
  /** The default generator's id up to the serial's last two digits, and which serial / 36^2 it was made for. */
  private idHead = "";
  private idHeadOf = -1;

  /**
   * @param newLeaseId makes lease ids (unique for the server's lifetime);
   *   undefined: a random prefix per table, a serial and the resource's tag
   *   (only such ids can be re-attached to a new leader that did not know them).
   * @param tombstoneCapacity how many ended leases to remember.
   */
  constructor(newLeaseId: (() => string) | undefined, tombstoneCapacity: number) {
    this.tombstones = new Tombstones(tombstoneCapacity);
    if (newLeaseId !== undefined) {
      this.newLeaseId = () => newLeaseId();
      return;
    }
    this.newLeaseId = undefined;
    // A random prefix per engine keeps ids unique across restarts and
    // failover without reading any external state. The resource's tag ends
    // the id: a new leader that does not know the lease can still tell its
    // resource when the holder re-attaches it.
    const random8 = () =>
      Math.floor(Math.random() * 36 ** 8)
        .toString(36)
        .padStart(8, "0");
    this.idPrefix = random8() + random8() + "-";
  }

  /** The default generator's id of the current serial on r: `<prefix>-<serial in base 36>.<r's tag>`. */
  private defaultId(r: Resource): string {
    const serial = this.serial;
    const high = Math.floor(serial / (36 * 36));
    if (high !== this.idHeadOf) {
      this.idHeadOf = high;
      this.idHead = high === 0 ? (this.idPrefix as string) : this.idPrefix + base36(high);
    }
    const low = serial - high * 36 * 36;
    return this.idHead + (high === 0 ? SHORT_DIGITS[low] : DIGIT_PAIRS[low]) + r.idSuffix;
  }

  /** The default generator's prefix and the last serial it issued; undefined with a custom generator. */
  issued(): { prefix: string; serial: number } | undefined {
    return this.idPrefix === undefined ? undefined : { prefix: this.idPrefix.slice(0, -1), serial: this.serial };
  }

  /** `<prefix>-<serial>` of the last id the default generator issued; undefined with a custom generator. */
  lastIssued(): string | undefined {
    return this.idPrefix === undefined ? undefined : this.idPrefix + this.serial.toString(36);
  }

  /** Leases held. */
  get size(): number {
    return this.bySerial.size + this.byId.size;
  }

  /** The held lease with this id, or undefined. */
  get(id: string): LeaseRecord | undefined {
    if (this.idPrefix !== undefined) {
      // The id it was given proves the prefix and the form: no need to check them first.
      const serial = digitsAt(id, this.idPrefix.length);
      const rec = serial < 0 ? undefined : this.bySerial.get(serial);
      if (rec !== undefined && rec.id === id) return rec;
    }
    return this.byId.size === 0 ? undefined : this.byId.get(id);
  }

  /** Every held lease, in the order the table took them. */
  values(): LeaseRecord[] {
    const all = this.bySerial.toArray();
    for (const rec of this.byId.values()) all.push(rec);
    return all.sort((a, b) => a.order - b.order);
  }

  /** When the next held lease expires; undefined when none is held. */
  nextExpiry(): Millis | undefined {
    return this.expiries.peek()?.expiresAt;
  }

  /** A new lease of `load` on `r`, held from `now` for the resource's lease TTL. */
  grant(r: Resource, load: number, owner: string, now: Millis): LeaseRecord {
    const ttl = r.spec.leaseTtlMs;
    const serial = ++this.serial;
    const rec = new LeaseRecord(this.newLeaseId === undefined ? this.defaultId(r) : this.newLeaseId(r), r, load, owner, now, now + ttl, ttl);
    if (this.idPrefix !== undefined) rec.serial = serial;
    this.hold(rec);
    return rec;
  }

  /** Holds a lease from a snapshot on `r`, until `expiresAt`. */
  restore(l: Lease, r: Resource, expiresAt: Millis): void {
    const rec = new LeaseRecord(l.id, r, l.load, l.owner, l.grantedAt, expiresAt, l.ttlMs);
    rec.unconfirmed = true;
    this.hold(rec);
  }

  /**
   * Holds a lease this table does not know, granted by a previous leader on
   * `r` and heartbeated by its holder: from `now` for the lease TTL. Its
   * estimate is unknown, so its load is 0: its release charges the whole
   * actual load.
   */
  adopt(id: string, r: Resource, owner: string, now: Millis): LeaseRecord {
    const ttl = r.spec.leaseTtlMs;
    const rec = new LeaseRecord(id, r, 0, owner, now, now + ttl, ttl);
    this.hold(rec);
    return rec;
  }

  /** Extends a held lease to `now` + its resource's lease TTL. */
  extend(rec: LeaseRecord, now: Millis): void {
    rec.unconfirmed = false;
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

  /** Forgets the leases of deleted resources, leaving no tombstones (a later release says "unknown"). */
  dropResources(deleted: ReadonlySet<Resource>): void {
    for (const rec of this.values()) {
      if (!deleted.has(rec.res)) continue;
      this.unfile(rec);
      this.expiries.remove(rec);
      addInFlight(rec.res, -1);
    }
  }

  /** Forgets every lease and tombstone (a restore replaces them). */
  clear(): void {
    this.bySerial.clear();
    this.byId.clear();
    this.expiries.clear();
    this.tombstones.clear();
  }

  private hold(rec: LeaseRecord): void {
    const r = rec.res;
    rec.markGrants = r.grants;
    rec.markLoad = r.loadGrantedTotal;
    if (r.parent !== undefined) {
      const marks: number[] = [];
      for (let a: Resource | undefined = r.parent; a !== undefined; a = a.parent) marks.push(a.grants, a.loadGrantedTotal);
      rec.ancestorMarks = marks;
    }
    rec.order = ++this.taken;
    if (rec.serial >= 0) this.bySerial.add(rec);
    else this.byId.set(rec.id, rec);
    this.expiries.push(rec);
    addInFlight(r, 1);
  }

  private end(rec: LeaseRecord, how: Ended): void {
    this.unfile(rec);
    addInFlight(rec.res, -1);
    this.tombstones.add(rec.id, rec.serial, how);
  }

  private unfile(rec: LeaseRecord): void {
    if (rec.serial >= 0) this.bySerial.delete(rec);
    else this.byId.delete(rec.id);
  }

  /**
   * The serial of an id made by the default generator, or -1: the digits
   * between the prefix and the tag (or the end), in canonical base 36 (as
   * toString(36) writes a safe integer).
   */
  private serialOf(id: string): number {
    const p = this.idPrefix;
    if (p === undefined || !id.startsWith(p)) return -1;
    const n = digitsAt(id, p.length);
    // Canonical: no leading zero (toString(36) writes none), and a safe integer.
    if (n < 0 || !Number.isSafeInteger(n)) return -1;
    const leadingZero = id.charCodeAt(p.length) === 48 && p.length + 1 < id.length && id.charCodeAt(p.length + 1) !== 46;
    return leadingZero ? -1 : n;
  }
}

/** The base-36 number written in `id` from `start` up to a "." or the end (lower case digits only), or -1. */
function digitsAt(id: string, start: number): number {
  let n = 0;
  let i = start;
  for (; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c >= 48 && c <= 57) n = n * 36 + (c - 48);
    else if (c >= 97 && c <= 122) n = n * 36 + (c - 87);
    else if (c === 46) break;
    else return -1;
  }
  return i === start ? -1 : n;
}

/**
 * The leases whose ids the table made, by serial: open addressing over a
 * power-of-two array at most half full, probed linearly from a multiplicative
 * hash of the serial (serials come in order: used as their own hash they
 * would fill one long run of slots, and every deletion would shift along
 * all of it). Unlike a Map, taking and ending a lease allocates nothing (a
 * Map that keeps emptying and refilling rebuilds its table each time).
 */
class SerialIndex {
  size = 0;
  private slots: (LeaseRecord | undefined)[] = emptySlots(64);
  private mask = 63;
  /** 32 - log2(slots.length): home() keeps the hash's top bits. */
  private shift = 26;

  /** Where `serial` is looked for first (Fibonacci hashing). */
  private home(serial: number): number {
    return Math.imul(serial, 0x9e3779b1) >>> this.shift;
  }

  get(serial: number): LeaseRecord | undefined {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = this.home(serial); ; i = (i + 1) & mask) {
      const rec = slots[i];
      if (rec === undefined || rec.serial === serial) return rec;
    }
  }

  add(rec: LeaseRecord): void {
    if (2 * (this.size + 1) > this.slots.length) this.resize(2 * this.slots.length);
    this.place(rec);
    this.size++;
  }

  /** Removes a record that is in the index, closing the gap so that every probe still finds its record. */
  delete(rec: LeaseRecord): void {
    const slots = this.slots;
    const mask = this.mask;
    let hole = this.home(rec.serial);
    while (slots[hole] !== rec) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const next = slots[j];
      if (next === undefined) break;
      // next stays unless the hole lies on its probe path, between its home slot and j.
      const home = this.home(next.serial);
      if (((j - home) & mask) < ((j - hole) & mask)) continue;
      slots[hole] = next;
      hole = j;
    }
    slots[hole] = undefined;
    this.size--;
  }

  toArray(): LeaseRecord[] {
    const out: LeaseRecord[] = [];
    for (const rec of this.slots) if (rec !== undefined) out.push(rec);
    return out;
  }

  clear(): void {
    this.slots = emptySlots(64);
    this.mask = 63;
    this.shift = 26;
    this.size = 0;
  }

  private place(rec: LeaseRecord): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = this.home(rec.serial);
    while (slots[i] !== undefined) i = (i + 1) & mask;
    slots[i] = rec;
  }

  private resize(length: number): void {
    const old = this.slots;
    this.slots = emptySlots(length);
    this.mask = length - 1;
    this.shift = 32 - Math.log2(length);
    for (const rec of old) if (rec !== undefined) this.place(rec);
  }
}

function emptySlots(length: number): (LeaseRecord | undefined)[] {
  return Array.from({ length }, () => undefined);
}
