// The referee on hand-made histories: each check must pass a history that
// keeps the promise and fail one that breaks it, at the first place it breaks.
import { describe, expect, test } from "vitest";
import type { AcquireEvent, GrantEvent, HistoryEvent } from "./history.js";
import {
  checkAcquires,
  checkConcurrency,
  checkLaneShares,
  checkLeaseLife,
  checkPauses,
  checkPriorities,
  checkRateLimits,
  checkUtilisation,
  defaultRefereeOptions,
  type RefereeEvent,
  type RefereeResource,
  type ServerRelease,
} from "./referee.js";

const api: RefereeResource = {
  name: "api",
  limits: [
    { dimension: "requests", amount: 10, periodMs: 1000, burst: 2 },
    { dimension: "load", amount: 100, periodMs: 1000, burst: 50 },
  ],
  concurrency: 2,
  leaseTtlMs: 1000,
};

let serial = 0;
const grant = (at: number, load = 1, worker = "w1"): GrantEvent => ({ kind: "grant", worker, resource: "api", lease: `L${++serial}`, at, load, priority: 10, lane: "" });
const released = (g: GrantEvent, at: number, reconciled = 0): ServerRelease => ({ kind: "server-release", node: "n1", lease: g.lease, resource: "api", at, outcome: "released", reconciled });
const acquire = (over: Partial<AcquireEvent>): AcquireEvent => ({ kind: "acquire", worker: "w1", resource: "api", start: 0, end: 0, outcome: "granted", ...over });

describe("rate limits", () => {
  test("a burst, then one grant per interval, holds; one more grant anywhere breaks it", () => {
    // burst 2 at 0, then 10/s: one per 100 ms.
    const ok: HistoryEvent[] = [grant(0), grant(0), grant(100), grant(200), grant(300)];
    expect(checkRateLimits(ok, [api])).toEqual([]);
    const over = [...ok, grant(250)];
    expect(checkRateLimits(over, [api])).toEqual([{ check: "rate", message: expect.stringContaining("api limit 1 (requests 10 per 1000 ms, burst 2)") }]);
  });

  test("a long window counts too: no short window breaks, the whole run does", () => {
    // 3 grants per 250 ms: every 250 ms window holds 3 <= 2 + 2.5, but 30 s hold 360 > 2 + 300.
    const events: HistoryEvent[] = [];
    for (let t = 0; t < 30_000; t += 250) events.push(grant(t), grant(t + 80), grant(t + 160));
    expect(checkRateLimits(events, [{ ...api, limits: [api.limits[0]!] }])).toHaveLength(1);
  });

  test("load limits count what each call really used, settled where a server applied its release", () => {
    const used = (g: GrantEvent, actualLoad: number, at: number): HistoryEvent => ({ kind: "release", worker: g.worker, lease: g.lease, at, actualLoad, outcome: "released" });
    const g = grant(0, 50);
    // 50 estimated, 80 used: 30 more settled at 100; by 400 the bound allows 50 + 40 = 90 in [0, 400].
    expect(checkRateLimits([g, used(g, 80, 95), released(g, 100, 30), grant(400, 10)], [api])).toEqual([]);
    const h = grant(0, 50);
    expect(checkRateLimits([h, used(h, 80, 95), released(h, 100, 30), grant(300, 10)], [api])).toEqual([
      { check: "rate", message: expect.stringContaining("limit 2 (load") },
    ]);
    // What the server charged does not matter: the call used 80 (a server that knew no estimate charged nothing).
    const k = grant(0, 50);
    expect(checkRateLimits([k, used(k, 80, 95), released(k, 100, 0), grant(300, 10)], [api])).toHaveLength(1);
    // A release no server applied settles when the client sent it.
    const u = grant(0, 50);
    expect(checkRateLimits([u, used(u, 80, 95), grant(300, 10)], [api])).toHaveLength(1);
    // A refund makes room.
    const r = grant(0, 50);
    expect(checkRateLimits([r, used(r, 10, 5), released(r, 10, -40), grant(20, 40)], [api])).toEqual([]);
  });

  test("within one millisecond, a reconciliation stands where its engine applied it among the grants", () => {
    const at = (lease: string, t: number, load: number): GrantEvent => ({ ...grant(t, load), lease });
    const first = at("eng-1.tag", 0, 40);
    const second = at("eng-2.tag", 100, 10);
    const used: HistoryEvent = { kind: "release", worker: "w1", lease: first.lease, at: 99, actualLoad: 60, outcome: "released" };
    // 40 + 10 = 50 <= burst: fine. The +20 settled at the same ms after the second grant came later.
    expect(checkRateLimits([first, second, used, { ...released(first, 100, 20), issued: "eng-2" }], [api])).toEqual([]);
    // Settled before the second grant (the engine had issued only eng-1 then), it would have left no room.
    expect(checkRateLimits([first, second, used, { ...released(first, 100, 20), issued: "eng-1" }], [api])).toHaveLength(1);
  });
});

