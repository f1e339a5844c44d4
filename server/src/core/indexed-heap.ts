// A binary min-heap whose entries remember their own position, so any entry
// can be removed or re-positioned in O(log n). The engine uses it for lane
// queues, the deadline and lease-expiry heaps, and the simulated clock.

/** Stores an entry's position in the heap on the entry itself; -1 means "not in the heap". */
export type IndexSetter<T> = (entry: T, index: number) => void;
/** Reads the position stored by the matching {@link IndexSetter}. */
export type IndexGetter<T> = (entry: T) => number;

/**
 * A binary min-heap ordered by `less`, with O(log n) removal of any entry.
 *
 * The position lives on the entry (through `getIndex`/`setIndex`) rather than
 * in a side map, so an entry can sit in several heaps at once, each with its
 * own index field, and removal costs no hashing.
 */
export class IndexedHeap<T> {
  private readonly items: T[] = [];

  /**
   * @param less strict order: true when `a` must come out before `b`.
   * @param getIndex reads the entry's index field for this heap.
   * @param setIndex writes it; the heap sets -1 when an entry leaves.
   */
  constructor(
    private readonly less: (a: T, b: T) => boolean,
    private readonly getIndex: IndexGetter<T>,
    private readonly setIndex: IndexSetter<T>,
  ) {}

  /** Entries in the heap. */
  get size(): number {
    return this.items.length;
  }

  /** The smallest entry, or undefined when empty. */
  peek(): T | undefined {
    return this.items[0];
  }

  /** True when `entry` is in this heap. */
  has(entry: T): boolean {
    const i = this.getIndex(entry);
    return i >= 0 && i < this.items.length && this.items[i] === entry;
  }

  /** Adds an entry that is not already in the heap. */
  push(entry: T): void {
    const i = this.items.length;
    this.items.push(entry);
    this.setIndex(entry, i);
    this.up(i);
  }

  /** Removes and returns the smallest entry. */
  pop(): T | undefined {
    const items = this.items;
    if (items.length === 0) return undefined;
    const top = items[0] as T;
    const last = items.pop() as T;
    if (items.length > 0) {
      items[0] = last;
      this.setIndex(last, 0);
      this.down(0);
    }
    this.setIndex(top, -1);
    return top;
  }

  /** Removes `entry` if present; returns whether it was. */
  remove(entry: T): boolean {
    if (!this.has(entry)) return false;
    const items = this.items;
    const i = this.getIndex(entry);
    const last = items.pop() as T;
    if (i < items.length) {
      items[i] = last;
      this.setIndex(last, i);
      // The moved entry may belong above or below its new slot.
      if (!this.up(i)) this.down(i);
    }
    this.setIndex(entry, -1);
    return true;
  }

  /** Restores order after `entry`'s key changed (either direction). */
  update(entry: T): void {
    if (!this.has(entry)) return;
    const i = this.getIndex(entry);
    if (!this.up(i)) this.down(i);
  }

  /** Removes every entry (marking each as out of the heap). */
  clear(): T[] {
    const all = this.items.splice(0);
    for (const e of all) this.setIndex(e, -1);
    return all;
  }

  /** The entries in heap (not sorted) order; a copy. */
  toArray(): T[] {
    return this.items.slice();
  }

  private up(i: number): boolean {
    const items = this.items;
    const entry = items[i] as T;
    const start = i;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as T;
      if (!this.less(entry, parent)) break;
      items[i] = parent;
      this.setIndex(parent, i);
      i = p;
    }
    if (i !== start) {
      items[i] = entry;
      this.setIndex(entry, i);
      return true;
    }
    return false;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const entry = items[i] as T;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.less(items[r] as T, items[l] as T)) c = r;
      const child = items[c] as T;
      if (!this.less(child, entry)) break;
      items[i] = child;
      this.setIndex(child, i);
      i = c;
    }
    items[i] = entry;
    this.setIndex(entry, i);
  }
}
