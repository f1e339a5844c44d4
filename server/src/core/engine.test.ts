import { describe, expect, it } from "vitest";
import { SimulatedClock } from "./clock.js";
import { Engine, type EngineOptions } from "./engine.js";
import type { AcquireRequest, AcquireResult, Lease, LimitSpec, ResourceSpec, Ticket } from "./types.js";

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

const rps = (amount: number, burst = amount, periodMs = 1000): LimitSpec => ({
  dimension: "requests",
  amount,
  periodMs,
  burst,
});
const load = (amount: number, burst = amount, periodMs = 60_000): LimitSpec => ({
  dimension: "load",
  amount,
  periodMs,
  burst,
});

/** An engine whose callback errors fail the test where they happen (the default would rethrow them later, unseen). */
function newEngine(options: EngineOptions): Engine {
  return new Engine({
    ...options,
    onCallbackError: (err) => {
      throw err;
    },
  });
}

function setup(s: ResourceSpec | ResourceSpec[] = spec(), start = 0) {
  const clock = new SimulatedClock(start);
  const expired: Lease[] = [];
  const engine = newEngine({ clock, onLeaseExpired: (l) => expired.push(l) });
  for (const x of Array.isArray(s) ? s : [s]) engine.putResource(x);
  const results: AcquireResult[] = [];
  const granted: Lease[] = [];
  function acq(req: Partial<AcquireRequest> = {}, log?: string[], tag?: string) {
    const out: { result?: AcquireResult; ticket: Ticket | null } = { ticket: null };
    out.ticket = engine.acquire({ resource: "api", load: 1, priority: 10, lane: "", owner: "w", ...req }, (r) => {
      if (out.result) throw new Error("onResult called twice");
      out.result = r;
      results.push(r);
      if (r.ok) granted.push(r.grant.lease);
      if (log && tag) log.push(r.ok ? tag : `${tag}:${r.failure.code}`);
    });
    return out;
  }
  return { clock, engine, expired, results, granted, acq };
}

function grantTimes(granted: Lease[]): number[] {
  return granted.map((l) => l.grantedAt);
}

describe("Engine: rate limits", () => {
  it("grants up to the burst at once, then spaces grants exactly T apart", () => {
    const { clock, acq, granted } = setup(spec({ limits: [rps(10, 5)] }));
    const reqs = Array.from({ length: 8 }, () => acq());
    expect(reqs.slice(0, 5).every((r) => r.ticket === null && r.result?.ok)).toBe(true);
    expect(reqs.slice(5).every((r) => r.ticket !== null)).toBe(true);
    clock.advance(1000);
    expect(grantTimes(granted)).toEqual([0, 0, 0, 0, 0, 100, 200, 300]);
    expect(granted[5]?.grantedAt).toBe(100);
  });

  it("enforces several limits together: 10/s burst 10, 500/min, load 30000/min", () => {
    const { clock, engine, acq, granted } = setup(spec({ limits: [rps(10), rps(500, 500, 60_000), load(30_000)] }));
    // Loads of 10 000: the load limit allows 3 at once, then one every 20 s.
    for (let i = 0; i < 5; i++) acq({ load: 10_000 });
    expect(grantTimes(granted)).toEqual([0, 0, 0]);
    clock.advance(60_000);
    expect(grantTimes(granted)).toEqual([0, 0, 0, 20_000, 40_000]);
    // Small loads: the 10/s limit binds.
    const before = granted.length;
    for (let i = 0; i < 12; i++) acq({ load: 1 });
    expect(granted.length - before).toBe(10);
    clock.advance(200);
    expect(granted.length - before).toBe(12);
    expect(engine.stats("api")?.limits.map((l) => Math.round(l.available))).toEqual([0, 490, 10_088]);
  });

  it("refuses a load that can never fit, naming the limit", () => {
    const { acq, engine } = setup(spec({ limits: [rps(10), load(30_000)] }));
    const r = acq({ load: 50_000 });
    expect(r.ticket).toBeNull();
    expect(r.result).toEqual({
      ok: false,
      failure: {
        code: "INVALID_ARGUMENT",
        message: "load 50000 exceeds the burst 30000 of limit 2 (load 30000 per 60s); it can never be granted",
      },
    });
    expect(engine.stats("api")?.rejections).toBe(1);
  });

  it("charges a 0 load nothing on load limits", () => {
    const { acq, granted } = setup(spec({ limits: [load(10, 10)] }));
    acq({ load: 10 });
    acq({ load: 0 });
    acq({ load: 0 });
    expect(granted.length).toBe(3);
  });
});

