// Property tests: random operation sequences against the engine, with the
// limiter's invariants checked exactly after every step. The checks inside
// engine callbacks count too: the engines here rethrow callback errors at
// once (onCallbackError), so a failing one fails the run, and fast-check
// shrinks it and reports its seed like any other failure.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "./clock.js";
import { Engine } from "./engine.js";
import type { EngineSnapshot } from "./snapshot.js";
import type { DimensionFeedback, LimitSpec, ProviderFeedback, ResourceSpec, Ticket } from "./types.js";

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
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("feedback" as const),
      // Through a lease's release, or a report on a resource.
      viaReport: fc.boolean(),
      pick: fc.nat(),
      res: fc.nat(1),
      actual: fc.option(fc.double({ min: 0, max: 100, noNaN: true })),
      throttled: fc.boolean(),
      retryAfterMs: fc.option(fc.integer({ min: 0, max: 2000 })),
      requests: fc.option(fc.record({ limit: fc.option(fc.integer({ min: 1, max: 20 })), remaining: fc.option(fc.integer({ min: 0, max: 10 })) })),
      load: fc.option(fc.record({ limit: fc.option(fc.integer({ min: 1, max: 300 })), remaining: fc.option(fc.integer({ min: 0, max: 200 })) })),
      limitPeriodMs: fc.constantFrom(100, 1000),
    }),
  },
);

/** A generated feedback op as the engine's ProviderFeedback. */
function feedbackOf(op: Extract<Op, { kind: "feedback" }>): ProviderFeedback {
  const dim = (d: { limit: number | null; remaining: number | null } | null): DimensionFeedback | undefined =>
    d === null
      ? undefined
      : {
          ...(d.limit !== null && { limit: d.limit, limitPeriodMs: op.limitPeriodMs }),
          ...(d.remaining !== null && { remaining: d.remaining }),
        };
  const requests = dim(op.requests);
  const load = dim(op.load);
  return {
    throttled: op.throttled,
    ...(op.retryAfterMs !== null && { retryAfterMs: op.retryAfterMs }),
    ...(requests && { requests }),
    ...(load && { load }),
  };
}

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

/**
 * After a pause that ended at `until`, the limits grant at their steady rate
 * from then on, never a burst: net units in [until, t] <= (t - until) * rate.
 */
