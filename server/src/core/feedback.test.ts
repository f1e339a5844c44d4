import { describe, expect, it } from "vitest";
import { SimulatedClock } from "./clock.js";
import { Engine } from "./engine.js";
import type { AcquireResult, FeedbackEvent, Lease, LimitSpec, ProviderFeedback, ResourceSpec } from "./types.js";

function spec(over: Partial<ResourceSpec> = {}): ResourceSpec {
  return {
    name: "api",
    limits: [],
    concurrency: 0,
    lanes: [{ name: "default", weight: 1 }],
    defaultLane: "default",
    leaseTtlMs: 30_000,
    maxQueue: 10_000,
    ...over,
  };
}
const rps = (amount: number, burst = amount, periodMs = 1000): LimitSpec => ({ dimension: "requests", amount, periodMs, burst });
const tokens = (amount: number, burst = amount, unit?: string, periodMs = 60_000): LimitSpec => ({
  dimension: "load",
  amount,
  periodMs,
  burst,
  ...(unit !== undefined && { unit }),
});
const throttled = (retryAfterMs?: number): ProviderFeedback => ({ throttled: true, ...(retryAfterMs !== undefined && { retryAfterMs }) });

function setup(s: ResourceSpec) {
  const clock = new SimulatedClock(0);
  const events: FeedbackEvent[] = [];
  const engine = new Engine({
    clock,
    onFeedback: (e) => events.push(e),
    onCallbackError: (err) => {
      throw err;
    },
  });
  engine.putResource(s);
  const granted: Lease[] = [];
  const failed: string[] = [];
  const acq = (load = 1, deadline?: number, tag?: string) =>
    engine.acquire({ resource: s.name, load, priority: 10, lane: "", owner: tag ?? "w", ...(deadline !== undefined && { deadline }) }, (r: AcquireResult) => {
      if (r.ok) granted.push(r.grant.lease);
      else failed.push(r.failure.code);
    });
  return { clock, engine, events, granted, failed, acq };
}

