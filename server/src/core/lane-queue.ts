// The waiting requests of one lane, in the order the lane serves them:
// higher priority first, then arrival. Requests of one priority arrive in
// order, so each priority is a linked list appended at its tail, and only
// the distinct priorities are kept in a heap: a grant, a cancel and a new
// request cost O(1) while few priorities are in use (O(log p) for p of them),
// however many requests wait.
import { IndexedHeap } from "./indexed-heap.js";

/** What a LaneQueue holds: its links live on the entry, so it is in at most one queue at a time. */
export interface Queued {
  /** Higher first. */
  readonly priority: number;
  /** Arrival order, unique: lower first among equal priorities. */
  readonly seq: number;
  /** The neighbours in its priority's list, and that list (undefined while out of any queue). */
  prev: Queued | undefined;
  next: Queued | undefined;
  bucket: Bucket | undefined;
}

/** The entries of one priority, in arrival order. */
export interface Bucket {
  /** The queue it belongs to. */
  readonly queue: LaneQueue<Queued>;
  readonly priority: number;
  head: Queued | undefined;
  tail: Queued | undefined;
  /** Position in the queue's heap of buckets. */
  index: number;
}

const higherFirst = (a: Bucket, b: Bucket): boolean => a.priority > b.priority;
const bucketIndex = (b: Bucket): number => b.index;
const setBucketIndex = (b: Bucket, i: number): void => {
  b.index = i;
};

/** A priority queue of {@link Queued} entries: by priority (higher first), then seq (lower first). */
export class LaneQueue<T extends Queued> {
  /** Entries queued. */
  size = 0;
  /** The buckets with entries, highest priority on top; made at the first push. */
  private heap: IndexedHeap<Bucket> | undefined;
  /** The same buckets by priority; made once a second priority is in use. */
  private byPriority: Map<number, Bucket> | undefined;

  /** The entry served next, or undefined when empty. */
  peek(): T | undefined {
    return this.heap?.peek()?.head as T | undefined;
  }

  /** Adds an entry that is in no queue. */
  push(entry: T): void {
    const b = this.bucketFor(entry.priority);
    // A newcomer has the highest seq; an entry moved from another lane may not.
    let after = b.tail;
    while (after !== undefined && after.seq > entry.seq) after = after.prev;
    const before = after === undefined ? b.head : after.next;
    entry.prev = after;
    entry.next = before;
    entry.bucket = b;
    if (after === undefined) b.head = entry;
    else after.next = entry;
    if (before === undefined) b.tail = entry;
    else before.prev = entry;
    this.size++;
  }

  /** Removes `entry` if it is in this queue; returns whether it was. */
  remove(entry: T): boolean {
    const b = entry.bucket;
    if (b === undefined || b.queue !== this) return false;
    const { prev, next } = entry;
    if (prev === undefined) b.head = next;
    else prev.next = next;
    if (next === undefined) b.tail = prev;
    else next.prev = prev;
    entry.prev = entry.next = entry.bucket = undefined;
    this.size--;
    if (b.head === undefined) this.dropBucket(b);
    return true;
  }

  /** Removes every entry and returns them, in no particular order. */
  clear(): T[] {
    const all = this.toArray();
    for (const e of all) e.prev = e.next = e.bucket = undefined;
    this.heap?.clear();
    this.byPriority?.clear();
    this.size = 0;
    return all;
  }

  /** Every entry, in no particular order; a copy. */
  toArray(): T[] {
    const out: T[] = [];
    if (this.heap !== undefined) for (const b of this.heap.toArray()) for (let e = b.head; e !== undefined; e = e.next) out.push(e as T);
    return out;
  }

  /** The bucket of `priority`, made (and put in the heap) when missing. */
  private bucketFor(priority: number): Bucket {
    const heap = (this.heap ??= new IndexedHeap<Bucket>(higherFirst, bucketIndex, setBucketIndex));
    const top = heap.peek();
    // One priority in use (the usual case): no map at all.
    if (top !== undefined && top.priority === priority) return top;
    if (top !== undefined && this.byPriority === undefined) this.byPriority = new Map([[top.priority, top]]);
    let b = this.byPriority?.get(priority);
    if (b === undefined) {
      b = { queue: this, priority, head: undefined, tail: undefined, index: -1 };
      heap.push(b);
      this.byPriority?.set(priority, b);
    }
    return b;
  }

  private dropBucket(b: Bucket): void {
    this.heap!.remove(b);
    this.byPriority?.delete(b.priority);
  }

}
