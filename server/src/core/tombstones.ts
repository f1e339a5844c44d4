// Memory of ended leases, so a late release can say "already released" or
// "expired" instead of "unknown".

/** How a lease ended. */
export type Ended = "released" | "expired";

/**
 * A bounded memory of ended lease ids.
 *
 * Leases whose ids the engine made itself carry a serial number; their
 * outcome goes into a direct-mapped table indexed by serial (no hashing of
 * strings, cache-friendly because serials are sequential): it holds at least
 * the last `capacity` ended leases among the last 2 x capacity issued, and an
 * older entry is only forgotten when a later serial lands on its slot. Other
 * ids (a custom id generator, leases restored from another leader) go into an
 * exact FIFO of `capacity` entries.
 */
export class Tombstones {
  private readonly mask: number;
  private readonly serials: Float64Array;
  private readonly outcomes: Uint8Array;
  private readonly byId = new Map<string, Ended>();
  /** FIFO ring of ids in byId (grown by push: a huge `new Array(n)` is a slow dictionary array). */
  private readonly ring: string[] = [];
  private pos = 0;

  /** @param capacity how many ended leases to remember; 0 remembers none. */
  constructor(private readonly capacity: number) {
    let size = 1;
    while (size < 2 * capacity) size *= 2;
    this.mask = capacity === 0 ? 0 : size - 1;
    this.serials = new Float64Array(capacity === 0 ? 0 : size).fill(-1);
    this.outcomes = new Uint8Array(capacity === 0 ? 0 : size);
  }

  /** Remembers that lease `id` (with `serial`, or -1 when it has none) ended. */
  add(id: string, serial: number, how: Ended): void {
    if (this.capacity === 0) return;
    if (serial >= 0) {
      const slot = serial & this.mask;
      this.serials[slot] = serial;
      this.outcomes[slot] = how === "released" ? 1 : 2;
      return;
    }
    if (this.ring.length < this.capacity) this.ring.push(id);
    else {
      this.byId.delete(this.ring[this.pos] as string);
      this.ring[this.pos] = id;
      this.pos = this.pos + 1 === this.capacity ? 0 : this.pos + 1;
    }
    this.byId.set(id, how);
  }

  /** How lease `id` (with `serial`, or -1) ended, or undefined if not remembered. */
  get(id: string, serial: number): Ended | undefined {
    if (this.capacity === 0) return undefined;
    if (serial >= 0) {
      const slot = serial & this.mask;
      if (this.serials[slot] !== serial) return undefined;
      return this.outcomes[slot] === 1 ? "released" : "expired";
    }
    return this.byId.get(id);
  }

  /** Forgets everything. */
  clear(): void {
    this.serials.fill(-1);
    this.byId.clear();
    this.ring.length = 0;
    this.pos = 0;
  }
}
