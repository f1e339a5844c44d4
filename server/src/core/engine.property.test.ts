// Property tests: random operation sequences against the engine, with the
// limiter's invariants checked exactly after every step. The checks inside
// engine callbacks count too: the engines here rethrow callback errors at
// once (onCallbackError), so a failing one fails the run, and fast-check
// shrinks it and reports its seed like any other failure.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "./clock.js";
import { Engine } from "./engine.js";
import type { LimitSpec, ResourceSpec, Ticket } from "./types.js";

const NAMES = ["r0", "r1"];

const limitArb: fc.Arbitrary<LimitSpec> = fc.oneof(
  fc.record({
    dimension: fc.constant("requests" as const),
    amount: fc.constantFrom(1, 3, 7, 10),
    periodMs: fc.constantFrom(100, 250, 1000),
    burst: fc.integer({ min: 1, max: 10 }),
  }),
  fc.record({
    dimension: fc.constant("load" as const),
    amount: fc.constantFrom(10, 33, 100, 200),
    periodMs: fc.constantFrom(100, 1000, 3000),
    burst: fc.integer({ min: 10, max: 200 }),
  }),
);

const shapeArb = fc.record({
  limits: fc.array(limitArb, { maxLength: 3 }),
  concurrency: fc.integer({ min: 0, max: 3 }),
  weights: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
  defaultLane: fc.nat(2),
  leaseTtlMs: fc.integer({ min: 100, max: 5000 }),
  maxQueue: fc.integer({ min: 1, max: 15 }),
});
type Shape = typeof shapeArb extends fc.Arbitrary<infer S> ? S : never;

function toSpec(name: string, s: Shape): ResourceSpec {
  const lanes = s.weights.map((weight, i) => ({ name: `l${i}`, weight }));
  return {
    name,
    limits: s.limits,
    concurrency: s.concurrency,
    lanes,
    defaultLane: lanes[s.defaultLane % lanes.length]!.name,
    leaseTtlMs: s.leaseTtlMs,
    maxQueue: s.maxQueue,
  };
}

const opArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("acquire" as const),
      res: fc.nat(1),
      load: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60 }), fc.double({ min: 0, max: 50, noNaN: true })),
      priority: fc.nat(3),
      lane: fc.nat(9),
      deadline: fc.option(fc.integer({ min: 0, max: 3000 })),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat(), actual: fc.option(fc.double({ min: 0, max: 100, noNaN: true })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("heartbeat" as const), picks: fc.array(fc.nat(), { maxLength: 3 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 3000 })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("put" as const), res: fc.nat(1), shape: shapeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("delete" as const), res: fc.nat(1) }) },
);

/** One entry of a resource's charge log: a grant's cost or a reconciliation delta, per limit. */
interface Charge {
  t: number;
  epoch: number;
  grant: boolean;
  units: number[];
}

interface HeldLease {
  id: string;
  res: string;
  load: number;
  expiresAt: number;
}

function costs(spec: ResourceSpec, load: number): number[] {
  return spec.limits.map((l) => (l.dimension === "requests" ? 1 : load));
}

/** Checks burst + t * rate over every window that ends at the newest grants. */
function checkWindows(log: Charge[], spec: ResourceSpec, epoch: number, from: number): void {
  for (let j = Math.max(from, 0); j < log.length; j++) {
    const last = log[j]!;
    if (!last.grant || last.epoch !== epoch) continue;
    spec.limits.forEach((limit, k) => {
      const rate = limit.amount / limit.periodMs;
      let sum = 0;
      for (let i = j; i >= 0; i--) {
        const e = log[i]!;
        if (e.epoch !== epoch) break;
        sum += e.units[k]!;
        if (!e.grant) continue;
        const bound = limit.burst + (last.t - e.t) * rate;
        if (sum > bound + 1e-6 * (1 + bound)) {
          throw new Error(`limit ${k} over-used: ${sum} units in [${e.t}, ${last.t}] > ${bound}`);
        }
      }
    });
  }
}

type Op = typeof opArb extends fc.Arbitrary<infer O> ? O : never;

/** Makes an error thrown by an engine callback leave the engine call that delivered it. */
const rethrow = (err: unknown): never => {
  throw err;
};