function checkSteadyAfter(log: Charge[], spec: ResourceSpec, epoch: number, until: number): void {
  spec.limits.forEach((limit, k) => {
    const rate = limit.amount / limit.periodMs;
    let sum = 0;
    for (const e of log) {
      if (e.epoch !== epoch || e.t < until) continue;
      sum += e.units[k]!;
      const bound = (e.t - until) * rate;
      if (e.grant && sum > bound + 1e-6 * (1 + bound)) {
        throw new Error(`limit ${k} burst after a pause ending at ${until}: ${sum} units by ${e.t} > ${bound}`);
      }
    }
  });
}

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
  /** The latest end of a pause per resource, with the epoch it began in. */
  const pauses = new Map<string, { until: number; epoch: number }>();

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
            // Nothing is granted inside a pause.
            expect(lease.grantedAt).toBeGreaterThanOrEqual(pauses.get(name)?.until ?? -Infinity);
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
      case "feedback":
        if (op.viaReport) {
          const name = NAMES[op.res]!;
          expect(engine.report(name, feedbackOf(op)) !== undefined).toBe(specs.has(name));
          break;
        }
      // falls through: feedback with a lease's release
      case "release": {
        engine.heartbeat([]); // apply anything due first, so the charge log keeps the engine's order
        const ids = [...held.keys()];
        const id = ids.length ? ids[op.pick % ids.length]! : "missing";
        const h = held.get(id);
        const name = h?.res;
        const at = name ? logs.get(name)!.length : 0;
        held.delete(id);
        const feedback = op.kind === "feedback" ? feedbackOf(op) : undefined;
        const outcome = engine.release(id, op.actual ?? undefined, undefined, feedback);
        expect(outcome).toBe(h ? "released" : "unknown");
        // A throttled call spent nothing unless it says so: its load is refunded.
        const actual = op.actual ?? (feedback?.throttled ? 0 : null);
        if (h && name && actual !== null && actual !== h.load) {
          const s = specs.get(name)!;
          const delta = actual - h.load;
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
        pauses.delete(name);
        break;
      }
    }
    for (const name of specs.keys()) {
      const until = engine.stats(name)?.pausedUntil;
      if (until !== undefined && until > (pauses.get(name)?.until ?? -Infinity)) pauses.set(name, { until, epoch: epochs.get(name)! });
    }

    // Invariants, after every step.
    const t = clock.now();
    expect(engine.leaseCount()).toBe(held.size);
    expect(engine.waiterCount()).toBe(pending.size);
    for (const [name, spec] of specs) {
      const log = logs.get(name)!;
      checkWindows(log, spec, epochs.get(name)!, checkedUpTo.get(name) ?? 0);
      checkedUpTo.set(name, log.length);
      const pause = pauses.get(name);
      if (pause !== undefined && pause.epoch === epochs.get(name)) checkSteadyAfter(log, spec, pause.epoch, pause.until);
      if (spec.concurrency > 0 && heldOn(name) >= spec.concurrency) continue;
      const next = engine.nextWaiting(name);
      if (next === undefined) continue;
      // Work-conserving: a head that fits now must have been granted now.
      expect(next.blockedBy).toBe("rate");
      expect(next.readyAt).toBeGreaterThan(t);
      const stats = engine.stats(name)!;
      // Paused: the head waits for the pause's end (the limits may have room).
      if (stats.pausedUntil !== undefined) {
        expect(next.readyAt).toBeGreaterThanOrEqual(stats.pausedUntil);
        continue;
      }
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

  it("pauses and feedback never reorder a queue: one lane, one priority, grants in arrival order", () => {
    const step = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant("acquire" as const), load: fc.integer({ min: 0, max: 30 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 700 }) }) },
      { weight: 2, arbitrary: opArb.filter((o) => o.kind === "feedback") },
    );
    fc.assert(
      fc.property(shapeArb, fc.array(step, { minLength: 5, maxLength: 120 }), (shape, steps) => {
        const clock = new SimulatedClock(0);
        const engine = new Engine({ clock, onCallbackError: rethrow });
        engine.putResource({ ...toSpec("r0", { ...shape, weights: [1], maxQueue: 1000 }), concurrency: 0 });
        const order: number[] = [];
        const leases: string[] = [];
        let n = 0;
        for (const s of steps) {
          if (s.kind === "acquire") {
            const mine = n++;
            engine.acquire({ resource: "r0", load: s.load, priority: 1, lane: "", owner: "w" }, (r) => {
              if (!r.ok) return;
              order.push(mine);
              leases.push(r.grant.lease.id);
            });
          } else if (s.kind === "advance") clock.advance(s.ms);
          else if (s.viaReport || leases.length === 0) engine.report("r0", feedbackOf(s));
          else engine.release(leases.shift()!, s.actual ?? undefined, undefined, feedbackOf(s));
        }
        clock.advance(3_600_000);
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
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

/**
 * A leader (A) dies and a new one (B) takes over from A's last snapshot,
 * knowing only that A granted nothing after `notBefore`. Workers hold leases
 * of both; they release them, heartbeat them (to A before the crash, to B
 * after), or let them lapse. Whatever happens, the leases held at once never
 * exceed the cap, counting every lease from its grant until its release or
 * its expiry at the leader that last extended it, and the request limits'
 * windows hold over A's and B's grants together.
 */
describe("Engine properties across a takeover", () => {
  const failoverOp = fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("acquire" as const), deadline: fc.option(fc.integer({ min: 0, max: 3000 })) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("heartbeat" as const), picks: fc.array(fc.nat(), { maxLength: 4 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 1500 }) }) },
  );
  const failoverShape = fc.record({
    concurrency: fc.integer({ min: 1, max: 4 }),
    limits: fc.array(
      fc.record({
        dimension: fc.constant("requests" as const),
        amount: fc.constantFrom(1, 3, 10),
        periodMs: fc.constantFrom(250, 1000),
        burst: fc.integer({ min: 1, max: 6 }),
      }),
      { maxLength: 1 },
    ),
    leaseTtlMs: fc.integer({ min: 200, max: 3000 }),
  });

  it("never lets more leases be held at once than the cap, nor grants beyond a limit", () => {
    fc.assert(
      fc.property(
        failoverShape,
        fc.array(failoverOp, { minLength: 1, maxLength: 60 }),
        fc.array(failoverOp, { minLength: 1, maxLength: 60 }),
        fc.array(failoverOp, { minLength: 0, maxLength: 60 }),
        fc.integer({ min: 0, max: 2000 }),
        (shape, beforeSnapshot, afterSnapshot, afterTakeover, gapMs) => {
          const spec: ResourceSpec = { name: "r", ...shape, lanes: [{ name: "l", weight: 1 }], defaultLane: "l", maxQueue: 50 };
          /** What the workers hold: each lease until released, or until it expired at the leader that last extended it. */
          const held = new Map<string, { expiresAt: number }>();
          const log: Charge[] = [];
          const stillHeld = (now: number) => [...held.values()].filter((h) => h.expiresAt > now).length;
          let leader: { engine: Engine; clock: SimulatedClock };
          const start = (at: number) => {
            const clock = new SimulatedClock(at);
            const engine = new Engine({ clock, onCallbackError: rethrow });
            return { engine, clock };
          };
          const apply = (op: typeof failoverOp extends fc.Arbitrary<infer O> ? O : never) => {
            const { engine, clock } = leader;
            const now = clock.now();
            switch (op.kind) {
              case "acquire":
                engine.acquire(
                  { resource: "r", load: 1, priority: 0, lane: "", owner: "w", ...(op.deadline === null ? {} : { deadline: now + op.deadline }) },
                  (r) => {
                    if (!r.ok) return;
                    const t = clock.now();
                    expect(stillHeld(t)).toBeLessThan(spec.concurrency);
                    held.set(r.grant.lease.id, { expiresAt: r.grant.lease.expiresAt });
                    log.push({ t, epoch: 1, grant: true, units: spec.limits.map(() => 1) });
                  },
                );
                break;
              case "release": {
                const ids = [...held.keys()];
                if (ids.length === 0) break;
                const id = ids[op.pick % ids.length]!;
                held.delete(id);
                engine.release(id);
                break;
              }
              case "heartbeat": {
                const ids = [...held.keys()];
                if (ids.length === 0) break;
                const chosen = op.picks.map((p) => ids[p % ids.length]!);
                engine.heartbeat(chosen, { owner: "w", mayAdopt: () => true }).forEach((r) => {
                  // Held here: its expiry moved. Not held: the worker is told it lost the lease, but may
                  // still be using it until the expiry its last leader gave it, which therefore stands.
                  if (r.held) held.get(r.leaseId)!.expiresAt = r.expiresAt!;
                });
                break;
              }
              case "advance":
                clock.advance(op.ms);
                break;
            }
          };

          leader = start(1_000_000);
          leader.engine.putResource(spec);
          beforeSnapshot.forEach(apply);
          const snapshot = JSON.parse(JSON.stringify(leader.engine.snapshot())) as EngineSnapshot;
          afterSnapshot.forEach(apply);
          // A dies now: it grants nothing after this instant. B takes over gapMs later.
          const notBefore = leader.clock.now();
          leader = start(notBefore + gapMs);
          leader.engine.restore(snapshot, { notBefore, leaseGraceFrom: leader.clock.now() });
          afterTakeover.forEach(apply);
          apply({ kind: "advance", ms: 2 * shape.leaseTtlMs });
          checkWindows(log, spec, 1, 0);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
