import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { leaderMetadataKey } from "@ratequeue/proto";
import { LeaderGate } from "./leader-gate.js";

describe("LeaderGate", () => {
  it("is open until its deadline; the first check past it closes the gate and reports the lapse once", () => {
    let now = 1000;
    const lapses: number[] = [];
    const gate = new LeaderGate(() => now, (deadline) => lapses.push(deadline));
    expect(gate.refusal()?.code).toBe(status.UNAVAILABLE); // starting: closed
    gate.lead(2000);
    expect(gate.refusal()).toBeUndefined();
    now = 1999;
    expect(gate.checkDeadline()).toBe(true);
    now = 2000; // a check exactly at the deadline is already too late
    const refusal = gate.refusal();
    expect(refusal?.code).toBe(status.UNAVAILABLE);
    expect(refusal?.trailers).toEqual({}); // nobody known to lead
    expect(gate.checkDeadline()).toBe(false);
    expect(lapses).toEqual([2000]);
  });

  it("a standby's refusal names the leader; close() is final", () => {
    const gate = new LeaderGate(() => 0, () => {});
    gate.follow("this node is a standby", "10.0.0.5:7070");
    expect(gate.refusal()?.trailers).toEqual({ [leaderMetadataKey]: "10.0.0.5:7070" });
    gate.close("shutting down");
    gate.lead(Infinity);
    expect(gate.refusal()?.message).toBe("shutting down");
  });
});