describe("concurrency", () => {
  test("leases count from grant to release, expiry or their worker's death, whichever came first", () => {
    const a = grant(0);
    const b = grant(10);
    const c = grant(50, 1, "w2");
    const events: RefereeEvent[] = [a, b, released(a, 50), c, { kind: "expired", node: "n2", lease: b.lease, resource: "api", at: 70 }];
    // A slot freed at 50 may be granted again at 50.
    expect(checkConcurrency([...events, grant(70)], [api])).toEqual([]);
    expect(checkConcurrency([...events, grant(60)], [api])).toEqual([{ check: "concurrency", message: "api: 3 leases held at 60, over its concurrency of 2" }]);
    // A killed worker's lease ends with it.
    const d = grant(100, 1, "w3");
    const e = grant(100);
    expect(checkConcurrency([d, e, { kind: "worker", worker: "w3", event: "killed", at: 150 }, grant(150)], [api])).toEqual([]);
  });

  test("a release no server applied ends the lease when the client sent it; a lease never ended counts to the end", () => {
    const a = grant(0);
    const b = grant(0);
    const unknownRelease: HistoryEvent = { kind: "release", worker: "w1", lease: a.lease, at: 30, outcome: "unknown" };
    expect(checkConcurrency([a, b, unknownRelease, grant(40)], [api])).toEqual([]);
    expect(checkConcurrency([a, b, grant(10_000)], [api])).toHaveLength(1);
  });
});

describe("acquires", () => {
  const o = defaultRefereeOptions;
  test("a grant, a deadline within its slack and a cancellation pass; a grant twice, early or late deadlines and failures do not", () => {
    const g = grant(5);
    expect(
      checkAcquires(
        [
          g,
          acquire({ start: 0, end: 6, lease: g.lease }),
          acquire({ start: 0, end: 1500, outcome: "deadline", timeoutMs: 1000 }),
          acquire({ start: 0, end: 20, outcome: "cancelled" }),
        ],
        o,
      ),
    ).toEqual([]);
    const twice = checkAcquires([g, { ...g }, acquire({ start: 0, end: 6, lease: g.lease }), acquire({ start: 1, end: 7, lease: g.lease })], o);
    expect(twice.map((v) => v.message)).toEqual([`lease ${g.lease} was granted 2 times`, expect.stringContaining("already another acquire's")]);
    expect(checkAcquires([acquire({ start: 0, end: 900, outcome: "deadline", timeoutMs: 1000 })], o)).toHaveLength(1);
    expect(checkAcquires([acquire({ start: 0, end: 3600, outcome: "deadline", timeoutMs: 1000 })], o)).toHaveLength(1);
    expect(checkAcquires([acquire({ start: 0, end: 10, outcome: "failed", code: "UNAVAILABLE" })], o)).toHaveLength(1);
    expect(checkAcquires([acquire({ start: 0, end: 10, outcome: "failed", code: "UNAVAILABLE" })], o, ["UNAVAILABLE"])).toEqual([]);
  });

  test("an acquire still waiting past its timeout and slack hung; a killed worker's did not", () => {
    const pending: HistoryEvent = { kind: "pending", worker: "w1", resource: "api", start: 0, at: 60_000 };
    expect(checkAcquires([{ ...pending, timeoutMs: 5000 }], defaultRefereeOptions)).toEqual([
      { check: "acquire", message: "w1's acquire on api at 0 still waited at 60000: it hung" },
    ]);
    expect(checkAcquires([pending], defaultRefereeOptions)).toEqual([]); // no timeout: waiting is its right
    expect(checkAcquires([{ ...pending, timeoutMs: 5000 }, { kind: "worker", worker: "w1", event: "killed", at: 50 }], defaultRefereeOptions)).toEqual([]);
  });
});

