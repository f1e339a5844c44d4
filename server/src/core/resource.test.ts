import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { base36, nameTag, Resource, ResourcesByTag, SpecPool } from "./resource.js";
import type { ResourceSpec } from "./types.js";

const spec = (name: string, amount = 10): ResourceSpec => ({
  name,
  limits: [{ dimension: "requests", amount, periodMs: 1000, burst: amount }],
  concurrency: 0,
  lanes: [{ name: "default", weight: 1 }],
  defaultLane: "default",
  leaseTtlMs: 30_000,
  maxQueue: 100,
});

describe("ResourcesByTag", () => {
  // These two names share the second hash of their tags (the index's key), not their tags.
  const [a, b] = ["tenant-49876", "tenant-51976"].map((n) => new Resource(n, spec(n), 0)) as [Resource, Resource];

  it("tells apart resources whose tags share a hash", () => {
    expect(a.tag.slice(-7)).toBe(b.tag.slice(-7));
    expect(a.tag).not.toBe(b.tag);
    const index = new ResourcesByTag();
    index.set(a);
    index.set(b);
    expect(index.get(a.tag)).toBe(a);
    expect(index.get(b.tag)).toBe(b);
    index.delete(a);
    expect(index.get(a.tag)).toBeUndefined();
    expect(index.get(b.tag)).toBe(b);
    expect(index.get("0" + b.tag.slice(1))).toBeUndefined();
  });

  it("keeps the last resource put under a tag, and forgets only that one", () => {
    const index = new ResourcesByTag();
    const again = new Resource("tenant-49876", spec("tenant-49876"), 0);
    index.set(a);
    index.set(again);
    expect(index.get(nameTag("tenant-49876"))).toBe(again);
    index.delete(a);
    expect(index.get(nameTag("tenant-49876"))).toBe(again);
    index.delete(again);
    expect(index.get(nameTag("tenant-49876"))).toBeUndefined();
  });
});

describe("SpecPool", () => {
  it("shares equal lists of limits and lanes, never the caller's", () => {
    const pool = new SpecPool();
    const s1 = spec("a");
    const o1 = pool.own(s1);
    const o2 = pool.own(spec("b"));
    const o3 = pool.own(spec("c", 20));
    expect(o1).toEqual(s1);
    expect(o1.limits).not.toBe(s1.limits);
    expect(o2.limits).toBe(o1.limits);
    expect(o2.lanes).toBe(o1.lanes);
    expect(o3.limits).not.toBe(o1.limits);
    expect(o3.lanes).toBe(o1.lanes);
  });
});

describe("Resource", () => {
  it("makes its limits, lanes and counters only when first needed", () => {
    const r = new Resource("a", spec("a"), 5);
    expect(r.limits).toBeUndefined();
    expect(r.lanes).toBeUndefined();
    expect(r.limitStates().map((g) => g.tat)).toEqual([5]);
    expect(r.laneStates().map((l) => l.name)).toEqual(["default"]);
    expect(r.limits).toBeUndefined();
    expect(r.lanes).toBeUndefined();
    expect(r.lane("")?.name).toBe("default");
    expect(r.lanes).toHaveLength(1);
    expect(r.lane("other")).toBeUndefined();
    expect(r.ownLimits()[0]?.tat).toBe(5);
  });
});

describe("base 36", () => {
  it("writes what toString(36) writes, and tags as the two hashes in base 36 (the second on seven digits)", () => {
    for (const n of [0, 1, 35, 36, 1295, 1296, 46_655, 46_656, 1_679_615, 1_679_616, 2 ** 31, 2 ** 32 - 1, Number.MAX_SAFE_INTEGER]) expect(base36(n)).toBe(n.toString(36));
    fc.assert(fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (n) => base36(n) === n.toString(36)));
    expect(nameTag("tenant-49876")).toMatch(/^[0-9a-z]{8,14}$/);
    expect(new Resource("x", spec("x"), 0).idSuffix).toBe("." + nameTag("x"));
  });
});
