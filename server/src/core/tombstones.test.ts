import { describe, expect, it } from "vitest";
import { Tombstones } from "./tombstones.js";

describe("Tombstones", () => {
  it("remembers serial-indexed ends within twice the capacity of issued serials", () => {
    const t = new Tombstones(4); // table of 8 slots
    for (let s = 1; s <= 8; s++) t.add(`x-${s}`, s, s % 2 ? "released" : "expired");
    expect(t.get("x-1", 1)).toBe("released");
    expect(t.get("x-2", 2)).toBe("expired");
    t.add("x-9", 9, "released"); // lands on serial 1's slot
    expect(t.get("x-1", 1)).toBeUndefined();
    expect(t.get("x-9", 9)).toBe("released");
    expect(t.get("x-100", 100)).toBeUndefined();
  });

  it("keeps an exact FIFO of other ids", () => {
    const t = new Tombstones(2);
    t.add("a", -1, "released");
    t.add("b", -1, "expired");
    t.add("c", -1, "released");
    expect(t.get("a", -1)).toBeUndefined();
    expect(t.get("b", -1)).toBe("expired");
    expect(t.get("c", -1)).toBe("released");
    t.clear();
    expect(t.get("c", -1)).toBeUndefined();
  });

  it("remembers nothing with capacity 0", () => {
    const t = new Tombstones(0);
    t.add("a", 1, "released");
    t.add("b", -1, "released");
    expect(t.get("a", 1)).toBeUndefined();
    expect(t.get("b", -1)).toBeUndefined();
  });
});
