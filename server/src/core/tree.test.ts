// Resource trees on the simulated clock: every level admits and is charged,
// children share a parent by weight without blocking each other, keyed
// children come and go, and a snapshot carries the tree across a takeover.
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "./clock.js";
import { Engine } from "./engine.js";
import type { AcquireRequest, AcquireResult, Lease, LimitSpec, ResourceSpec } from "./types.js";

const rethrow = (err: unknown): never => {
  throw err;
};

function spec(name: string, over: Partial<ResourceSpec> = {}): ResourceSpec {
  return { name, limits: [], concurrency: 0, lanes: [{ name: "default", weight: 1 }], defaultLane: "default", leaseTtlMs: 30_000, maxQueue: 100_000, ...over };
}

const perSecond = (amount: number, burst = 1): LimitSpec => ({ dimension: "requests", amount, periodMs: 1000, burst });

function setup(start = 1_000_000) {
  const clock = new SimulatedClock(start);
  const engine = new Engine({ clock, onCallbackError: rethrow });
  const results: AcquireResult[] = [];
  const acquire = (resource: string, more: Partial<AcquireRequest> = {}): AcquireResult[] => {
    const out: AcquireResult[] = [];
    engine.acquire({ resource, load: 1, priority: 10, lane: "", owner: "w", ...more }, (r) => {
      out.push(r);
      results.push(r);
    });
    return out;
  };
  const lease = (r: AcquireResult[]): Lease => {
    const [first] = r;
    if (first === undefined || !first.ok) throw new Error(`not granted: ${JSON.stringify(first)}`);
    return first.grant.lease;
  };
  return { clock, engine, acquire, lease, results };
}