describe("Engine: immediate failures", () => {
  it("fails unknown resources, unknown lanes, full queues and past deadlines at once", () => {
    const { acq, engine, clock } = setup(spec({ concurrency: 1, maxQueue: 2, lanes: [{ name: "a", weight: 1 }, { name: "b", weight: 1 }], defaultLane: "a" }), 1000);
    expect(acq({ resource: "nope" }).result).toEqual({ ok: false, failure: { code: "NOT_FOUND", message: "resource 'nope' not found" } });
    const lane = acq({ lane: "zzz" }).result;
    expect(lane?.ok).toBe(false);
    if (lane && !lane.ok) {
      expect(lane.failure.code).toBe("INVALID_ARGUMENT");
      expect(lane.failure.message).toBe("lane 'zzz' is not a lane of 'api'; valid lanes: a, b");
    }
    expect(acq().result?.ok).toBe(true);
    // One attempt with a deadline of now: no slot → DEADLINE_EXCEEDED at once.
    const once = acq({ deadline: clock.now() });
    expect(once.ticket).toBeNull();
    expect(once.result?.ok === false && once.result.failure.code).toBe("DEADLINE_EXCEEDED");
    acq();
    acq();
    const full = acq().result;
    expect(full).toEqual({ ok: false, failure: { code: "RESOURCE_EXHAUSTED", message: "queue of 'api' is full (2 waiting)" } });
    expect(engine.stats("api")).toMatchObject({ rejections: 2, timeouts: 1 });
  });
});

describe("Engine: concurrency", () => {
  it("caps leases in flight and grants the next waiter on release", () => {
    const { acq, engine, granted } = setup(spec({ concurrency: 2 }));
    const a = acq();
    acq();
    const c = acq();
    expect(c.ticket).not.toBeNull();
    expect(engine.stats("api")?.leasesInFlight).toBe(2);
    expect(engine.nextWaiting("api")?.blockedBy).toBe("concurrency");
    expect(engine.release(granted[0]!.id)).toBe("released");
    expect(c.result?.ok).toBe(true);
    expect(a.result?.ok).toBe(true);
    expect(engine.leaseCount()).toBe(2);
  });
});

describe("Engine: queue order", () => {
  it("serves higher priority first, FIFO among equals", () => {
    const { acq, engine, granted } = setup(spec({ concurrency: 1 }));
    const log: string[] = [];
    acq({}, log, "first");
    acq({ priority: 1 }, log, "low1");
    acq({ priority: 5 }, log, "mid");
    acq({ priority: 1 }, log, "low2");
    acq({ priority: 9 }, log, "high");
    for (let i = 0; i < 5; i++) engine.release(granted[i]!.id);
    expect(log).toEqual(["first", "high", "mid", "low1", "low2"]);
  });

  it("shares grants between saturated lanes by weight, counted in load", () => {
    const lanes = [
      { name: "a", weight: 3 },
      { name: "b", weight: 1 },
    ];
    const { acq, clock, engine } = setup(spec({ limits: [load(100, 100, 1000)], lanes, defaultLane: "a" }));
    acq({ load: 100 }); // empty the bucket
    for (let i = 0; i < 300; i++) {
      acq({ lane: "a", load: 10 });
      acq({ lane: "b", load: 10 });
    }
    clock.advance(20_000); // 2000 units of budget
    const [a, b] = engine.stats("api")!.lanes;
    expect(a!.loadGranted - 100).toBeGreaterThan(1400);
    expect((a!.loadGranted - 100) / b!.loadGranted).toBeCloseTo(3, 1);
  });

  it("does not give a big-load lane more than its share", () => {
    const lanes = [
      { name: "big", weight: 1 },
      { name: "small", weight: 1 },
    ];
    const { acq, clock, engine } = setup(spec({ limits: [load(100, 100, 1000)], lanes, defaultLane: "big" }));
    acq({ load: 100 });
    for (let i = 0; i < 100; i++) acq({ lane: "big", load: 50 });
    for (let i = 0; i < 500; i++) acq({ lane: "small", load: 5 });
    clock.advance(20_000);
    const [big, small] = engine.stats("api")!.lanes;
    const bigLoad = big!.loadGranted - 100;
    expect(Math.abs(bigLoad - small!.loadGranted)).toBeLessThanOrEqual(50);
  });

  it("never lets a later request overtake a blocked head", () => {
    const { acq, clock, granted } = setup(spec({ limits: [load(100, 100, 1000)] }));
    const log: string[] = [];
    acq({ load: 60 }, log, "a");
    acq({ load: 100 }, log, "big"); // needs 1000 ms worth of refill... 600 ms
    acq({ load: 1 }, log, "small"); // would fit now, must wait behind big
    expect(log).toEqual(["a"]);
    clock.advance(599);
    expect(log).toEqual(["a"]);
    clock.advance(1);
    expect(log).toEqual(["a", "big"]);
    clock.advance(10);
    expect(log).toEqual(["a", "big", "small"]);
    expect(grantTimes(granted)).toEqual([0, 600, 610]);
  });

  it("goes through the queue for new arrivals too", () => {
    const { acq, clock } = setup(spec({ limits: [load(100, 100, 1000)] }));
    acq({ load: 100 });
    const big = acq({ load: 50 });
    clock.advance(100); // 10 units back: not enough for the head
    expect(acq({ load: 5 }).ticket).not.toBeNull();
    expect(big.result).toBeUndefined();
  });
});

