import fc from "fast-check";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { Deadlines, type Deadline } from "./deadlines.js";

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

interface Entry extends Deadline {
  name: number;
}

test("every entry comes due once, at its time, unless removed first; one timer for all", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ after: fc.integer({ min: 0, max: 500 }), removeAt: fc.option(fc.integer({ min: 1, max: 600 })) }), { maxLength: 60 }),
      (specs) => {
        vi.setSystemTime(1_000_000);
        const fired: { name: number; at: number }[] = [];
        const deadlines = new Deadlines<Entry>((e) => fired.push({ name: e.name, at: Date.now() }));
        const start = Date.now();
        const entries = specs.map((s, name): Entry => ({ name, dueAt: start + s.after, heapIndex: -1 }));
        for (const e of entries) deadlines.add(e);
        expect(vi.getTimerCount()).toBeLessThanOrEqual(1);
        for (let t = 0; t <= 600; t++) {
          specs.forEach((s, i) => {
            if (s.removeAt === t) deadlines.remove(entries[i]!);
          });
          vi.advanceTimersByTime(1);
        }
        const expected = specs
          .map((s, name) => ({ name, after: s.after, removed: s.removeAt !== null && s.removeAt < s.after }))
          .filter((e) => !e.removed);
        expect(fired.map((f) => f.name).sort((a, b) => a - b)).toEqual(expected.map((e) => e.name));
        for (const f of fired) {
          const due = start + specs[f.name]!.after;
          expect(f.at).toBeGreaterThanOrEqual(due);
          expect(f.at).toBeLessThanOrEqual(due + 1);
        }
        expect(deadlines.size).toBe(0);
      },
    ),
    { numRuns: 200 },
  );
});

test("an earlier deadline added later re-arms the timer; clear() forgets everything", () => {
  const fired: number[] = [];
  const deadlines = new Deadlines<Entry>((e) => fired.push(e.name));
  const now = Date.now();
  deadlines.add({ name: 1, dueAt: now + 1000, heapIndex: -1 });
  deadlines.add({ name: 2, dueAt: now + 10, heapIndex: -1 });
  vi.advanceTimersByTime(20);
  expect(fired).toEqual([2]);
  deadlines.clear();
  vi.advanceTimersByTime(2000);
  expect(fired).toEqual([2]);
  expect(vi.getTimerCount()).toBe(0);
});