describe("lease life", () => {
  const o = defaultRefereeOptions;
  test("a live worker's lease reported lost is a violation unless a long enough fault excuses it", () => {
    const g = grant(0);
    const lost: HistoryEvent = { kind: "lost", worker: "w1", lease: g.lease, at: 3000 };
    expect(checkLeaseLife([g, lost], [api], o)).toHaveLength(1);
    const cut: HistoryEvent = { kind: "fault", fault: "cut-workers", target: "n1", at: 500, until: 2500 };
    expect(checkLeaseLife([g, lost, cut], [api], o, (f) => f.fault === "cut-workers")).toEqual([]);
    expect(checkLeaseLife([g, lost, cut], [api], o, () => false)).toHaveLength(1);
  });

  test("a killed worker's lease must come back within TTL plus the failover allowance", () => {
    const g = grant(0);
    const killed: HistoryEvent = { kind: "worker", worker: "w1", event: "killed", at: 100 };
    expect(checkLeaseLife([g, killed, { kind: "expired", node: "n1", lease: g.lease, resource: "api", at: 1100 }], [api], o)).toEqual([]);
    expect(checkLeaseLife([g, killed, { kind: "expired", node: "n1", lease: g.lease, resource: "api", at: 7000 }], [api], o)).toHaveLength(1);
    expect(checkLeaseLife([g, killed], [api], o)).toHaveLength(1);
  });
});

describe("utilisation", () => {
  test("quiet windows must reach the share; windows a fault touches are not judged", () => {
    const events: HistoryEvent[] = [];
    for (let t = 0; t < 2000; t += 100) events.push(grant(t));
    const window = { from: 0, to: 2000, windowMs: 1000, recoveryMs: 200, minShare: 0.9 };
    expect(checkUtilisation(events, api, window)).toEqual([]);
    const sparse = events.filter((g) => g.kind !== "grant" || g.at < 1000 || g.at % 200 === 0);
    expect(checkUtilisation(sparse, api, window)).toEqual([{ check: "utilisation", message: "api: 5 grants in [1000, 2000), under 90% of the 10 allowed" }]);
    const fault: HistoryEvent = { kind: "fault", fault: "kill", target: "n1", at: 900, until: 900 };
    expect(checkUtilisation([...sparse, fault], api, window)).toEqual([]);
    // A change of leader that no fault caused disturbs as much.
    const lead: HistoryEvent = { kind: "lead", node: "n2", at: 1100 };
    expect(checkUtilisation([...sparse, lead], api, window)).toEqual([]);
  });
});

describe("lane shares", () => {
  test("grants shared 3:1 between lanes pass; 1:1 does not", () => {
    const laned = (at: number, lane: string): GrantEvent => ({ ...grant(at), lane });
    const events: HistoryEvent[] = [];
    for (let t = 0; t < 1000; t += 40) events.push(laned(t, t % 160 === 0 ? "batch" : "user"));
    const window = { from: 0, to: 1000, windowMs: 1000, recoveryMs: 0, tolerance: 0.1 };
    expect(checkLaneShares(events, "api", { user: 3, batch: 1 }, window)).toEqual([]);
    const even = events.map((g) => (g.kind === "grant" ? { ...g, lane: g.at % 80 === 0 ? "batch" : "user" } : g));
    expect(checkLaneShares(even, "api", { user: 3, batch: 1 }, window)).toHaveLength(2);
  });
});