describe("Engine: deadlines and cancel", () => {
  it("fails a waiter at its deadline and removes it at once", () => {
    const { acq, clock, engine } = setup(spec({ concurrency: 1 }));
    acq();
    const w = acq({ deadline: 5000 });
    clock.advance(4999);
    expect(w.result).toBeUndefined();
    clock.advance(1);
    expect(w.result).toEqual({
      ok: false,
      failure: { code: "DEADLINE_EXCEEDED", message: "waited 5000 ms for 'api'; no slot was free before the deadline" },
    });
    expect(engine.waiterCount()).toBe(0);
    expect(engine.stats("api")?.timeouts).toBe(1);
  });

  it("grants a waiter whose slot frees exactly at its deadline", () => {
    const { acq, clock } = setup(spec({ limits: [rps(1, 1)] }));
    acq();
    const w = acq({ deadline: 1000 });
    clock.advance(1000);
    expect(w.result?.ok).toBe(true);
  });

  it("cancel drops queue depth at once and holds nothing", () => {
    const { acq, engine } = setup(spec({ concurrency: 1 }));
    acq();
    const w = acq();
    expect(engine.stats("api")?.lanes[0]?.queueDepth).toBe(1);
    expect(engine.cancel(w.ticket!)).toBe(true);
    expect(w.result).toEqual({ ok: false, failure: { code: "CANCELLED", message: "acquire on 'api' was cancelled" } });
    expect(engine.stats("api")?.lanes[0]?.queueDepth).toBe(0);
    expect(engine.waiterCount()).toBe(0);
    expect(engine.leaseCount()).toBe(1);
    expect(engine.cancel(w.ticket!)).toBe(false);
    expect(engine.stats("api")?.cancellations).toBe(1);
  });

  it("cancelling a blocked head lets the next one through", () => {
    const { acq, engine } = setup(spec({ limits: [load(100, 100, 1000)] }));
    acq({ load: 90 });
    const big = acq({ load: 50 });
    const small = acq({ load: 5 });
    engine.cancel(big.ticket!);
    expect(small.result?.ok).toBe(true);
  });
});

describe("Engine: leases", () => {
  it("expires unheartbeated leases, frees the slot and reports them", () => {
    const { acq, clock, engine, expired, granted } = setup(spec({ concurrency: 1, leaseTtlMs: 1000 }));
    acq();
    const w = acq();
    clock.advance(999);
    expect(engine.heartbeat([granted[0]!.id])).toEqual([{ leaseId: granted[0]!.id, held: true, expiresAt: 1999 }]);
    clock.advance(999);
    expect(expired).toEqual([]);
    clock.advance(1);
    expect(expired.map((l) => l.id)).toEqual([granted[0]!.id]);
    expect(w.result?.ok).toBe(true);
    expect(engine.stats("api")?.expirations).toBe(1);
    expect(engine.release(granted[0]!.id)).toBe("expired");
    expect(engine.heartbeat([granted[0]!.id, "nope"])).toEqual([
      { leaseId: granted[0]!.id, held: false },
      { leaseId: "nope", held: false },
    ]);
  });

  it("reports release outcomes", () => {
    const { acq, engine, granted } = setup();
    acq();
    const id = granted[0]!.id;
    expect(engine.release(id)).toBe("released");
    expect(engine.release(id)).toBe("already_released");
    expect(engine.release("never-seen")).toBe("unknown");
  });

  it("forgets ended leases beyond the tombstone capacity", () => {
    for (const custom of [false, true]) {
      const clock = new SimulatedClock();
      let n = 0;
      const engine = newEngine({ clock, tombstoneCapacity: 2, ...(custom ? { newLeaseId: () => `custom-${++n}` } : {}) });
      engine.putResource(spec());
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        engine.acquire({ resource: "api", load: 1, priority: 10, lane: "", owner: "w" }, (r) => r.ok && ids.push(r.grant.lease.id));
        expect(engine.release(ids[i]!)).toBe("released");
      }
      expect(engine.release(ids[0]!)).toBe("unknown");
      expect(engine.release(ids[4]!)).toBe("already_released");
      expect(engine.release(ids[5]!)).toBe("already_released");
    }
  });

  it("reconciles load on release: refund and charge, request limits untouched", () => {
    const { acq, engine, granted } = setup(spec({ limits: [rps(10), load(1000, 1000, 1000)] }));
    acq({ load: 800 });
    engine.release(granted[0]!.id, 200); // refund 600
    expect(engine.stats("api")?.limits.map((l) => l.available)).toEqual([9, 800]);
    acq({ load: 100 });
    engine.release(granted[1]!.id, 500); // charge 400
    expect(engine.stats("api")?.limits.map((l) => l.available)).toEqual([8, 300]);
    const big = acq({ load: 400 });
    expect(big.ticket).not.toBeNull();
  });
});

