// The edge: every field of every request is checked here, before it reaches
// the engine, and each failure names the field and the rule it broke. The
// engine may then assume valid input. Engine results go the other way in
// rpc/convert.ts.
import {
  Dimension,
  type AcquireRequest,
  type Limit,
  type DimensionFeedback,
  type HeartbeatRequest,
  type ProviderFeedback,
  type ReleaseRequest,
  type ReportRequest,
  type Resource,
} from "@ratequeue/proto";
import type {
  AcquireRequest as CoreAcquire,
  DimensionFeedback as CoreDimensionFeedback,
  LimitSpec,
  ProviderFeedback as CoreFeedback,
  ResourceSpec,
} from "../core/index.js";
import { invalidField } from "../errors.js";
import { checkDuration, checkKey, checkLeaseId, checkName, checkNamespace, checkNumber, defaults, limits } from "./fields.js";

/** A load limit's unit: a short lowercase label. */
const unitPattern = /^[a-z0-9_]{1,32}$/;

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
  const key = req.key === "" ? undefined : checkKey("key", req.key);
  return { resource, load, priority, lane, deadline, owner, ...(key !== undefined && { key }) };
}

/** A validated ReleaseRequest. */
export function releaseFromProto(req: ReleaseRequest): { leaseId: string; actualLoad?: number; feedback?: CoreFeedback } {
  const leaseId = checkLeaseId("lease_id", req.leaseId);
  const actualLoad = req.actualLoad === undefined ? undefined : checkNumber("actual_load", req.actualLoad, 0, limits.maxLoad);
  const feedback = req.feedback === undefined ? undefined : feedbackFromProto("feedback", req.feedback);
  return { leaseId, actualLoad, ...(feedback !== undefined && { feedback }) };
}

/** A validated ReportRequest. */
export function reportFromProto(req: ReportRequest): { resource: string; feedback: CoreFeedback } {
  const resource = checkName("resource", req.resource);
  if (req.feedback === undefined) throw invalidField("feedback", "is required: say what the provider answered");
  return { resource, feedback: feedbackFromProto("feedback", req.feedback) };
}

/** Validated provider feedback. */
function feedbackFromProto(field: string, fb: ProviderFeedback): CoreFeedback {
  const out: CoreFeedback = { throttled: fb.throttled };
  if (fb.retryAfter !== undefined) out.retryAfterMs = checkDuration(`${field}.retry_after`, fb.retryAfter, 0, limits.maxRetryAfterMs);
  const dims = [
    ["requests", fb.requests],
    ["load", fb.load],
    ["input_tokens", fb.inputTokens],
    ["output_tokens", fb.outputTokens],
  ] as const;
  for (const [name, d] of dims) {
    if (d === undefined) continue;
    const dim = dimensionFromProto(`${field}.${name}`, d);
    if (name === "requests") out.requests = dim;
    else if (name === "load") out.load = dim;
    else if (name === "input_tokens") out.inputTokens = dim;
    else out.outputTokens = dim;
  }
  return out;
}