function run(shapes: Shape[], ops: Op[]): void {
  const clock = new SimulatedClock(1_000_000);
  const specs = new Map<string, ResourceSpec>();
  const epochs = new Map<string, number>();
  const logs = new Map<string, Charge[]>();
  const held = new Map<string, HeldLease>();
  const tickets: { ticket: Ticket; calls: () => number }[] = [];
  const callCounts: number[] = [];
  const pending = new Set<number>();
  let checkedUpTo = new Map<string, number>();

  const engine = new Engine({
    clock,
    onCallbackError: rethrow,
    onLeaseExpired: (l) => {
      expect(held.has(l.id)).toBe(true);
      expect(l.expiresAt).toBeLessThanOrEqual(clock.now());
      held.delete(l.id);
    },
  });

  const heldOn = (res: string) => [...held.values()].filter((h) => h.res === res).length;

  function put(name: string, shape: Shape) {
    const spec = toSpec(name, shape);
    specs.set(name, spec);
    epochs.set(name, (epochs.get(name) ?? 0) + 1);
    if (!logs.has(name)) logs.set(name, []);
    engine.putResource(spec);
  }
  NAMES.forEach((n, i) => put(n, shapes[i]!));

  for (const op of ops) {
    const now = clock.now();
    switch (op.kind) {
      case "acquire": {
        const name = NAMES[op.res]!;
        const spec = specs.get(name);
        const lanes = spec?.lanes.length ?? 1;
        const lane = op.lane < 8 ? `l${op.lane % lanes}` : op.lane === 8 ? "" : "bogus";
        const n = callCounts.length;
        callCounts.push(0);
        pending.add(n);
        const ticket = engine.acquire(
          {
            resource: name,
            load: op.load,
            priority: op.priority,
            lane,
            owner: "w",
            ...(op.deadline === null ? {} : { deadline: now + op.deadline }),
          },
          (r) => {
            callCounts[n]!++;
            expect(callCounts[n]).toBe(1);
            pending.delete(n);
            if (!r.ok) return;
            const s = specs.get(name)!;
            const cap = s.concurrency;
            if (cap > 0) expect(heldOn(name)).toBeLessThan(cap);
            const lease = r.grant.lease;
            expect(lease.grantedAt).toBe(clock.now());
            held.set(lease.id, { id: lease.id, res: name, load: lease.load, expiresAt: lease.expiresAt });
            logs.get(name)!.push({ t: lease.grantedAt, epoch: epochs.get(name)!, grant: true, units: costs(s, lease.load) });
          },
        );
        if (ticket === null) expect(callCounts[n]).toBe(1);
        else {
          expect(spec).toBeDefined();
          tickets.push({ ticket, calls: () => callCounts[n]! });
        }
        break;
      }
      case "release": {
        engine.heartbeat([]); // apply anything due first, so the charge log keeps the engine's order
        const ids = [...held.keys()];
        const id = ids.length ? ids[op.pick % ids.length]! : "missing";
        const h = held.get(id);
        const name = h?.res;
        const at = name ? logs.get(name)!.length : 0;
        held.delete(id);
        const outcome = engine.release(id, op.actual ?? undefined);
        expect(outcome).toBe(h ? "released" : "unknown");
        if (h && name && op.actual !== null && op.actual !== h.load) {
          const s = specs.get(name)!;
          const delta = op.actual - h.load;
          logs.get(name)!.splice(at, 0, {
            t: now,
            epoch: epochs.get(name)!,
            grant: false,
            units: s.limits.map((l) => (l.dimension === "load" ? delta : 0)),
          });
        }
        break;
      }
      case "cancel": {
        if (tickets.length === 0) break;
        const t = tickets[op.pick % tickets.length]!;
        const before = t.calls();
        const ok = engine.cancel(t.ticket);
        expect(ok).toBe(before === 0);
        expect(t.calls()).toBe(1);
        break;
      }
      case "heartbeat": {
        const ids = [...held.keys()];
        const chosen = op.picks.map((p: number) => (ids.length ? ids[p % ids.length]! : "missing"));
        chosen.push("unknown-id");
        const res = engine.heartbeat(chosen);
        res.forEach((r, i) => {
          const h = held.get(chosen[i]!);
          expect(r.held).toBe(h !== undefined);
          if (h) h.expiresAt = r.expiresAt!;
        });
        break;
      }
      case "advance":
        clock.advance(op.ms);
        break;
      case "put":
        put(NAMES[op.res]!, op.shape);
        break;
      case "delete": {
        const name = NAMES[op.res]!;
        const existed = specs.has(name);
        expect(engine.deleteResource(name)).toBe(existed);
        specs.delete(name);
        epochs.set(name, (epochs.get(name) ?? 0) + 1);
        for (const h of [...held.values()]) if (h.res === name) held.delete(h.id);
        break;
      }
    }

    // Invariants, after every step.
    const t = clock.now();
    expect(engine.leaseCount()).toBe(held.size);
    expect(engine.waiterCount()).toBe(pending.size);
    for (const [name, spec] of specs) {
      const log = logs.get(name)!;
      checkWindows(log, spec, epochs.get(name)!, checkedUpTo.get(name) ?? 0);
      checkedUpTo.set(name, log.length);
      if (spec.concurrency > 0 && heldOn(name) >= spec.concurrency) continue;
      const next = engine.nextWaiting(name);
      if (next === undefined) continue;
      // Work-conserving: a head that fits now must have been granted now.
      expect(next.blockedBy).toBe("rate");
      expect(next.readyAt).toBeGreaterThan(t);
      const stats = engine.stats(name)!;
      const need = costs(spec, next.load);
      const fitsByStats = stats.limits.every((l, k) => l.available >= need[k]! + 1e-7 * (1 + need[k]!));
      expect(fitsByStats).toBe(false);
    }
    checkedUpTo = new Map([...checkedUpTo].filter(([n]) => specs.has(n)));
  }

  // Drain: nothing may leak, and every acquire is answered exactly once.
  for (const t of tickets) engine.cancel(t.ticket);
  for (const id of [...held.keys()]) {
    held.delete(id);
    expect(engine.release(id)).toBe("released");
  }
  for (const t of tickets) engine.cancel(t.ticket);
  expect(engine.waiterCount()).toBe(0);
  expect(engine.leaseCount()).toBe(0);
  expect(callCounts.every((c) => c === 1)).toBe(true);
}

