import { expect, test } from "vitest";
import { UsageWindow } from "./usage.js";

test("counts what was charged over the last period, forgetting older slices", () => {
  const w = new UsageWindow(1000);
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