function dimensionFromProto(field: string, d: DimensionFeedback): CoreDimensionFeedback {
  const out: CoreDimensionFeedback = {};
  if (d.limit !== undefined) {
    if (!(d.limit > 0)) throw invalidField(`${field}.limit`, `must be greater than 0, got ${d.limit}`);
    out.limit = checkNumber(`${field}.limit`, d.limit, 0, limits.maxAmount);
  }
  if (d.limitPeriod !== undefined) out.limitPeriodMs = checkDuration(`${field}.limit_period`, d.limitPeriod, 1, limits.maxPeriodMs);
  if (d.remaining !== undefined) out.remaining = checkNumber(`${field}.remaining`, d.remaining, 0, limits.maxAmount);
  if (d.reset !== undefined) out.resetMs = checkDuration(`${field}.reset`, d.reset, 0, limits.maxPeriodMs);
  return out;
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
  const specLimits = limitsFromProto("resource.limits", r.limits);
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
  const cooldownMs = r.cooldown === undefined ? defaults.cooldownMs : checkDuration("resource.cooldown", r.cooldown, 1, limits.maxCooldownMs);
  const learnLimits = r.learnLimits ?? true;
  const spec: ResourceSpec = { name, limits: specLimits, concurrency, lanes, defaultLane, leaseTtlMs, maxQueue, cooldownMs, learnLimits };
  if (r.parent !== "") {
    spec.parent = checkParent("resource.parent", r.parent);
    if (spec.parent === name) throw invalidField("resource.parent", `'${name}' cannot be its own parent`);
  }
  if (r.share !== 0) spec.share = checkNumber("resource.share", r.share, 1, limits.maxShare, "an integer");
  if (r.perKey !== undefined) {
    spec.perKey = {
      limits: limitsFromProto("resource.per_key.limits", r.perKey.limits),
      concurrency: checkNumber("resource.per_key.concurrency", r.perKey.concurrency, 0, limits.maxConcurrency, "an integer"),
      share: r.perKey.share === 0 ? 1 : checkNumber("resource.per_key.share", r.perKey.share, 1, limits.maxShare, "an integer"),
    };
  }
  if (r.perKeyIdle !== undefined) {
    spec.perKeyIdleMs = checkDuration("resource.per_key_idle", r.perKeyIdle, limits.minPerKeyIdleMs, limits.maxPerKeyIdleMs);
  }
  if (r.childrenFrom.length > 0) {
    if (r.childrenFrom.length > limits.maxChildrenFrom) {
      throw invalidField("resource.children_from", `must hold at most ${limits.maxChildrenFrom} namespaces, got ${r.childrenFrom.length}`);
    }
    const from = r.childrenFrom.map((ns, i) => checkNamespace(`resource.children_from[${i}]`, ns));
    spec.childrenFrom = [...new Set(from)].sort();
  }
  return spec;
}

/** A parent reference: a resource name, or "NAMESPACE@NAME" for a resource of another namespace. */
function checkParent(field: string, ref: string): string {
  const at = ref.indexOf("@");
  if (at < 0) return checkName(field, ref);
  checkNamespace(field, ref.slice(0, at));
  checkName(field, ref.slice(at + 1));
  return ref;
}

/** Validated rate limits of a resource or a keyed child template. */
function limitsFromProto(field: string, list: Limit[]): LimitSpec[] {
  if (list.length > limits.maxLimitsPerResource) {
    throw invalidField(field, `must hold at most ${limits.maxLimitsPerResource} limits, got ${list.length}`);
  }
  return list.map((l, i) => {
    const at = `${field}[${i}]`;
    if (l.dimension !== Dimension.REQUESTS && l.dimension !== Dimension.LOAD) {
      throw invalidField(`${at}.dimension`, "must be DIMENSION_REQUESTS or DIMENSION_LOAD");
    }
    if (!(l.amount > 0)) throw invalidField(`${at}.amount`, `must be greater than 0, got ${l.amount}`);
    const amount = checkNumber(`${at}.amount`, l.amount, 0, limits.maxAmount);
    if (l.period === undefined) throw invalidField(`${at}.period`, "is required");
    const periodMs = checkDuration(`${at}.period`, l.period, 1, limits.maxPeriodMs);
    const burst = l.burst === 0 ? Math.max(amount, 1) : checkNumber(`${at}.burst`, l.burst, 1, limits.maxAmount);
    const dimension = l.dimension === Dimension.REQUESTS ? "requests" : "load";
    if (l.unit !== "") {
      if (dimension === "requests") throw invalidField(`${at}.unit`, "only a load limit has a unit; a requests limit counts acquires");
      if (!unitPattern.test(l.unit)) {
        throw invalidField(`${at}.unit`, `must be 1 to 32 lowercase letters, digits or '_' (tokens, input_tokens, output_tokens, ...), got '${l.unit.slice(0, 40)}'`);
      }
    }
    return { dimension, amount, periodMs, burst, ...(l.unit !== "" && { unit: l.unit }) };
  });
}