describe("provider feedback: pauses", () => {
  it("a throttled release with retry-after pauses the resource; waiters stay queued in order and are served after it at the steady rate", () => {
    const { clock, engine, granted, failed, acq } = setup(spec({ limits: [rps(10, 5)] }));
    for (let i = 0; i < 5; i++) acq(1, undefined, `early${i}`);
    expect(granted).toHaveLength(5);
    for (let i = 0; i < 6; i++) acq(1, undefined, `w${i}`);
    engine.release(granted[0]!.id, undefined, undefined, throttled(2000));
    expect(engine.stats("api")?.pausedUntil).toBe(2000);
    clock.advance(1999);
    expect(granted).toHaveLength(5);
    clock.advance(1000);
    // Resumed at 10/s from the pause's end: no burst, although 2 s refilled it.
    expect(granted.slice(5).map((l) => [l.owner, l.grantedAt])).toEqual([
      ["w0", 2100],
      ["w1", 2200],
      ["w2", 2300],
      ["w3", 2400],
      ["w4", 2500],
      ["w5", 2600],
    ]);
    expect(failed).toEqual([]);
    expect(engine.stats("api")?.throttles).toBe(1);
  });

  it("deadlines keep running during a pause; a waiter whose deadline passes fails DEADLINE_EXCEEDED, the rest are served", () => {
    const { clock, engine, granted, failed, acq } = setup(spec({ limits: [rps(10, 1)] }));
    acq();
    acq(1, 500);
    acq(1, 10_000);
    engine.release(granted[0]!.id, undefined, undefined, throttled(1000));
    clock.advance(600);
    expect(failed).toEqual(["DEADLINE_EXCEEDED"]);
    clock.advance(1000);
    expect(granted.map((l) => l.grantedAt)).toEqual([0, 1100]);
  });

  it("the latest end of overlapping pauses wins; an earlier one does not shorten it", () => {
    const { clock, engine, granted, acq } = setup(spec({ limits: [rps(100)] }));
    acq();
    acq();
    engine.release(granted[0]!.id, undefined, undefined, throttled(5000));
    clock.advance(1000);
    engine.release(granted[1]!.id, undefined, undefined, throttled(1000));
    expect(engine.stats("api")?.pausedUntil).toBe(5000);
    expect(engine.report("api", throttled(6000))).toEqual({ pausedUntil: 7000 });
    acq();
    clock.advance(5999);
    expect(granted).toHaveLength(2);
    clock.advance(20);
    expect(granted.map((l) => l.grantedAt)).toEqual([0, 0, 7010]);
  });

  it("without retry-after: the cooldown, doubling for calls granted after the pause, not for calls already in flight; a success resets it", () => {
    const { clock, engine, granted, events, acq } = setup(spec({ limits: [rps(1000)], cooldownMs: 500 }));
    for (let i = 0; i < 3; i++) acq();
    // Three calls in flight; the first refusal pauses 500 ms, the other two were sent before it: the same news.
    engine.release(granted[0]!.id, undefined, undefined, throttled());
    engine.release(granted[1]!.id, undefined, undefined, throttled());
    clock.advance(10);
    engine.release(granted[2]!.id, undefined, undefined, throttled());
    expect(engine.stats("api")?.pausedUntil).toBe(510);
    const pauses = () => events.filter((e) => e.kind === "paused").map((e) => (e.kind === "paused" ? e.pauseMs : 0));
    expect(pauses()).toEqual([500, 500]);
    // A call after the pause is refused again: 1 s, then 2 s.
    clock.advanceTo(600);
    acq();
    engine.release(granted[3]!.id, undefined, undefined, throttled());
    expect(engine.stats("api")?.pausedUntil).toBe(1600);
    clock.advanceTo(1700);
    acq();
    engine.release(granted[4]!.id, undefined, undefined, throttled());
    expect(engine.stats("api")?.pausedUntil).toBe(3700);
    // A call after it succeeds: the next refusal starts from the cooldown again.
    clock.advanceTo(3800);
    acq();
    engine.release(granted[5]!.id, undefined, undefined, { throttled: false });
    acq();
    engine.release(granted[6]!.id, undefined, undefined, throttled());
    expect(engine.stats("api")?.pausedUntil).toBe(4300);
  });

  it("doubling stops at 60 s", () => {
    const { clock, engine, acq, granted, events } = setup(spec({ cooldownMs: 20_000 }));
    for (let i = 0; i < 4; i++) {
      acq();
      engine.release(granted[i]!.id, undefined, undefined, throttled());
      clock.advanceTo((engine.stats("api")?.pausedUntil ?? 0) + 1);
    }
    expect(events.map((e) => (e.kind === "paused" ? e.pauseMs : 0))).toEqual([20_000, 40_000, 60_000, 60_000]);
    expect(engine.stats("api")).toMatchObject({ throttles: 4 });
    expect(engine.report("api", { throttled: false })?.pausedUntil).toBeUndefined();
  });

  it("a limit learned or put during a pause keeps the pause's length and its end without a burst", () => {
    const { clock, engine, granted, acq } = setup(spec({ limits: [rps(10, 5)] }));
    acq();
    engine.release(granted[0]!.id, undefined, undefined, throttled(1000));
    // 5 per second learned during the pause: from its end one every 200 ms.
    engine.report("api", { throttled: false, requests: { limit: 300 } });
    for (let i = 0; i < 3; i++) acq();
    clock.advance(2000);
    expect(granted.slice(1).map((l) => l.grantedAt)).toEqual([1200, 1400, 1600]);
    // Put faster during a new pause: it still ends at its time, then the new rate, no burst.
    engine.report("api", throttled(1000));
    engine.putResource(spec({ limits: [rps(20, 5)] }));
    for (let i = 0; i < 2; i++) acq();
    clock.advance(2000);
    expect(granted.slice(4).map((l) => l.grantedAt)).toEqual([3050, 3100]);
  });

  it("a pause holds a resource with no rate limit too (concurrency only)", () => {
    const { clock, engine, granted, acq } = setup(spec({ concurrency: 5 }));
    acq();
    engine.release(granted[0]!.id, undefined, undefined, throttled(300));
    acq();
    expect(granted).toHaveLength(1);
    clock.advance(300);
    expect(granted.map((l) => l.grantedAt)).toEqual([0, 300]);
  });

  it("a throttled call keeps its request charge and is refunded its load, unless it says what it spent", () => {
    const { engine, granted, acq } = setup(spec({ limits: [rps(10), tokens(1000)] }));
    acq(400);
    acq(400);
    engine.release(granted[0]!.id, undefined, undefined, throttled(1));
    const used = () => engine.stats("api")!.limits.map((l) => l.usedLastPeriod);
    expect(used()).toEqual([2, 400]);
    engine.release(granted[1]!.id, 100, undefined, throttled(1));
    expect(used()).toEqual([2, 100]);
  });
});

