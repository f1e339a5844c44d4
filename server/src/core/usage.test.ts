import fc from "fast-check";
import { expect, test } from "vitest";
import { addUsage, newUsageWindow, usageOver } from "./usage.js";

/** A window of one limit of `periodMs`, as a limit uses it. */
function window(periodMs: number) {
  const w = newUsageWindow();
  return { add: (units: number, now: number) => addUsage(w, periodMs, units, now), used: (now: number) => usageOver(w, periodMs, now) };
}

test("counts what was charged over the last period, forgetting older slices", () => {
  const w = window(1000);
  w.add(5, 0);
  w.add(3, 450);
  expect(w.used(999)).toBe(8);
  w.add(-2, 500); // a refund
  expect(w.used(999)).toBe(6);
  expect(w.used(1050)).toBe(1); // the slice of 0 ms has aged out, those of 450 and 500 remain
  expect(w.used(1600)).toBe(0);
  w.add(4, 5000);
  expect(w.used(5000)).toBe(4);
});

/** The plain model: every charge kept with its slice; used() sums the slices of the last period. */
test("matches a model that keeps every charge, whatever the steps of time", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(100, 1000, 3, 60_000),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: -5, max: 20 })), { maxLength: 60 }),
      (periodMs, steps) => {
        const w = window(periodMs);
        const sliceMs = Math.max(1, periodMs / 10);
        const charges: { slice: number; units: number }[] = [];
        let now = 1_000_000;
        for (const [dt, units] of steps) {
          now += dt;
          w.add(units, now);
          charges.push({ slice: Math.floor(now / sliceMs), units });
          const current = Math.floor(now / sliceMs);
          const sum = charges.filter((c) => c.slice > current - 10).reduce((s, c) => s + c.units, 0);
          expect(w.used(now)).toBe(Math.max(0, sum));
          expect(w.used(now + 10 * sliceMs)).toBe(0);
        }
      },
    ),
  );
});
