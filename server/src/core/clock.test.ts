import { describe, expect, it } from "vitest";
import { SimulatedClock, systemClock } from "./clock.js";

describe("SimulatedClock", () => {
  it("fires due timers in deadline order, ties in creation order, with now() at each timer", () => {
    const c = new SimulatedClock(100);
    const log: string[] = [];
    c.setTimer(130, () => log.push(`b@${c.now()}`));
    c.setTimer(110, () => log.push(`a@${c.now()}`));
    c.setTimer(130, () => log.push(`c@${c.now()}`));
    c.setTimer(200, () => log.push(`late@${c.now()}`));
    expect(c.pending()).toBe(4);
    c.advance(50);
    expect(log).toEqual(["a@110", "b@130", "c@130"]);
    expect(c.now()).toBe(150);
    expect(c.pending()).toBe(1);
  });

  it("fires timers created while advancing when they fall inside the window", () => {
    const c = new SimulatedClock();
    const log: number[] = [];
    c.setTimer(10, () => {
      log.push(c.now());
      c.setTimer(15, () => log.push(c.now()));
      c.setTimer(50, () => log.push(c.now()));
    });
    c.advance(20);
    expect(log).toEqual([10, 15]);
    c.advance(30);
    expect(log).toEqual([10, 15, 50]);
  });

  it("clears timers and refuses to go back in time", () => {
    const c = new SimulatedClock();
    let fired = false;
    const id = c.setTimer(5, () => {
      fired = true;
    });
    c.clearTimer(id);
    c.clearTimer(999);
    c.advance(10);
    expect(fired).toBe(false);
    expect(c.pending()).toBe(0);
    expect(() => c.advance(-1)).toThrow(RangeError);
  });

  it("fires an already-past timer on the next advance, at the current time", () => {
    const c = new SimulatedClock(100);
    let at = -1;
    c.setTimer(50, () => {
      at = c.now();
    });
    c.advance(0);
    expect(at).toBe(100);
  });
});

describe("systemClock", () => {
  it("fires a timer no earlier than its time and can be cleared", async () => {
    const t0 = systemClock.now();
    const fired = await new Promise<number>((resolve) => systemClock.setTimer(t0 + 20, () => resolve(systemClock.now())));
    expect(fired).toBeGreaterThanOrEqual(t0 + 20);
    let ran = false;
    const id = systemClock.setTimer(systemClock.now() + 5, () => {
      ran = true;
    });
    systemClock.clearTimer(id);
    await new Promise((r) => setTimeout(r, 20));
    expect(ran).toBe(false);
  });

  it("accepts delays beyond 2^31-1 ms (re-armed, not fired at once)", async () => {
    let ran = false;
    const id = systemClock.setTimer(systemClock.now() + 2 ** 31 + 1000, () => {
      ran = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(ran).toBe(false);
    systemClock.clearTimer(id);
  });
});
