// One timer for every request the client would give up on by itself (an
// acquire 2 s past its timeout, a release at its lease's TTL): a heap of
// deadlines and a single timer armed for the earliest. A timer per request
// cost an allocation and a timer-list insert and removal each; most
// requests are answered long before their deadline.

/** An entry of the heap: when it is due, and its place in the heap (-1 when out). */
export interface Deadline {
  dueAt: number;
  heapIndex: number;
}

export class Deadlines<T extends Deadline> {
  private readonly heap: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (epoch ms); Infinity when none is armed. */
  private armedFor = Infinity;

  /** @param due called, from the timer, with every entry whose time has come (already removed). */
  constructor(private readonly due: (entry: T) => void) {}

  get size(): number {
    return this.heap.length;
  }

  /** Adds an entry that is not in the heap. */
  add(entry: T): void {
    entry.heapIndex = this.heap.length;
    this.heap.push(entry);
    this.up(entry.heapIndex);
    // Re-arm only for an earlier deadline: a later one is found when the timer fires.
    if (entry.dueAt < this.armedFor) this.arm(entry.dueAt);
  }

  /** Removes an entry if it is in the heap. The timer stays armed: it re-arms itself when it fires. */
  remove(entry: T): void {
    const i = entry.heapIndex;
    if (i < 0 || this.heap[i] !== entry) return;
    entry.heapIndex = -1;
    const last = this.heap.pop()!;
    if (last === entry) return;
    this.heap[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  /** Stops the timer and forgets every entry. */
  clear(): void {
    for (const entry of this.heap) entry.heapIndex = -1;
    this.heap.length = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(this.fire, Math.max(0, at - Date.now()));
    // Pending answers keep the process alive, not their deadlines.
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = Date.now();
    while (this.heap.length > 0 && this.heap[0]!.dueAt <= now) {
      const entry = this.heap[0]!;
      this.remove(entry);
      this.due(entry);
    }
    if (this.heap.length > 0 && this.heap[0]!.dueAt < this.armedFor) this.arm(this.heap[0]!.dueAt);
  };

  private up(i: number): void {
    const { heap } = this;
    const entry = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.dueAt <= entry.dueAt) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }

  private down(i: number): void {
    const { heap } = this;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.dueAt < heap[l]!.dueAt ? r : l;
      const child = heap[c]!;
      if (child.dueAt >= entry.dueAt) break;
      heap[i] = child;
      child.heapIndex = i;
      i = c;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }
}
