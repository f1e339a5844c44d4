import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IndexedHeap } from "./indexed-heap.js";

interface Item {
  key: number;
  idx: number;
}

function heap(): IndexedHeap<Item> {
  return new IndexedHeap<Item>(
    (a, b) => a.key < b.key,
    (x) => x.idx,
    (x, i) => {
      x.idx = i;
    },
  );
}

describe("IndexedHeap", () => {
  it("pops in order and marks popped entries out", () => {
    const h = heap();
    const items = [5, 1, 4, 2, 3].map((key) => ({ key, idx: -1 }));
    for (const i of items) h.push(i);
    expect(h.peek()?.key).toBe(1);
    const out: number[] = [];
    for (let x = h.pop(); x; x = h.pop()) {
      expect(x.idx).toBe(-1);
      out.push(x.key);
    }
    expect(out).toEqual([1, 2, 3, 4, 5]);
    expect(h.pop()).toBeUndefined();
  });

  it("removes arbitrary entries and re-positions updated ones", () => {
    const h = heap();
    const items = [5, 1, 4, 2, 3].map((key) => ({ key, idx: -1 }));
    for (const i of items) h.push(i);
    expect(h.remove(items[2] as Item)).toBe(true);
    expect(h.remove(items[2] as Item)).toBe(false);
    (items[0] as Item).key = 0;
    h.update(items[0] as Item);
    expect(h.pop()?.key).toBe(0);
    expect(h.size).toBe(3);
  });

  it("matches a sorted model under random push/remove/pop", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("push", "pop", "remove"), fc.integer({ min: 0, max: 50 })), { maxLength: 200 }),
        (ops) => {
          const h = heap();
          const model: Item[] = [];
          for (const [op, n] of ops) {
            if (op === "push") {
              const it = { key: n, idx: -1 };
              h.push(it);
              model.push(it);
            } else if (op === "pop") {
              const x = h.pop();
              if (model.length === 0) expect(x).toBeUndefined();
              else {
                const min = Math.min(...model.map((m) => m.key));
                expect(x?.key).toBe(min);
                model.splice(model.indexOf(x as Item), 1);
              }
            } else if (model.length > 0) {
              const victim = model[n % model.length] as Item;
              expect(h.remove(victim)).toBe(true);
              model.splice(model.indexOf(victim), 1);
            }
            expect(h.size).toBe(model.length);
          }
        },
      ),
    );
  });
});