describe("Engine properties", () => {
  it("never over-grants, never leaks, answers once and is work-conserving", () => {
    fc.assert(
      fc.property(fc.array(shapeArb, { minLength: 2, maxLength: 2 }), fc.array(opArb, { minLength: 10, maxLength: 150, size: "max" }), (shapes, ops) =>
        run(shapes, ops),
      ),
      { numRuns: 500 },
    );
  });

  it("holds with busy single-resource traffic and long runs", () => {
    fc.assert(
      fc.property(
        shapeArb,
        fc.array(
          fc.oneof(
            { weight: 5, arbitrary: opArb.filter((o) => o.kind === "acquire").map((o) => ({ ...o, res: 0 })) },
            { weight: 3, arbitrary: opArb.filter((o) => o.kind === "release" || o.kind === "advance") },
          ),
          { minLength: 50, maxLength: 300, size: "max" },
        ),
        (shape, ops) => run([shape, shape], ops),
      ),
      { numRuns: 150 },
    );
  });

  it("fail when an assertion inside an engine callback fails, with a shrunk counterexample", () => {
    const spec = toSpec("r0", { limits: [], concurrency: 1, weights: [1], defaultLane: 0, leaseTtlMs: 1000, maxQueue: 10 });
    // Fails in onResult, delivered by the acquire itself.
    const inGrant = fc.property(fc.integer({ min: 0, max: 100 }), (load) => {
      const engine = new Engine({ clock: new SimulatedClock(0), onCallbackError: rethrow });
      engine.putResource(spec);
      engine.acquire({ resource: "r0", load, priority: 0, lane: "", owner: "w" }, (r) => {
        expect(r.ok && r.grant.lease.load).toBeLessThan(50);
      });
    });
    expect(() => fc.assert(inGrant, { seed: 1 })).toThrow(/Counterexample: \[50\]/);
    // Fails in onLeaseExpired, delivered by a timer while the clock advances.
    const inExpiry = fc.property(fc.integer({ min: 0, max: 5000 }), (ms) => {
      const clock = new SimulatedClock(0);
      const engine = new Engine({ clock, onCallbackError: rethrow, onLeaseExpired: (l) => expect(l.expiresAt).toBeGreaterThan(ms) });
      engine.putResource(spec);
      engine.acquire({ resource: "r0", load: 1, priority: 0, lane: "", owner: "w" }, () => {});
      clock.advance(ms);
      clock.advance(5000);
    });
    expect(() => fc.assert(inExpiry, { seed: 1 })).toThrow(/Counterexample: \[1000\]/);
  });
});