describe("Engine: live changes", () => {
  it("a heartbeat after the lease TTL was lowered expires the lease at its new, earlier time", () => {
    // Found by the property test: the expiry timer still waited for the old expiry.
    const { acq, engine, clock, granted, expired } = setup(spec({ concurrency: 1, leaseTtlMs: 1000 }));
    acq();
    engine.putResource(spec({ concurrency: 1, leaseTtlMs: 100 }));
    engine.heartbeat([granted[0]!.id]);
    const waiting = acq();
    clock.advance(100);
    expect(expired.map((l) => l.id)).toEqual([granted[0]!.id]);
    expect(waiting.result?.ok).toBe(true);
    expect(granted[1]!.grantedAt).toBe(100);
  });


  it("a raised limit grants waiters at once", () => {
    const { acq, engine } = setup(spec({ limits: [rps(1, 1)] }));
    acq();
    const waiting = [acq(), acq()];
    engine.putResource(spec({ limits: [rps(10, 10)] }));
    expect(waiting.every((w) => w.result?.ok)).toBe(true);
  });

  it("keeps the debt in units when a limit changes", () => {
    const { acq, engine, clock } = setup(spec({ limits: [rps(10, 10)] }));
    for (let i = 0; i < 10; i++) acq();
    engine.putResource(spec({ limits: [rps(1, 10)] })); // 10 units of debt, now repaid 1/s
    const w = acq();
    clock.advance(999);
    expect(w.result).toBeUndefined();
    clock.advance(1);
    expect(w.result?.ok).toBe(true);
  });

  it("held leases count against a lowered concurrency; no grants until below", () => {
    const { acq, engine, granted } = setup(spec({ concurrency: 3 }));
    acq();
    acq();
    acq();
    engine.putResource(spec({ concurrency: 1 }));
    const w = acq();
    engine.release(granted[0]!.id);
    expect(w.result).toBeUndefined();
    engine.release(granted[1]!.id);
    expect(w.result).toBeUndefined();
    engine.release(granted[2]!.id);
    expect(w.result?.ok).toBe(true);
  });

  it("moves waiters of a removed lane to the default lane and fails those that no longer fit", () => {
    const lanes = [
      { name: "a", weight: 1 },
      { name: "b", weight: 1 },
    ];
    const { acq, engine, granted } = setup(spec({ concurrency: 1, limits: [load(100, 100)], lanes, defaultLane: "a" }));
    acq({ load: 1 });
    const b1 = acq({ lane: "b", load: 1 });
    const b2 = acq({ lane: "b", load: 80 });
    engine.putResource(spec({ concurrency: 1, limits: [load(50, 50)], lanes: [{ name: "a", weight: 1 }], defaultLane: "a" }));
    expect(b2.result?.ok === false && b2.result.failure.code).toBe("INVALID_ARGUMENT");
    expect(engine.stats("api")?.lanes).toMatchObject([{ name: "a", queueDepth: 1 }]);
    engine.release(granted[0]!.id);
    expect(b1.result?.ok).toBe(true);
  });

  it("deleteResource fails waiters NOT_FOUND and ends its leases", () => {
    const { acq, engine, granted } = setup(spec({ concurrency: 1 }));
    acq();
    const w = acq();
    expect(engine.deleteResource("api")).toBe(true);
    expect(w.result).toEqual({ ok: false, failure: { code: "NOT_FOUND", message: "resource 'api' was deleted" } });
    expect(engine.release(granted[0]!.id)).toBe("unknown");
    expect(engine.leaseCount() + engine.waiterCount()).toBe(0);
    expect(engine.deleteResource("api")).toBe(false);
    expect(engine.getResource("api")).toBeUndefined();
  });

  it("lists resources by name and reports creation", () => {
    const { engine } = setup([]);
    expect(engine.putResource(spec({ name: "b" }))).toEqual({ created: true });
    expect(engine.putResource(spec({ name: "a" }))).toEqual({ created: true });
    expect(engine.putResource(spec({ name: "a", concurrency: 4 }))).toEqual({ created: false });
    expect(engine.listResources().map((r) => [r.name, r.concurrency])).toEqual([
      ["a", 4],
      ["b", 0],
    ]);
  });

  it("lists a page: the names after a name, those a filter takes, as many as asked, as resources come and go", () => {
    const { engine } = setup([]);
    for (const name of ["c", "a", "e", "b", "d"]) engine.putResource(spec({ name }));
    const names = (page?: Parameters<Engine["listResources"]>[0]) => engine.listResources(page).map((r) => r.name);
    expect(names()).toEqual(["a", "b", "c", "d", "e"]);
    expect(names({ after: "b", limit: 2 })).toEqual(["c", "d"]);
    expect(names({ after: "bb" })).toEqual(["c", "d", "e"]);
    expect(names({ include: (n) => n !== "c", limit: 3 })).toEqual(["a", "b", "d"]);
    expect(names({ after: "e" })).toEqual([]);
    engine.deleteResource("b");
    engine.putResource(spec({ name: "aa", perKey: { limits: [], concurrency: 0, share: 1 } }));
    engine.acquire({ resource: "aa", key: "k", load: 1, priority: 0, lane: "", owner: "w" }, () => {});
    // A keyed child is listed with its parent's children, until declared in its own right.
    expect(names({ limit: 3 })).toEqual(["a", "aa", "c"]);
    engine.putResource(spec({ name: "aa/k", parent: "aa" }));
    expect(names({ after: "a", limit: 3 })).toEqual(["aa", "aa/k", "c"]);
  });
});

