import { describe, expect, it } from "vitest";
import type { EngineSnapshot, ResourceSnapshot, ResourceSpec } from "../core/index.js";
import type { StoredState, StoredSnapshot, Term } from "./redis-store.js";
import { planTakeover } from "./takeover.js";

const term = (epoch: number): Term => ({ epoch, value: `${epoch} token-${epoch} 10.0.0.${epoch}:7070` });
const spec = (name: string, concurrency = 0): ResourceSpec => ({
  name,
  limits: [{ dimension: "requests", amount: 10, periodMs: 1000, burst: 10 }],
  concurrency,
  lanes: [{ name: "default", weight: 1 }],
  defaultLane: "default",
  leaseTtlMs: 30_000,
  maxQueue: 10_000,
});
const counters = { grants: 7, rejections: 1, timeouts: 2, cancellations: 3, expirations: 4 };
const resourceState = (s: ResourceSpec): ResourceSnapshot => ({ spec: s, tats: [5000], counters, lanes: [{ name: "default", grants: 7, loadGranted: 7 }] });
const lease = { id: "l1", resource: "a", load: 1, owner: "w", grantedAt: 900, expiresAt: 30_900, ttlMs: 30_000 };
const engineSnapshot: EngineSnapshot = { version: 1, takenAt: 900, resources: [resourceState(spec("a")), resourceState(spec("gone"))], leases: [lease] };
const snapshotOf = (writer: Term, extra: Partial<StoredSnapshot> = {}): StoredSnapshot => ({ term: writer.value, epoch: writer.epoch, snapshot: engineSnapshot, ...extra });
const stored = (s: Partial<StoredState> = {}): StoredState => ({ resources: new Map(), snapshot: undefined, reservation: undefined, ...s });
/** Redis holds resource "a" (now with concurrency 2) and "b", the last snapshot of term 4 and its reservation. */
const afterCrash = (extra: Partial<StoredSnapshot> = {}, until = 2000) =>
  stored({
    resources: new Map([["a", spec("a", 2)], ["b", spec("b")]]),
    snapshot: snapshotOf(term(4), extra),
    reservation: { term: term(4).value, epoch: 4, until },
  });
const now = 1500;

describe("planTakeover", () => {
  it("keeps memory when nobody led since this node's term: the epoch moved by one", () => {
    expect(planTakeover(term(5), term(4), afterCrash(), now)).toEqual({ kind: "memory" });
  });

  it("keeps memory when nobody led since this node's term: the last snapshot is its own", () => {
    expect(planTakeover(term(9), term(4), afterCrash(), now)).toEqual({ kind: "memory" });
  });

  it("keeps memory conservatively and rewrites it when Redis lost its data", () => {
    expect(planTakeover(term(9), term(3), stored(), now)).toEqual({ kind: "memory-rewrite", notBefore: now });
  });

  it("restores an exact final snapshot without notBefore", () => {
    const plan = planTakeover(term(5), undefined, afterCrash({ final: true }), now);
    expect(plan.kind).toBe("final-snapshot");
    expect(plan).not.toHaveProperty("notBefore");
  });

  it("restores a snapshot as spent up to the reservation, or up to now when that is later", () => {
    const plan = planTakeover(term(5), term(3), afterCrash(), now);
    if (plan.kind !== "snapshot") throw new Error(`got ${plan.kind}`);
    expect(plan.notBefore).toBe(2000);
    // The specs are Redis's; the state is the snapshot's; a resource the snapshot lacks starts unused; one Redis lacks is gone.
    expect(plan.snapshot.resources).toEqual([
      { ...resourceState(spec("a")), spec: spec("a", 2) },
      { spec: spec("b"), tats: [], counters: { grants: 0, rejections: 0, timeouts: 0, cancellations: 0, expirations: 0 }, lanes: [] },
    ]);
    expect(plan.snapshot.leases).toEqual([lease]);
    expect(plan.snapshot.takenAt).toBe(900);
    expect(planTakeover(term(5), undefined, afterCrash({}, 1000), now)).toMatchObject({ kind: "snapshot", notBefore: now });
    expect(engineSnapshot.resources[0]!.spec).toEqual(spec("a")); // the stored snapshot is left as it was
  });

  it("starts from the stored resources when there is no snapshot, conservatively only after a reservation", () => {
    const resources = new Map([["a", spec("a")]]);
    const fresh = planTakeover(term(1), undefined, stored({ resources }), now);
    expect(fresh).toEqual({
      kind: "config",
      notBefore: undefined,
      snapshot: { version: 1, takenAt: now, leases: [], resources: [{ spec: spec("a"), tats: [], counters: { grants: 0, rejections: 0, timeouts: 0, cancellations: 0, expirations: 0 }, lanes: [] }] },
    });
    const reserved = stored({ resources, reservation: { term: term(1).value, epoch: 1, until: 3000 } });
    expect(planTakeover(term(2), undefined, reserved, now)).toMatchObject({ kind: "config", notBefore: 3000 });
  });
});
