// The edge: every field of every request is checked here, before it reaches
// the engine, and each failure names the field and the rule it broke. The
// engine may then assume valid input. Engine results go the other way in
// rpc/convert.ts.
import { Dimension, type AcquireRequest, type HeartbeatRequest, type ReleaseRequest, type Resource } from "@ratequeue/proto";
import type { AcquireRequest as CoreAcquire, LimitSpec, ResourceSpec } from "../core/index.js";
import { invalidField } from "../errors.js";
import { checkDuration, checkLeaseId, checkName, checkNumber, defaults, limits } from "./fields.js";

/** A validated AcquireRequest in engine terms; `deadline` is set by the caller. */
export function acquireFromProto(req: AcquireRequest, now: number, owner: string, callDeadline?: number): CoreAcquire {
  const resource = checkName("resource", req.resource);
  const load = req.load === undefined ? defaults.load : checkNumber("load", req.load, 0, limits.maxLoad);
  const priority =
    req.priority === undefined ? defaults.priority : checkNumber("priority", req.priority, limits.minPriority, limits.maxPriority, "an integer");
  const lane = req.lane === "" ? "" : checkName("lane", req.lane, limits.laneNameMaxLength);
  let deadline = callDeadline;
  if (req.timeout !== undefined) {
    const timeoutMs = checkDuration("timeout", req.timeout, 0, limits.maxTimeoutMs);
    deadline = deadline === undefined ? now + timeoutMs : Math.min(deadline, now + timeoutMs);
  }
  return { resource, load, priority, lane, deadline, owner };
}

/** A validated ReleaseRequest. */
export function releaseFromProto(req: ReleaseRequest): { leaseId: string; actualLoad?: number } {
  const leaseId = checkLeaseId("lease_id", req.leaseId);
  const actualLoad = req.actualLoad === undefined ? undefined : checkNumber("actual_load", req.actualLoad, 0, limits.maxLoad);
  return { leaseId, actualLoad };
}

/** A validated HeartbeatRequest's lease ids. */
export function heartbeatFromProto(req: HeartbeatRequest): string[] {
  if (req.leaseIds.length > limits.maxLeaseIdsPerHeartbeat) {
    throw invalidField("lease_ids", `must hold at most ${limits.maxLeaseIdsPerHeartbeat} ids, got ${req.leaseIds.length}`);
  }
  return req.leaseIds.map((id, i) => checkLeaseId(`lease_ids[${i}]`, id));
}

/** Validates a Resource message and fills its defaults. */
export function resourceFromProto(r: Resource | undefined): ResourceSpec {
  if (r === undefined) throw invalidField("resource", "is required");
  const name = checkName("resource.name", r.name);
  if (r.limits.length > limits.maxLimitsPerResource) {
    throw invalidField("resource.limits", `must hold at most ${limits.maxLimitsPerResource} limits, got ${r.limits.length}`);
  }
  const specLimits: LimitSpec[] = r.limits.map((l, i) => {
    const field = `resource.limits[${i}]`;
    if (l.dimension !== Dimension.REQUESTS && l.dimension !== Dimension.LOAD) {
      throw invalidField(`${field}.dimension`, "must be DIMENSION_REQUESTS or DIMENSION_LOAD");
    }
    if (!(l.amount > 0)) throw invalidField(`${field}.amount`, `must be greater than 0, got ${l.amount}`);
    const amount = checkNumber(`${field}.amount`, l.amount, 0, limits.maxAmount);
    if (l.period === undefined) throw invalidField(`${field}.period`, "is required");
    const periodMs = checkDuration(`${field}.period`, l.period, 1, limits.maxPeriodMs);
    const burst = l.burst === 0 ? Math.max(amount, 1) : checkNumber(`${field}.burst`, l.burst, 1, limits.maxAmount);
    return { dimension: l.dimension === Dimension.REQUESTS ? "requests" : "load", amount, periodMs, burst };
  });
  const concurrency = checkNumber("resource.concurrency", r.concurrency, 0, limits.maxConcurrency, "an integer");
  if (r.lanes.length > limits.maxLanesPerResource) {
    throw invalidField("resource.lanes", `must hold at most ${limits.maxLanesPerResource} lanes, got ${r.lanes.length}`);
  }
  const lanes = r.lanes.map((lane, i) => ({
    name: checkName(`resource.lanes[${i}].name`, lane.name, limits.laneNameMaxLength),
    weight: lane.weight === 0 ? 1 : checkNumber(`resource.lanes[${i}].weight`, lane.weight, 1, limits.maxLaneWeight, "an integer"),
  }));
  const seen = new Set<string>();
  for (const lane of lanes) {
    if (seen.has(lane.name)) throw invalidField("resource.lanes", `lane '${lane.name}' is declared twice`);
    seen.add(lane.name);
  }
  if (lanes.length === 0) lanes.push({ name: r.defaultLane || defaults.laneName, weight: 1 });
  const defaultLane = r.defaultLane === "" ? lanes[0]!.name : r.defaultLane;
  if (!seen.has(defaultLane) && lanes[0]!.name !== defaultLane) {
    throw invalidField("resource.default_lane", `'${defaultLane}' is not one of the lanes (${lanes.map((l) => l.name).join(", ")})`);
  }
  const leaseTtlMs =
    r.leaseTtl === undefined ? defaults.leaseTtlMs : checkDuration("resource.lease_ttl", r.leaseTtl, limits.minLeaseTtlMs, limits.maxLeaseTtlMs);
  const maxQueue = r.maxQueue === 0 ? defaults.maxQueue : checkNumber("resource.max_queue", r.maxQueue, 1, limits.maxQueue, "an integer");
  return { name, limits: specLimits, concurrency, lanes, defaultLane, leaseTtlMs, maxQueue };
}
