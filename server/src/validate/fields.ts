// The rules of single fields and the checks that enforce them, shared by the
// request validation (requests.ts), auth and the config file.
import { durationMs, type Duration } from "@bufbuild/protobuf/wkt";
import { invalidField } from "../errors.js";

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
  /** resource.cooldown: 1 ms to 60 s (the longest pause doubling reaches). */
  maxCooldownMs: 60_000,
  /** feedback.retry_after: 0 to 1 h. */
  maxRetryAfterMs: 3600_000,
  /** resource.lease_ttl: 100 ms to 24 h. */
  minLeaseTtlMs: 100,
  maxLeaseTtlMs: 24 * 3600_000,
  /** resource.limits: at most 16. */
  maxLimitsPerResource: 16,
  /** resource.lanes: at most 32, names unique. */
  maxLanesPerResource: 32,
  /** resource.lanes[i].weight: 0 (= 1) or 1 to 1000. */
  maxLaneWeight: 1000,
  /** resource.share, resource.per_key.share: 0 (= 1) or 1 to 1000. */
  maxShare: 1000,
  /** resource.per_key_idle: 100 ms to 7 days. */
  minPerKeyIdleMs: 100,
  maxPerKeyIdleMs: 7 * 24 * 3600_000,
  /** resource.children_from: at most 1000 namespaces. */
  maxChildrenFrom: 1000,
  /** PutResources' resources: at most 10 000. */
  maxResourcesPerPut: 10_000,
  /** page_size, children_limit: at most 1000. */
  maxPageSize: 1000,
  /** key: 1 to 128 characters, no '@', whitespace or control characters. */
  keyMaxLength: 128,
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

// Further rules checked on the Session stream (rpc/session.ts):
//   request_id          not 0 (reserved for notices), and not the id of an
//                       acquire still waiting on the same session;
//   acquire_request_id  not 0; an unknown or decided id is ignored;
//   kind                one of acquire, release, heartbeat, cancel;
//   the body            a valid protobuf message, else the stream ends with
//                       INVALID_ARGUMENT (unary calls answer it).
// Per-client limits (RESOURCE_EXHAUSTED) are flags of `serve`; see
// auth/quotas.ts for their defaults.

/** What an unset field means. */
export const defaults = {
  load: 1,
  priority: 10,
  laneName: "default",
  leaseTtlMs: 30_000,
  maxQueue: 10_000,
  cooldownMs: 1000,
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

/** Checks an acquire's key (a customer id, say): it names the keyed child "RESOURCE/KEY". */
export function checkKey(field: string, key: string): string {
  if (key.length > limits.keyMaxLength) throw invalidField(field, `must be at most ${limits.keyMaxLength} characters, got ${key.length}`);
  if (/[@\s\u0000-\u001f\u007f]/.test(key)) throw invalidField(field, `'${key.slice(0, 40)}' must not hold '@', whitespace or control characters`);
  return key;
}

/** Checks a number against [min, max]; `what` "an integer" also requires an integer. */
export function checkNumber(field: string, value: number, min: number, max: number, what = "a number"): number {
  if (!Number.isFinite(value)) throw invalidField(field, `must be a finite number, got ${value}`);
  if (value < min || value > max || (what === "an integer" && !Number.isInteger(value))) {
    throw invalidField(field, `must be ${what} from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** Checks a protobuf Duration against [minMs, maxMs]; returns it in ms. */
export function checkDuration(field: string, d: Duration, minMs: number, maxMs: number): number {
  if (d.nanos < -999_999_999 || d.nanos > 999_999_999 || (d.seconds > 0n && d.nanos < 0) || (d.seconds < 0n && d.nanos > 0)) {
    throw invalidField(field, "is not a valid duration");
  }
  const ms = durationMs(d);
  if (!(ms >= minMs && ms <= maxMs)) throw invalidField(field, `must be from ${minMs} ms to ${maxMs} ms, got ${ms} ms`);
  return ms;
}

/** Checks a lease id. */
export function checkLeaseId(field: string, id: string): string {
  if (id.length === 0) throw invalidField(field, "must not be empty");
  if (id.length > limits.maxLeaseIdLength) throw invalidField(field, `must be at most ${limits.maxLeaseIdLength} characters, got ${id.length}`);
  if (!/^[\x21-\x7e]+$/.test(id)) throw invalidField(field, "must hold only visible ASCII characters");
  return id;
}
