// The edge: every field of every request is checked here, before it reaches
// the engine, and each failure names the field and the rule it broke. The
// engine may then assume valid input. The ranges below are the documented
// valid ranges of the API (README, "Valid input").
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, type Duration } from "@bufbuild/protobuf/wkt";
import {
  Dimension,
  LaneSchema,
  LimitSchema,
  ResourceSchema,
  type AcquireRequest,
  type HeartbeatRequest,
  type ReleaseRequest,
  type Resource,
} from "@ratequeue/proto";
import type { AcquireRequest as CoreAcquire, LimitSpec, ResourceSpec } from "../core/index.js";
import { invalidField } from "./rpc-error.js";

/**
 * The documented valid range of every field (README, "Valid input"). A value
 * outside its range fails with INVALID_ARGUMENT and a message "field: rule".
 */
export const limits = {
  /** Resource names (resource, name, resource.name): 1 to 128 characters of {@link namePattern}. */
  nameMaxLength: 128,
  /** Lane names (lane, resource.lanes[i].name, resource.default_lane): 1 to 64 characters of {@link namePattern}. */
  laneNameMaxLength: 64,
  /** load and actual_load: finite, 0 to 1e12. */
  maxLoad: 1e12,
  /** resource.limits[i].amount: greater than 0, at most 1e12; burst: 0 (= amount) or 1 to 1e12. */
  maxAmount: 1e12,
  /** priority: an integer from -1 000 000 to 1 000 000. */
  minPriority: -1_000_000,
  maxPriority: 1_000_000,
  /** timeout: 0 (one attempt) to 24 h. */
  maxTimeoutMs: 24 * 3600_000,
  /** resource.limits[i].period: 1 ms to 366 days. */
  maxPeriodMs: 366 * 24 * 3600_000,
  /** resource.lease_ttl: 100 ms to 24 h. */
  minLeaseTtlMs: 100,
  maxLeaseTtlMs: 24 * 3600_000,
  /** resource.limits: at most 16. */
  maxLimitsPerResource: 16,
  /** resource.lanes: at most 32, names unique. */
  maxLanesPerResource: 32,
  /** resource.lanes[i].weight: 0 (= 1) or 1 to 1000. */
  maxLaneWeight: 1000,
  /** resource.concurrency: 0 (no cap) to 1 000 000. */
  maxConcurrency: 1_000_000,
  /** resource.max_queue: 0 (= 10 000) or 1 to 1 000 000. */
  maxQueue: 1_000_000,
  /** lease_ids: at most 1000 per heartbeat. */
  maxLeaseIdsPerHeartbeat: 1000,
  /** lease_id, lease_ids[i]: 1 to 128 visible ASCII characters. */
  maxLeaseIdLength: 128,
  /** Namespace names: 1 to 63 characters of {@link namespacePattern}. */
  namespaceMaxLength: 63,
  /** API key descriptions: at most 256 characters, no control characters. */
  descriptionMaxLength: 256,
  /** Any one message, in either direction, in bytes (gRPC answers RESOURCE_EXHAUSTED). */
  maxMessageBytes: 1 << 20,
} as const;

// Further rules checked on the Session stream (session.ts):
//   request_id          not 0 (reserved for notices), and not the id of an
//                       acquire still waiting on the same session;
//   acquire_request_id  not 0; an unknown or decided id is ignored;
//   kind                one of acquire, release, heartbeat, cancel;
//   the body            a valid protobuf message, else the stream ends with
//                       INVALID_ARGUMENT (unary calls answer it).
// Per-client limits (RESOURCE_EXHAUSTED) are flags of `serve`; see
// auth/quotas.ts for their defaults.

export const defaults = {
  load: 1,
  priority: 10,
  laneName: "default",
  leaseTtlMs: 30_000,
  maxQueue: 10_000,
} as const;