describe("Engine: lifecycle", () => {
  it("shutdown fails every waiter UNAVAILABLE and keeps leases", () => {
    const { acq, engine, granted } = setup(spec({ concurrency: 1 }));
    acq();
    const w = acq();
    engine.shutdown("server is shutting down");
    expect(w.result).toEqual({ ok: false, failure: { code: "UNAVAILABLE", message: "server is shutting down" } });
    expect(acq().result?.ok === false).toBe(true);
    expect(engine.leaseCount()).toBe(1);
    expect(engine.release(granted[0]!.id)).toBe("released");
  });

  it("snapshot and restore round-trip through JSON", () => {
    const { acq, engine, clock, granted } = setup(spec({ concurrency: 2, limits: [rps(10, 5)] }));
    acq();
    acq();
    clock.advance(100);
    const snap = JSON.parse(JSON.stringify(engine.snapshot()));
    const clock2 = new SimulatedClock(100);
    const other = newEngine({ clock: clock2 });
    other.restore(snap);
    // The same state; only the lease ids each engine would issue next differ.
    const { issued: otherIssued, ...restored } = other.snapshot();
    const { issued, ...original } = engine.snapshot();
    expect(restored).toEqual(original);
    expect(otherIssued?.prefix).not.toBe(issued?.prefix);
    expect(other.leaseCount()).toBe(2);
    expect(other.release(granted[0]!.id)).toBe("released");
    // Recent history (waits, use over the last period) is not snapshotted: the new engine counts from its restore.
    const before = engine.stats("api")!;
    expect(other.stats("api")).toEqual({
      ...before,
      leasesInFlight: 1,
      limits: before.limits.map((l) => ({ ...l, usedLastPeriod: 0 })),
      waitP50Ms: 0,
      waitP90Ms: 0,
      waitP99Ms: 0,
      waitMaxMs: 0,
    });
  });

  it("a conservative restore assumes the old leader spent everything up to notBefore", () => {
    const { engine } = setup(spec({ limits: [rps(10, 5)] }), 0);
    const snap = engine.snapshot(); // taken idle at t=0
    const clock2 = new SimulatedClock(1000);
    const other = newEngine({ clock: clock2 });
    other.restore(snap, { notBefore: 1000 });
    const times: number[] = [];
    for (let i = 0; i < 3; i++)
      other.acquire({ resource: "api", load: 1, priority: 10, lane: "", owner: "w" }, (r) => r.ok && times.push(clock2.now()));
    clock2.advance(1000);
    // Fully spent at 1000: one unit per 100 ms from then on, no burst.
    expect(times).toEqual([1100, 1200, 1300]);
  });

  it("a restore with leaseGraceFrom gives every restored lease a full TTL from then to be re-attached", () => {
    const { acq, engine, granted } = setup(spec({ leaseTtlMs: 2000 }), 0);
    acq(); // expires at 2000 on the old leader
    const snap = engine.snapshot();
    const clock2 = new SimulatedClock(1800); // the new leader takes over just before that
    const expired: string[] = [];
    const other = newEngine({ clock: clock2, onLeaseExpired: (l) => expired.push(l.id) });
    other.restore(snap, { leaseGraceFrom: 1800 });
    clock2.advance(1000); // past the old expiry: still held
    expect(other.heartbeat([granted[0]!.id])[0]).toMatchObject({ held: true, expiresAt: 4800 });
    clock2.advance(2001); // a worker that never comes back loses it one TTL after the last heartbeat
    expect(expired).toEqual([granted[0]!.id]);
  });

  describe("leases the old leader granted after its last snapshot", () => {
    /** An old leader with a cap of 3: the snapshot at t=0 knows one lease; two more are granted after it. */
    function takeover(s: ResourceSpec = spec({ concurrency: 3, leaseTtlMs: 2000 })) {
      const old = setup(s, 0);
      old.acq();
      const snap = JSON.parse(JSON.stringify(old.engine.snapshot()));
      old.clock.advance(100);
      old.acq();
      old.acq();
      const [known, ...unseen] = old.granted.map((l) => l.id);
      // The old leader dies; the new one takes over at 500 knowing it stopped by 500.
      const clock = new SimulatedClock(500);
      const engine = newEngine({ clock });
      engine.restore(snap, { notBefore: 500, leaseGraceFrom: 500 });
      const granted: string[] = [];
      const acq = () => engine.acquire({ resource: "api", load: 1, priority: 10, lane: "", owner: "new" }, (r) => r.ok && granted.push(r.grant.lease.id));
      const reattach = { owner: "w", mayAdopt: () => true };
      return { engine, clock, known: known!, unseen, granted, acq, reattach };
    }

    it("count against the cap: the new leader grants nothing while the cap could be full", () => {
      const { engine, clock, granted, acq } = takeover();
      expect(engine.leaseCount()).toBe(1);
      expect(engine.unknownLeaseCount()).toBe(2);
      acq();
      clock.advanceTo(2499); // until notBefore + TTL, every unknown lease may still be held
      expect(granted).toEqual([]);
      clock.advance(1); // by 2500 each has expired at the old leader
      expect(granted).toHaveLength(1);
      expect(engine.unknownLeaseCount()).toBe(0);
    });

    it("are re-attached by their holders' heartbeats in place of the unknown ones, and their release frees the slot", () => {
      const { engine, known, unseen, granted, acq, reattach } = takeover();
      const beats = engine.heartbeat([known, ...unseen, "junk-lease.nope"], reattach);
      expect(beats.map((b) => b.held)).toEqual([true, true, true, false]);
      expect(engine.leaseCount()).toBe(3);
      expect(engine.unknownLeaseCount()).toBe(0);
      acq();
      expect(granted).toEqual([]); // the cap is full of real leases now
      expect(engine.release(unseen[0]!)).toBe("released");
      expect(granted).toHaveLength(1);
    });

    it("a lease re-attached after it may have expired at the old leader takes no unknown one's place", () => {
      // Its holder, cut off, may still use it while the old leader gave its slot to a lease still unknown here.
      const { engine, clock, unseen, reattach } = takeover(spec({ concurrency: 3, leaseTtlMs: 2000 }));
      clock.advanceTo(2000); // the snapshot's time (0) + TTL: the unseen leases may have expired there
      expect(engine.heartbeat([unseen[0]!], reattach)[0]!.held).toBe(true);
      expect(engine.unknownLeaseCount()).toBe(2);
      expect(engine.leaseCount()).toBe(2);
    });

    it("are re-attached only by a caller allowed the resource; an id the old leader did not issue takes a slot, never frees one", () => {
      const { engine, unseen } = takeover();
      expect(engine.heartbeat(unseen, { owner: "w", mayAdopt: () => false }).map((b) => b.held)).toEqual([false, false]);
      expect(engine.heartbeat(unseen).map((b) => b.held)).toEqual([false, false]);
      const forged = unseen[0]!.replace(/^[^-]*/, "0123456789abcdef");
      expect(engine.heartbeat([forged], { owner: "w", mayAdopt: () => true })[0]!.held).toBe(true);
      expect(engine.leaseCount()).toBe(2);
      expect(engine.unknownLeaseCount()).toBe(2);
    });

    it("a restored lease released before its holder re-attached it keeps its slot until the window ends", () => {
      // Its holder may have released it at the old leader, which then granted the slot again.
      const { engine, clock, known, granted, acq } = takeover(spec({ concurrency: 1, leaseTtlMs: 2000 }));
      expect(engine.unknownLeaseCount()).toBe(0); // the cap is full of the known lease
      expect(engine.release(known)).toBe("released");
      acq();
      clock.advanceTo(2499);
      expect(granted).toEqual([]);
      clock.advance(1);
      expect(granted).toHaveLength(1);
    });

    it("a known lease that could have expired at the old leader counts its slot as unknown too", () => {
      // Snapshot expiry 100 ms after it: not heartbeated, it expired there and the slot was granted again.
      const old = setup(spec({ concurrency: 1, leaseTtlMs: 100 }), 0);
      old.acq();
      const snap = old.engine.snapshot();
      const engine = newEngine({ clock: new SimulatedClock(500) });
      engine.restore(snap, { notBefore: 500, leaseGraceFrom: 500 });
      expect(engine.leaseCount()).toBe(1);
      expect(engine.unknownLeaseCount()).toBe(1);
    });

    it("are at most what a request limit could have granted since the snapshot", () => {
      // 2 per second, no burst left at the snapshot: at most one grant in the 500 ms before notBefore.
      const old = setup(spec({ concurrency: 10, leaseTtlMs: 2000, limits: [rps(2, 2)] }), 0);
      old.acq();
      old.acq();
      const snap = old.engine.snapshot();
      const engine = newEngine({ clock: new SimulatedClock(500) });
      engine.restore(snap, { notBefore: 500 });
      expect(engine.leaseCount()).toBe(2);
      expect(engine.unknownLeaseCount()).toBe(1);
    });

    it("survive a second takeover in the snapshot, and an exact snapshot adds none", () => {
      const { engine, clock } = takeover();
      const snap = JSON.parse(JSON.stringify(engine.snapshot()));
      const third = newEngine({ clock: new SimulatedClock(clock.now()) });
      third.restore(snap); // a graceful handover: exact, yet the carried unknown leases still count
      expect(third.unknownLeaseCount()).toBe(2);
      const idle = setup(spec({ concurrency: 3 }), 0);
      const fresh = newEngine({ clock: new SimulatedClock(0) });
      fresh.restore(idle.engine.snapshot());
      expect(fresh.unknownLeaseCount()).toBe(0);
    });

    it("a release of a lease the new leader never knew, or adopted, charges its whole actual load", () => {
      // Its estimate was charged by the old leader, unknown here: the actual load is at least the true difference.
      // Load: 1 unit per 60 ms, burst 1000: restored fully spent at 500, so at 600 only 1.67 units are free.
      // Requests: 20/s keeps the unknown leases to what it allowed since the snapshot (12 of the cap of 30).
      const slow = () => takeover(spec({ concurrency: 30, leaseTtlMs: 2000, limits: [rps(20, 3), load(1000, 1000)] }));
      const free = slow();
      free.clock.advanceTo(600);
      free.acq();
      expect(free.granted).toHaveLength(1); // uncharged, 1 unit fits at once
      const unknown = slow();
      unknown.clock.advanceTo(600);
      expect(unknown.engine.release(unknown.unseen[0]!, 60)).toBe("unknown");
      unknown.acq();
      expect(unknown.granted).toEqual([]); // 60 more units of debt: about 59 * 60 ms to wait
      unknown.clock.advanceTo(600 + 58 * 60);
      expect(unknown.granted).toEqual([]);
      unknown.clock.advanceTo(600 + 60 * 60);
      expect(unknown.granted).toHaveLength(1);
      const adopted = slow();
      adopted.clock.advanceTo(600);
      adopted.engine.heartbeat([adopted.unseen[1]!], adopted.reattach);
      expect(adopted.engine.release(adopted.unseen[1]!, 60)).toBe("released");
      adopted.acq();
      expect(adopted.granted).toEqual([]);
      // Only on a resource the caller may charge.
      const foreign = slow();
      foreign.clock.advanceTo(600);
      foreign.engine.release(foreign.unseen[0]!, 60, () => false);
      foreign.acq();
      expect(foreign.granted).toHaveLength(1);
    });

    it("do not exist without a cap", () => {
      const { engine } = takeover(spec({ leaseTtlMs: 2000 }));
      expect(engine.unknownLeaseCount()).toBe(0);
    });
  });

  it("a restore reopens an engine that was shut down (a leader that regains its lease)", () => {
    const { acq, engine } = setup(spec({ concurrency: 2 }));
    acq();
    engine.shutdown("lost the leadership lease");
    expect(acq().result?.ok).toBe(false);
    engine.restore(engine.snapshot());
    expect(engine.leaseCount()).toBe(1);
    expect(acq().result?.ok).toBe(true);
  });

  it("suspend grants nothing, not even when a cancel frees the head of the queue; shutdown then fails the rest", () => {
    const { acq, engine, granted } = setup(spec({ concurrency: 1 }));
    acq();
    const first = acq();
    const second = acq();
    engine.suspend("lost the leadership lease");
    expect(acq().result).toEqual({ ok: false, failure: { code: "UNAVAILABLE", message: "lost the leadership lease" } });
    engine.cancel(first.ticket!);
    engine.release(granted[0]!.id);
    expect(second.result).toBeUndefined();
    expect(granted.length).toBe(1);
    engine.shutdown("lost the leadership lease");
    expect(second.result?.ok).toBe(false);
  });

  it("grants nothing at or after grantDeadline, whatever triggers the grant", () => {
    const clock = new SimulatedClock(0);
    let deadline = 100;
    const engine = newEngine({ clock, grantDeadline: () => deadline });
    engine.putResource(spec({ concurrency: 1 }));
    const req = { resource: "api", load: 1, priority: 10, lane: "", owner: "w" };
    const got: string[] = [];
    engine.acquire(req, (r) => r.ok && got.push(r.grant.lease.id));
    engine.acquire(req, (r) => got.push(r.ok ? "granted" : r.failure.code));
    clock.advance(100);
    expect(engine.release(got[0]!)).toBe("released"); // frees the slot at the deadline: no grant
    expect(got.length).toBe(1);
    deadline = Infinity;
    engine.restore(engine.snapshot()); // reopening re-evaluates; the waiter failed UNAVAILABLE
    expect(got[1]).toBe("UNAVAILABLE");
  });

  it("expires restored leases that are already past their time", () => {
    const { acq, engine } = setup(spec({ leaseTtlMs: 100 }));
    acq();
    const snap = engine.snapshot();
    const expired: string[] = [];
    const other = newEngine({ clock: new SimulatedClock(500), onLeaseExpired: (l) => expired.push(l.id) });
    other.restore(snap);
    expect(expired.length).toBe(1);
    expect(other.leaseCount()).toBe(0);
  });
});

