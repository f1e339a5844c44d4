import { describe, expect, it } from "vitest";
import { Gcra } from "./gcra.js";
import type { LimitSpec } from "./types.js";

const tenPerSecond: LimitSpec = { dimension: "requests", amount: 10, periodMs: 1000, burst: 10 };

describe("Gcra", () => {
  it("admits a full burst at once, then one unit every T exactly", () => {
    const g = new Gcra(tenPerSecond, 0);
    expect(g.interval).toBe(100);
    for (let i = 0; i < 10; i++) {
      expect(g.fits(1, 0)).toBe(true);
      g.charge(1, 0);
    }
    expect(g.fits(1, 0)).toBe(false);
    expect(g.availableAt(1, 0)).toBe(100);
    expect(g.fits(1, 99)).toBe(false);
    expect(g.fits(1, 100)).toBe(true);
    g.charge(1, 100);
    expect(g.availableAt(1, 100)).toBe(200);
  });

  it("refills while idle but never beyond the burst", () => {
    const g = new Gcra(tenPerSecond, 0);
    g.charge(10, 0);
    expect(g.available(0)).toBe(0);
    expect(g.available(500)).toBe(5);
    expect(g.available(5000)).toBe(10);
    expect(g.fits(10, 5000)).toBe(true);
    expect(g.fits(11, 5000)).toBe(false);
    expect(g.canEverFit(11)).toBe(false);
  });

  it("costs 1 per request on request limits and the load on load limits; 0 load is free", () => {
    expect(new Gcra(tenPerSecond, 0).cost(500)).toBe(1);
    const load = new Gcra({ dimension: "load", amount: 30000, periodMs: 60000, burst: 30000 }, 0);
    expect(load.cost(500)).toBe(500);
    load.charge(30000, 0);
    expect(load.fits(0, 0)).toBe(true);
    expect(load.fits(1, 0)).toBe(false);
    expect(load.availableAt(1, 0)).toBe(2);
  });

  it("charges and refunds after the fact; a refund below now is harmless", () => {
    const g = new Gcra({ dimension: "load", amount: 100, periodMs: 1000, burst: 100 }, 0);
    g.charge(100, 0);
    g.adjust(-100);
    expect(g.available(0)).toBe(100);
    g.adjust(-50); // TAT now below now: still just "full"
    expect(g.available(0)).toBe(100);
    expect(g.fits(100, 0)).toBe(true);
    expect(g.fits(101, 0)).toBe(false);
    g.charge(100, 0);
    g.adjust(+50); // overcharge: debt beyond the burst
    expect(g.available(0)).toBe(0);
    expect(g.availableAt(1, 0)).toBe(510);
  });

  it("keeps the debt in units when the limit changes", () => {
    const g = new Gcra(tenPerSecond, 0);
    g.charge(6, 0); // 6 units of debt, repaid at 100 ms each
    g.reconfigure({ dimension: "requests", amount: 20, periodMs: 1000, burst: 8 }, 0);
    expect(g.debtUnits(0)).toBeCloseTo(6, 12);
    expect(g.available(0)).toBeCloseTo(2, 12);
    expect(g.availableAt(3, 0)).toBeCloseTo(50, 9);
  });

  it("wakes exactly at availableAt even with a non-integer interval", () => {
    const g = new Gcra({ dimension: "requests", amount: 3, periodMs: 1000, burst: 3 }, 0);
    let now = 0;
    for (let i = 0; i < 50; i++) {
      const at = g.availableAt(1, now);
      expect(g.fits(1, at)).toBe(true);
      now = at;
      g.charge(1, now);
    }
    // 50 grants with burst 3: the last at (50 - 3) * T.
    expect(now).toBeCloseTo((47 * 1000) / 3, 6);
  });
});