/** Resource and lane names: a letter or digit, then letters, digits, '.', '_', ':', '/' or '-'. */
export const namePattern = /^[A-Za-z0-9][A-Za-z0-9._:/-]*$/;

/** Namespace names: a lowercase letter or digit, then lowercase letters, digits, '_' or '-'. */
export const namespacePattern = /^[a-z0-9][a-z0-9_-]*$/;

/** Checks a namespace name. */
export function checkNamespace(field: string, name: string): string {
  if (name.length === 0) throw invalidField(field, "must not be empty");
  if (name.length > limits.namespaceMaxLength) {
    throw invalidField(field, `must be at most ${limits.namespaceMaxLength} characters, got ${name.length}`);
  }
  if (!namespacePattern.test(name)) {
    throw invalidField(field, `'${name}' must start with a lowercase letter or digit and hold only lowercase letters, digits, '_' or '-'`);
  }
  return name;
}

/** Checks a free-text description: bounded, no control characters. */
export function checkDescription(field: string, text: string): string {
  if (text.length > limits.descriptionMaxLength) {
    throw invalidField(field, `must be at most ${limits.descriptionMaxLength} characters, got ${text.length}`);
  }
  if (/[\u0000-\u001f\u007f]/.test(text)) throw invalidField(field, "must not hold control characters");
  return text;
}

/** Checks a resource or lane name. */
export function checkName(field: string, name: string, maxLength: number = limits.nameMaxLength): string {
  if (name.length === 0) throw invalidField(field, "must not be empty");
  if (name.length > maxLength) throw invalidField(field, `must be at most ${maxLength} characters, got ${name.length}`);
  if (!namePattern.test(name)) {
    throw invalidField(field, `'${name}' must start with a letter or digit and hold only letters, digits, '.', '_', ':', '/' or '-'`);
  }
  return name;
}

function checkNumber(field: string, value: number, min: number, max: number, what = "a number"): number {
  if (!Number.isFinite(value)) throw invalidField(field, `must be a finite number, got ${value}`);
  if (value < min || value > max || (what === "an integer" && !Number.isInteger(value))) {
    throw invalidField(field, `must be ${what} from ${min} to ${max}, got ${value}`);
  }
  return value;
}

function checkDuration(field: string, d: Duration, minMs: number, maxMs: number): number {
  if (d.nanos < -999_999_999 || d.nanos > 999_999_999 || (d.seconds > 0n && d.nanos < 0) || (d.seconds < 0n && d.nanos > 0)) {
    throw invalidField(field, "is not a valid duration");
  }
  const ms = durationMs(d);
  if (!(ms >= minMs && ms <= maxMs)) throw invalidField(field, `must be from ${minMs} ms to ${maxMs} ms, got ${ms} ms`);
  return ms;
}

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

function checkLeaseId(field: string, id: string): string {
  if (id.length === 0) throw invalidField(field, "must not be empty");
  if (id.length > limits.maxLeaseIdLength) throw invalidField(field, `must be at most ${limits.maxLeaseIdLength} characters, got ${id.length}`);
  if (!/^[\x21-\x7e]+$/.test(id)) throw invalidField(field, "must hold only visible ASCII characters");
  return id;
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

/** The Resource message for a stored spec (defaults filled in). */
export function resourceToProto(spec: ResourceSpec): Resource {
  return create(ResourceSchema, {
    name: spec.name,
    limits: spec.limits.map((l) =>
      create(LimitSchema, {
        dimension: l.dimension === "requests" ? Dimension.REQUESTS : Dimension.LOAD,
        amount: l.amount,
        period: durationFromMs(l.periodMs),
        burst: l.burst,
      }),
    ),
    concurrency: spec.concurrency,
    lanes: spec.lanes.map((l) => create(LaneSchema, { name: l.name, weight: l.weight })),
    defaultLane: spec.defaultLane,
    leaseTtl: durationFromMs(spec.leaseTtlMs),
    maxQueue: spec.maxQueue,
  });
}