describe("Engine: re-entrant callbacks", () => {
  it("a grant callback may release at once and cancel another ticket", () => {
    const clock = new SimulatedClock();
    const engine = newEngine({ clock });
    engine.putResource(spec({ concurrency: 1 }));
    const log: string[] = [];
    const base = { resource: "api", load: 1, priority: 10, lane: "", owner: "w" };
    let victim: Ticket | null = null;
    let firstId = "";
    engine.acquire(base, (r) => {
      if (r.ok) firstId = r.grant.lease.id;
    });
    engine.acquire(base, (r) => {
      log.push(r.ok ? "second" : "second:fail");
      if (r.ok) {
        engine.cancel(victim!);
        expect(engine.release(r.grant.lease.id)).toBe("released");
      }
    });
    victim = engine.acquire(base, (r) => log.push(r.ok ? "victim" : `victim:${r.failure.code}`));
    engine.acquire(base, (r) => log.push(r.ok ? "fourth" : "fourth:fail"));
    engine.release(firstId);
    expect(log).toEqual(["second", "victim:CANCELLED", "fourth"]);
    expect(engine.leaseCount()).toBe(1);
    expect(engine.waiterCount()).toBe(0);
  });

  it("an acquire made inside a callback resolves synchronously when it can", () => {
    const clock = new SimulatedClock();
    const engine = newEngine({ clock });
    engine.putResource(spec());
    const base = { resource: "api", load: 1, priority: 10, lane: "", owner: "w" };
    let inner: Ticket | null | undefined;
    let innerResult: AcquireResult | undefined;
    engine.acquire(base, () => {
      inner = engine.acquire(base, (r) => {
        innerResult = r;
      });
      expect(innerResult?.ok).toBe(true);
    });
    expect(inner).toBeNull();
  });

  it("a callback error that onCallbackError throws surfaces after every other callback is delivered", () => {
    const engine = newEngine({ clock: new SimulatedClock() });
    engine.putResource(spec({ concurrency: 1 }));
    const base = { resource: "api", load: 1, priority: 10, lane: "", owner: "w" };
    const log: string[] = [];
    engine.acquire(base, () => {});
    engine.acquire(base, () => {
      log.push("first");
      throw new Error("boom");
    });
    engine.acquire(base, (r) => log.push(r.ok ? "second" : `second:${r.failure.code}`));
    expect(() => engine.deleteResource("api")).toThrow("boom");
    // Both waiters were answered, and the engine is consistent and usable.
    expect(log).toEqual(["first", "second:NOT_FOUND"]);
    expect(engine.waiterCount()).toBe(0);
    expect(engine.leaseCount()).toBe(0);
    engine.putResource(spec());
    expect(engine.acquire(base, (r) => log.push(r.ok ? "granted" : "refused"))).toBeNull();
    expect(log.at(-1)).toBe("granted");
  });

  it("keeps stats: wait percentiles over recent grants", () => {
    const { acq, clock, engine } = setup(spec({ limits: [rps(10, 1)] }));
    for (let i = 0; i < 11; i++) acq();
    clock.advance(1000);
    const s = engine.stats("api")!;
    expect(s.grants).toBe(11);
    expect(s.waitMaxMs).toBe(1000);
    expect(s.waitP50Ms).toBe(500);
    expect(s.waitP90Ms).toBe(900);
  });
});