describe("resource trees", () => {
  it("grants only what every level allows, and charges every level", () => {
    const { engine, acquire, lease } = setup();
    engine.putResource(spec("p", { limits: [perSecond(10, 2)], concurrency: 3 }));
    engine.putResource(spec("p/a", { parent: "p", limits: [perSecond(10, 5)] }));
    engine.putResource(spec("p/b", { parent: "p", concurrency: 1 }));
    lease(acquire("p/a"));
    lease(acquire("p/b"));
    // The parent's burst of 2 is spent by its children: a third waits at once.
    expect(acquire("p/a", { deadline: 1_000_000 })[0]).toMatchObject({ ok: false, failure: { code: "DEADLINE_EXCEEDED" } });
    expect(engine.stats("p")!.leasesInFlight).toBe(2);
    expect(engine.stats("p")!.grants).toBe(2);
    expect(engine.stats("p")!.limits[0]!.available).toBe(0);
    // A refusal at a child charges nothing above it.
    expect(engine.stats("p")!.children.map((c) => [c.name, c.leasesInFlight])).toEqual([
      ["p/a", 1],
      ["p/b", 1],
    ]);
    expect(engine.stats("p/a")!.parent).toMatchObject({ name: "p", leasesInFlight: 2 });
  });

  it("refuses at once a load that can never fit an ancestor, and a key without a template", () => {
    const { engine, acquire } = setup();
    engine.putResource(spec("p", { limits: [{ dimension: "load", amount: 100, periodMs: 1000, burst: 100 }] }));
    engine.putResource(spec("p/a", { parent: "p" }));
    expect(acquire("p/a", { load: 101 })[0]).toMatchObject({ ok: false, failure: { code: "INVALID_ARGUMENT", message: expect.stringContaining("of 'p', an ancestor of 'p/a'") } });
    expect(acquire("p", { key: "k" })[0]).toMatchObject({ ok: false, failure: { code: "INVALID_ARGUMENT", message: expect.stringContaining("no per_key template") } });
  });

  it("among many children with waiters, serves the smallest finish first, ties in the order they came, passing over a blocked one", () => {
    const { clock, engine, acquire, lease } = setup(0);
    engine.putResource(spec("p", { concurrency: 1 }));
    for (let i = 0; i < 300; i++) engine.putResource(spec(`p/c${i}`, { parent: "p", share: 1 + (i % 3), ...(i === 7 && { limits: [perSecond(1, 1)] }) }));
    // c7 spends its one-per-second budget now: its next request waits for it, whatever its key.
    const held = lease(acquire("p/c7"));
    const order: string[] = [];
    for (let i = 299; i >= 0; i--) {
      engine.acquire({ resource: `p/c${i}`, load: 1, priority: 10, lane: "", owner: "w" }, (r) => {
        if (!r.ok) throw new Error(r.failure.message);
        order.push(r.grant.lease.resource);
        queueMicrotask(() => engine.release(r.grant.lease.id));
      });
    }
    const drain = async () => {
      for (let i = 0; i < 400 && engine.waiterCount() > 0; i++) await Promise.resolve();
    };
    engine.release(held.id);
    return drain().then(() => {
      // Equal keys (finish 0 + 1/share): the larger shares first, each in the order its children came (299 down to 0).
      const firstRound = order.slice(0, 10);
      expect(firstRound).toEqual(["p/c299", "p/c296", "p/c293", "p/c290", "p/c287", "p/c284", "p/c281", "p/c278", "p/c275", "p/c272"]);
      expect(order).not.toContain("p/c7");
      expect(engine.waiterCount()).toBe(1);
      clock.advance(1000);
      return drain().then(() => {
        expect(order[order.length - 1]).toBe("p/c7");
        expect(engine.waiterCount()).toBe(0);
      });
    });
  });

  it("shares a saturated parent between children by share, and gives a quiet child's share to the busy ones", () => {
    const { clock, engine } = setup(0);
    engine.putResource(spec("p", { limits: [perSecond(60, 1)] }));
    for (const [name, share] of [["a", 2], ["b", 1], ["c", 1]] as const) {
      engine.putResource(spec(`p/${name}`, { parent: "p", share, limits: [perSecond(40, 4)] }));
    }
    const granted = new Map<string, number[]>();
    const busy = new Set(["p/a", "p/b", "p/c"]);
    // Each child keeps ten requests waiting; every lease is given back at once.
    const feed = (name: string) =>
      engine.acquire({ resource: name, load: 1, priority: 10, lane: "", owner: "w" }, (r) => {
        if (!r.ok) throw new Error(r.failure.message);
        (granted.get(name) ?? granted.set(name, []).get(name)!).push(clock.now());
        engine.release(r.grant.lease.id);
        if (busy.has(name)) feed(name);
      });
    for (const name of busy) for (let i = 0; i < 10; i++) feed(name);
    clock.advance(20_000);
    const count = (name: string, from: number, to: number) => (granted.get(name) ?? []).filter((t) => t >= from && t < to).length;
    // 60/s shared 2:1:1 while all are busy: 30, 15, 15 per second, within 10 %.
    expect(count("p/a", 1000, 20_000) / 19).toBeGreaterThan(27);
    expect(count("p/a", 1000, 20_000) / 19).toBeLessThan(33);
    for (const name of ["p/b", "p/c"]) {
      expect(count(name, 1000, 20_000) / 19).toBeGreaterThan(13.5);
      expect(count(name, 1000, 20_000) / 19).toBeLessThan(16.5);
    }
    // c stops: a and b split its share 2:1 within a second, up to a's own cap of 40/s; b takes the rest.
    busy.delete("p/c");
    clock.advance(1000);
    clock.advance(10_000);
    expect(count("p/c", 21_000, 31_000)).toBe(0);
    expect(count("p/a", 21_000, 31_000) / 10).toBeGreaterThan(36);
    expect(count("p/a", 21_000, 31_000) / 10).toBeLessThanOrEqual(40.1);
    expect((count("p/a", 21_000, 31_000) + count("p/b", 21_000, 31_000)) / 10).toBeGreaterThan(59);
  });

  it("serves the next child when one is held back by its own limits (no head-of-line blocking)", () => {
    const { clock, engine, acquire, lease } = setup();
    engine.putResource(spec("p", { limits: [perSecond(100, 10)] }));
    engine.putResource(spec("p/slow", { parent: "p", limits: [perSecond(1, 1)] }));
    engine.putResource(spec("p/fast", { parent: "p" }));
    lease(acquire("p/slow"));
    const waiting = acquire("p/slow");
    expect(waiting).toHaveLength(0);
    // slow's head waits for its own limit: fast goes ahead meanwhile.
    for (let i = 0; i < 5; i++) lease(acquire("p/fast"));
    clock.advance(1000);
    expect(lease(waiting).resource).toBe("p/slow");
  });

  it("makes a keyed child on first use, by key or by name, and an explicit child overrides the template", () => {
    const { engine, acquire, lease } = setup();
    engine.putResource(spec("p", { limits: [perSecond(100, 100)], perKey: { limits: [perSecond(1, 2)], concurrency: 1, share: 1 } }));
    engine.putResource(spec("p/vip", { parent: "p", concurrency: 5 }));
    const a = lease(acquire("p", { key: "alice" }));
    expect(a.resource).toBe("p/alice");
    // alice's cap of 1 holds; bob is a child of his own.
    expect(acquire("p/alice", { deadline: 1_000_000 })[0]).toMatchObject({ ok: false, failure: { code: "DEADLINE_EXCEEDED" } });
    expect(lease(acquire("p/bob")).resource).toBe("p/bob");
    for (let i = 0; i < 3; i++) expect(lease(acquire("p", { key: "vip" })).resource).toBe("p/vip");
    expect(engine.getResource("p/alice")).toMatchObject({ keyed: true, parent: "p", concurrency: 1 });
    expect(engine.listResources().map((s) => s.name)).toEqual(["p", "p/vip"]);
    expect(engine.listChildren("p")).toEqual(["p/alice", "p/bob", "p/vip"]);
    // A new template applies to the keyed children at once.
    engine.putResource(spec("p", { limits: [perSecond(100, 100)], perKey: { limits: [perSecond(1, 2)], concurrency: 2, share: 3 } }));
    expect(engine.getResource("p/alice")).toMatchObject({ concurrency: 2, share: 3 });
    expect(lease(acquire("p", { key: "alice" })).resource).toBe("p/alice");
    expect(engine.stats("p")!.childrenCount).toBe(3);
  });

  it("forgets a keyed child once idle at full budget for per_key_idle, never earlier", () => {
    const { clock, engine, acquire, lease } = setup();
    engine.putResource(spec("p", { perKey: { limits: [perSecond(1, 1)], concurrency: 0, share: 1 }, perKeyIdleMs: 5000 }));
    const l = lease(acquire("p", { key: "k" }));
    clock.advance(10_000);
    expect(engine.resourceCount()).toBe(2); // a lease is held
    engine.release(l.id);
    // Spent: full again 1 s after the grant, which is long past; idle for 5 s from now.
    clock.advance(4999);
    expect(engine.resourceCount()).toBe(2);
    clock.advance(1);
    expect(engine.resourceCount()).toBe(1);
    // A child whose budget is spent is kept until it is full again, then idle for per_key_idle.
    lease(acquire("p", { key: "k" }));
    engine.release(lease(acquire("p", { key: "j" })).id);
    expect(acquire("p", { key: "j", deadline: clock.now() })[0]).toMatchObject({ ok: false });
    clock.advance(5999);
    expect(engine.getResource("p/j")).toBeDefined();
    clock.advance(1);
    expect(engine.getResource("p/j")).toBeUndefined();
    expect(engine.getResource("p/k")).toBeDefined();
  });

  it("refuses trees deeper than four levels, cycles, unknown parents, and deleting a parent of declared children", () => {
    const { engine } = setup();
    engine.putResource(spec("a"));
    engine.putResource(spec("b", { parent: "a" }));
    engine.putResource(spec("c", { parent: "b" }));
    expect(engine.treeProblem(spec("d", { parent: "c" }))).toBeUndefined();
    expect(engine.treeProblem(spec("d", { parent: "c", perKey: { limits: [], concurrency: 0, share: 1 } }))).toMatchObject({ code: "INVALID_ARGUMENT" });
    engine.putResource(spec("d", { parent: "c" }));
    expect(engine.treeProblem(spec("e", { parent: "d" }))?.message).toContain("at most 4");
    expect(engine.treeProblem(spec("a", { parent: "c" }))?.message).toContain("no cycles");
    expect(engine.treeProblem(spec("x", { parent: "nope" }))).toMatchObject({ code: "NOT_FOUND" });
    expect(engine.deleteProblem("c")).toMatchObject({ code: "FAILED_PRECONDITION", message: expect.stringContaining("'d'") });
    expect(engine.deleteProblem("d")).toBeUndefined();
    expect(() => engine.putResource(spec("e", { parent: "d" }))).toThrow(/at most 4/);
  });

  it("moves a child's leases and waiters to its new parent when it is put under another", () => {
    const { engine, acquire, lease } = setup();
    engine.putResource(spec("p1", { concurrency: 2 }));
    engine.putResource(spec("p2", { concurrency: 2 }));
    engine.putResource(spec("c", { parent: "p1" }));
    lease(acquire("c"));
    lease(acquire("c"));
    const waiting = acquire("c");
    expect(waiting).toHaveLength(0);
    engine.putResource(spec("c", { parent: "p2", concurrency: 3 }));
    expect(engine.stats("p1")!.leasesInFlight).toBe(0);
    expect(engine.stats("p2")!.leasesInFlight).toBe(2);
    expect(engine.stats("p2")!.children[0]).toMatchObject({ name: "c", queueDepth: 1 });
    // p1 is free now; the waiter still waits for p2's cap.
    expect(lease(acquire("p1")).resource).toBe("p1");
    expect(waiting).toHaveLength(0);
  });

  it("keeps trees and keyed children that hold state across a snapshot, and a new leader stays within every level", () => {
    const { clock, engine, acquire, lease } = setup();
    engine.putResource(spec("p", { limits: [perSecond(10, 5)], concurrency: 4, perKey: { limits: [perSecond(2, 2)], concurrency: 2, share: 1 } }));
    engine.putResource(spec("p/vip", { parent: "p", share: 3 }));
    const held = lease(acquire("p", { key: "k" }));
    lease(acquire("p", { key: "k" }));
    lease(acquire("p", { key: "idle" }));
    engine.release(lease(acquire("p", { key: "gone" })).id);
    clock.advance(3000); // "gone" and "idle"'s budget are full again; "idle" still holds a lease
    const snap = engine.snapshot();
    expect(snap.resources.map((r) => r.spec.name)).toEqual(["p", "p/idle", "p/k", "p/vip"]);
    const next = new Engine({ clock, onCallbackError: rethrow });
    next.restore(JSON.parse(JSON.stringify(snap)), { notBefore: clock.now() });
    expect(next.getResource("p/k")).toMatchObject({ keyed: true, parent: "p" });
    expect(next.stats("p")).toMatchObject({ leasesInFlight: 3, childrenCount: 3 });
    expect(next.release(held.id)).toBe("released");
    // A keyed child made after the takeover may have been granted on unseen: it starts spent, and its slots unknown.
    const fresh: AcquireResult[] = [];
    next.acquire({ resource: "p", key: "new", load: 1, priority: 10, lane: "", owner: "w", deadline: clock.now() }, (r) => fresh.push(r));
    expect(fresh[0]).toMatchObject({ ok: false, failure: { code: "DEADLINE_EXCEEDED" } });
    expect(next.stats("p/new")!.limits[0]!.available).toBe(0);
  });
});