describe("priorities", () => {
  test("a lane full of high-priority waiters grants the low ones (almost) nothing", () => {
    const prio = (at: number, priority: number): GrantEvent => ({ ...grant(at), lane: "user", priority });
    const events: HistoryEvent[] = [];
    for (let t = 0; t < 1000; t += 10) events.push(prio(t, t === 500 ? 1 : 100));
    const window = { from: 0, to: 1000, windowMs: 1000, recoveryMs: 0, maxLowShare: 0.02 };
    expect(checkPriorities(events, "api", "user", 100, window)).toEqual([]);
    const mixed = events.map((g) => (g.kind === "grant" && g.at % 30 === 0 ? { ...g, priority: 1 } : g));
    expect(checkPriorities(mixed, "api", "user", 100, window)).toHaveLength(1);
  });
});

describe("pauses", () => {
  const pause = (at: number, until: number, node = "n1"): RefereeEvent => ({ kind: "server-pause", node, resource: "api", at, until });
  test("grants before a pause, at its start and from its end hold; one inside it breaks it", () => {
    const ok: RefereeEvent[] = [grant(0), pause(100, 600), grant(100), grant(600), grant(700)];
    expect(checkPauses(ok)).toEqual([]);
    const inside = grant(350);
    expect(checkPauses([...ok, inside])).toEqual([{ check: "pause", message: `api: lease ${inside.lease} granted at 350, inside the pause n1 began at 100 until 600` }]);
    // Another resource is not paused.
    expect(checkPauses([...ok, { ...grant(350), resource: "other" }])).toEqual([]);
  });

  test("a pause binds until the next change of leader, not past it", () => {
    const lead: RefereeEvent = { kind: "lead", node: "n2", at: 300 };
    expect(checkPauses([pause(100, 600), lead, grant(400)])).toEqual([]);
    expect(checkPauses([pause(100, 600), lead, grant(250)])).toHaveLength(1);
  });
});

describe("resource trees", () => {
  const parent: RefereeResource = { name: "p", limits: [{ dimension: "requests", amount: 10, periodMs: 1000, burst: 2 }], concurrency: 2, leaseTtlMs: 1000 };
  const tree = [parent, ...["p/a", "p/b"].map((name) => ({ name, parent: "p", limits: [{ dimension: "requests" as const, amount: 10, periodMs: 1000, burst: 2 }], concurrency: 0, leaseTtlMs: 1000 }))];
  const on = (resource: string, at: number): GrantEvent => ({ ...grant(at), resource });

  test("a parent's limit counts its children's grants: each child within its own bound, both together over the parent's", () => {
    const ok: HistoryEvent[] = [on("p/a", 0), on("p/b", 0), on("p/a", 100), on("p/b", 200)];
    expect(checkRateLimits(ok, tree)).toEqual([]);
    expect(checkRateLimits([...ok, on("p/b", 50)], tree)).toEqual([{ check: "rate", message: expect.stringContaining("p limit 1") }]);
  });

  test("a parent's cap counts the leases held by its children", () => {
    const a = on("p/a", 0);
    const b = on("p/b", 10);
    const ok: HistoryEvent[] = [a, b, { ...released(a, 20), resource: "p/a" }, on("p/b", 30)];
    expect(checkConcurrency(ok, tree)).toEqual([]);
    expect(checkConcurrency([a, b, on("p/b", 15)], tree)).toEqual([{ check: "concurrency", message: expect.stringContaining("p: 3 leases held") }]);
  });
});