describe("Engine: metrics", () => {
  it("counts outcomes per lane, waits in buckets, reconciliations and each limit's use over its last period", () => {
    const s = spec({ limits: [rps(2, 1, 1000), load(1000, 1000)], lanes: [{ name: "a", weight: 1 }, { name: "b", weight: 1 }], defaultLane: "a", maxQueue: 2 });
    const { acq, engine, clock, granted } = setup(s, 0);
    acq({ load: 100 }); // granted at 0
    acq({ lane: "b", load: 10 }); // waits 500 ms for the rate
    const cancelled = acq({ lane: "b" });
    engine.cancel(cancelled.ticket!);
    acq({ deadline: 100 }); // times out at 100
    acq({ lane: "nope" }); // invalid
    acq({ load: 5000 }); // invalid: over the burst
    clock.advance(600);
    engine.release(granted[0]!.id, 130); // 30 more than estimated
    engine.release(granted[1]!.id, 4); // 6 fewer
    const m = engine.metrics()[0]!;
    expect(m.lanes.map((l) => [l.name, l.grants, l.timeouts, l.cancellations, l.loadGranted])).toEqual([
      ["a", 1, 1, 0, 100],
      ["b", 1, 0, 1, 10],
    ]);
    // Waits of 0 and 500 ms: the first bucket (<= 1 ms) and the one up to 500 ms.
    expect(m.lanes[0]!.waitBuckets[0]).toBe(1);
    expect(m.lanes[1]!.waitBuckets[7]).toBe(1);
    expect(m.lanes[1]!.waitSumMs).toBe(500);
    expect([m.invalid, m.rejected, m.loadCharged, m.loadRefunded]).toEqual([2, 0, 30, 6]);
    // Requests: 2 granted in the last second; load: 110 granted, +30 and -6 reconciled.
    expect(m.limits.map((l) => l.usedLastPeriod)).toEqual([2, 134]);
    // GetResourceStats reads the same figure.
    expect(engine.stats("api")!.limits.map((l) => l.usedLastPeriod)).toEqual([2, 134]);
    clock.advance(60_000);
    expect(engine.metrics()[0]!.limits.map((l) => l.usedLastPeriod)).toEqual([0, 0]);
  });
});
