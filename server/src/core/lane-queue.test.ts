import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LaneQueue, type Bucket, type Queued } from "./lane-queue.js";

interface Item extends Queued {
  prev: Item | undefined;
  next: Item | undefined;
  bucket: Bucket | undefined;
}

const item = (priority: number, seq: number): Item => ({ priority, seq, prev: undefined, next: undefined, bucket: undefined });

/** The serving order: higher priority first, then lower seq. */
const first = (a: Item, b: Item) => b.priority - a.priority || a.seq - b.seq;

describe("LaneQueue", () => {
  it("serves higher priorities first, then arrival order", () => {
    const q = new LaneQueue<Item>();
    const items = [item(0, 1), item(2, 2), item(0, 3), item(1, 4), item(2, 5)];
    for (const i of items) q.push(i);
    const out: number[] = [];
    for (let x = q.peek(); x !== undefined; x = q.peek()) {
      out.push(x.seq);
      expect(q.remove(x)).toBe(true);
    }
    expect(out).toEqual([2, 5, 4, 1, 3]);
    expect(q.size).toBe(0);
  });

  it("puts an entry moved from elsewhere (an older seq) in its place", () => {
    const q = new LaneQueue<Item>();
    for (const s of [5, 9]) q.push(item(1, s));
    q.push(item(1, 7));
    q.push(item(1, 2));
    expect(q.toArray().sort(first).map((i) => i.seq)).toEqual([2, 5, 7, 9]);
    expect(q.peek()?.seq).toBe(2);
  });

  it("refuses to remove what it does not hold, and clear empties it", () => {
    const a = new LaneQueue<Item>();
    const b = new LaneQueue<Item>();
    const x = item(0, 1);
    a.push(x);
    expect(b.remove(x)).toBe(false);
    expect(a.clear()).toEqual([x]);
    expect(a.size).toBe(0);
    expect(a.peek()).toBeUndefined();
    expect(a.remove(x)).toBe(false);
    a.push(x);
    expect(a.peek()).toBe(x);
  });

  it("matches a sorted model under random push/remove", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("push", "push", "remove", "removeHead", "clear"), fc.integer({ min: -3, max: 3 }), fc.nat(1000)), { maxLength: 300 }),
        (ops) => {
          const q = new LaneQueue<Item>();
          let model: Item[] = [];
          let seq = 0;
          for (const [op, priority, n] of ops) {
            if (op === "push") {
              // Mostly newcomers; now and then an older seq, as a waiter moved from a removed lane.
              const it = item(priority, n % 7 === 0 ? -n : ++seq);
              if (model.some((m) => m.seq === it.seq)) continue;
              q.push(it);
              model.push(it);
            } else if (op === "remove" && model.length > 0) {
              const victim = model[n % model.length] as Item;
              expect(q.remove(victim)).toBe(true);
              model = model.filter((m) => m !== victim);
            } else if (op === "removeHead" && model.length > 0) {
              const head = q.peek() as Item;
              expect(head).toBe([...model].sort(first)[0]);
              q.remove(head);
              model = model.filter((m) => m !== head);
            } else if (op === "clear") {
              expect(q.clear().sort(first)).toEqual([...model].sort(first));
              model = [];
            }
            expect(q.size).toBe(model.length);
            expect(q.peek()).toBe(model.length === 0 ? undefined : [...model].sort(first)[0]);
          }
        },
      ),
    );
  });
});