describe("provider feedback: remaining and learned limits", () => {
  it("remaining lowers the budget to what the provider has left minus what was granted after the reported call", () => {
    const { clock, engine, granted, acq } = setup(spec({ limits: [rps(10, 10)] }));
    for (let i = 0; i < 4; i++) acq();
    // The first call's answer: 3 left. Three more were granted after it and the provider has not seen them.
    engine.release(granted[0]!.id, undefined, undefined, { throttled: false, requests: { remaining: 3 } });
    expect(engine.stats("api")!.limits[0]!.available).toBeCloseTo(0);
    acq();
    expect(granted).toHaveLength(4);
    clock.advance(100);
    expect(granted).toHaveLength(5);
  });

  it("remaining never raises the budget", () => {
    const { engine, granted, acq } = setup(spec({ limits: [rps(10, 10)] }));
    for (let i = 0; i < 8; i++) acq();
    engine.release(granted[7]!.id, undefined, undefined, { throttled: false, requests: { remaining: 50 } });
    expect(engine.stats("api")!.limits[0]!.available).toBeCloseTo(2);
  });

  it("a lower provider limit becomes the effective amount until the next put; stats show both", () => {
    const { clock, engine, granted, events, acq } = setup(spec({ limits: [rps(600, 1, 60_000)] }));
    acq();
    // 300 per minute: one every 200 ms instead of 100 ms.
    engine.release(granted[0]!.id, undefined, undefined, { throttled: false, requests: { limit: 300 } });
    const limit = engine.stats("api")!.limits[0]!;
    expect(limit.limit.amount).toBe(600);
    expect(limit.learnedAmount).toBe(300);
    expect(events).toContainEqual({ kind: "learned", resource: "api", limit: 0, configured: 600, learned: 300, periodMs: 60_000 });
    acq();
    acq();
    clock.advance(1000);
    expect(granted.map((l) => l.grantedAt)).toEqual([0, 200, 400]);
    // Per second limits are converted: 3 per second is 180 per minute.
    engine.report("api", { throttled: false, requests: { limit: 3, limitPeriodMs: 1000 } });
    expect(engine.stats("api")!.limits[0]!.learnedAmount).toBe(180);
    engine.putResource(spec({ limits: [rps(600, 1, 60_000)] }));
    expect(engine.stats("api")!.limits[0]!.learnedAmount).toBeUndefined();
  });

  it("a provider limit at or above the configured one teaches nothing; learn_limits false ignores limits", () => {
    const a = setup(spec({ limits: [rps(600, 1, 60_000)] }));
    a.engine.report("api", { throttled: false, requests: { limit: 900 } });
    expect(a.engine.stats("api")!.limits[0]!.learnedAmount).toBeUndefined();
    const b = setup(spec({ limits: [rps(600, 1, 60_000)], learnLimits: false }));
    b.engine.report("api", { throttled: false, requests: { limit: 100 } });
    expect(b.engine.stats("api")!.limits[0]!.learnedAmount).toBeUndefined();
  });

  it("token feedback maps to load limits by unit; input/output tokens fall back to the only load limit", () => {
    const split = setup(spec({ limits: [tokens(1000, 1000, "input_tokens"), tokens(500, 500, "output_tokens")] }));
    split.engine.report("api", { throttled: false, inputTokens: { remaining: 100 }, outputTokens: { limit: 200 } });
    const s = split.engine.stats("api")!.limits;
    expect(s[0]!.available).toBeCloseTo(100);
    expect(s[1]!.available).toBeCloseTo(500);
    expect(s[1]!.learnedAmount).toBe(200);
    const one = setup(spec({ limits: [rps(10), tokens(1000)] }));
    one.engine.report("api", { throttled: false, inputTokens: { remaining: 300 } });
    expect(one.engine.stats("api")!.limits.map((l) => Math.round(l.available))).toEqual([10, 300]);
    // A labelled load limit ("bytes") takes no token feedback.
    const bytes = setup(spec({ limits: [tokens(1000, 1000, "bytes")] }));
    bytes.engine.report("api", { throttled: false, load: { remaining: 1 } });
    expect(bytes.engine.stats("api")!.limits[0]!.available).toBeCloseTo(1000);
  });
});

describe("provider feedback on a lease that already ended", () => {
  it("a throttled release of an expired lease still pauses its resource; one of another namespace's resource does not", () => {
    const { clock, engine, granted, acq } = setup(spec({ limits: [rps(10)], leaseTtlMs: 1000 }));
    acq();
    clock.advance(1500);
    expect(engine.release(granted[0]!.id, undefined, undefined, throttled(2000))).toBe("expired");
    expect(engine.stats("api")).toMatchObject({ pausedUntil: 3500, throttles: 1 });
    acq();
    clock.advance(5000);
    // Expired too, but the caller may not charge its resource (another namespace's): nothing happens.
    expect(engine.release(granted[1]!.id, undefined, () => false, throttled(60_000))).toBe("expired");
    expect(engine.stats("api")?.pausedUntil).toBeUndefined();
  });
});

describe("provider feedback: snapshots", () => {
  it("a pause and a learned limit survive a snapshot and restore, also on a conservative takeover", () => {
    const { clock, engine, granted, acq } = setup(spec({ limits: [rps(600, 2, 60_000)] }));
    acq();
    engine.release(granted[0]!.id, undefined, undefined, { throttled: true, retryAfterMs: 10_000, requests: { limit: 60 } });
    clock.advance(1000);
    const snap = JSON.parse(JSON.stringify(engine.snapshot()));
    for (const notBefore of [undefined, 2000]) {
      const c2 = new SimulatedClock(2000);
      const e2 = new Engine({ clock: c2 });
      e2.restore(snap, notBefore === undefined ? {} : { notBefore });
      const times: number[] = [];
      for (let i = 0; i < 2; i++) e2.acquire({ resource: "api", load: 1, priority: 10, lane: "", owner: "x" }, (r) => r.ok && times.push(r.grant.lease.grantedAt));
      expect(e2.stats("api")).toMatchObject({ pausedUntil: 10_000, throttles: 1 });
      expect(e2.stats("api")!.limits[0]!.learnedAmount).toBe(60);
      c2.advanceTo(40_000);
      // 60 per minute from the pause's end: 11 s, 12 s.
      expect(times).toEqual([11_000, 12_000]);
    }
  });
});
