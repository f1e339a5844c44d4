// Whether a request may be granted: the refusals decided on arrival, the
// concurrency cap, the time from which the limits admit a load, and the
// failure messages callers see.
import { costOf, type Gcra } from "./gcra.js";
import type { Resource, Waiter } from "./resource.js";
import type { AcquireRequest, AcquireResult, FailureCode, LimitSpec, Millis } from "./types.js";

/** Formats a period for messages: 60000 -> "60s", 250 -> "250ms". */
function formatPeriod(ms: Millis): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function describeLimit(l: LimitSpec, i: number): string {
  return `limit ${i + 1} (${l.dimension} ${l.amount} per ${formatPeriod(l.periodMs)})`;
}

/** A failed result. */
export function failure(code: FailureCode, message: string): AcquireResult {
  return { ok: false, failure: { code, message } };
}

/**
 * Why a request is refused at once, or undefined: the engine is closed
 * (`closedMessage`), the resource or lane is unknown, the load exceeds a
 * burst of the resource or an ancestor, or the queue is full. Counts the
 * refusal on the resource.
 */
export function refusal(r: Resource | undefined, req: AcquireRequest, closedMessage: string | undefined): AcquireResult | undefined {
  if (closedMessage !== undefined) return failure("UNAVAILABLE", closedMessage);
  if (r === undefined) return failure("NOT_FOUND", `resource '${req.resource}' not found`);
  if (req.lane !== "" && !r.hasLane(req.lane)) {
    const tally = r.ownTally();
    tally.rejections++;
    tally.invalid++;
    const valid = r.spec.lanes.map((l) => l.name).join(", ");
    return failure("INVALID_ARGUMENT", `lane '${req.lane}' is not a lane of '${r.name}'; valid lanes: ${valid}`);
  }
  const never = neverFits(r, req.load);
  if (never !== undefined) {
    const tally = r.ownTally();
    tally.rejections++;
    tally.invalid++;
    return failure("INVALID_ARGUMENT", never);
  }
  if (r.waiting >= r.spec.maxQueue) {
    r.ownTally().rejections++;
    return failure("RESOURCE_EXHAUSTED", `queue of '${r.name}' is full (${r.waiting} waiting)`);
  }
  return undefined;
}

/** A message when `load` exceeds some limit's burst here or at an ancestor (it can never be granted). */
export function neverFits(r: Resource, load: number): string | undefined {
  let fits = true;
  for (let n: Resource | undefined = r; n !== undefined; n = n.parent) fits &&= load <= n.fitLoad;
  if (fits) return undefined;
  for (let n: Resource | undefined = r; n !== undefined; n = n.parent) {
    // From the specs: the limits' state need not be made for this.
    const limits = n.spec.limits;
    for (let i = 0; i < limits.length; i++) {
      const l = limits[i] as LimitSpec;
      if (!(costOf(l, load) <= l.burst)) {
        const what = l.dimension === "load" ? `load ${load}` : "a request's cost of 1";
        const of = n === r ? "" : ` of '${n.name}', an ancestor of '${r.name}'`;
        return `${what} exceeds the burst ${l.burst} of ${describeLimit(l, i)}${of}; it can never be granted`;
      }
    }
  }
  return undefined;
}

/** True while the concurrency cap allows one more lease: held leases and unknown ones (after a takeover) count. */
export function hasRoom(r: Resource, now: Millis): boolean {
  const cap = r.spec.concurrency;
  return cap <= 0 || r.inFlight + r.unknownAt(now) < cap;
}

/** hasRoom at r and every ancestor. */
export function hasRoomUp(r: Resource, now: Millis): boolean {
  for (let n: Resource | undefined = r; n !== undefined; n = n.parent) if (!hasRoom(n, now)) return false;
  return true;
}

/** readyAt at r and every ancestor: the time from which all of them admit `load`. */
export function readyAtUp(r: Resource, load: number, now: Millis): Millis {
  let at = readyAt(r, load, now);
  for (let n = r.parent; n !== undefined; n = n.parent) {
    const t = readyAt(n, load, now);
    if (t > at) at = t;
  }
  return at;
}

/** The time from which every limit admits `load` and no pause holds the resource (<= now: it fits now). */
export function readyAt(r: Resource, load: number, now: Millis): Millis {
  let at = r.pausedUntil;
  const limits = r.limits ?? r.ownLimits();
  for (let i = 0; i < limits.length; i++) {
    const g = limits[i] as Gcra;
    const t = g.readyAt(g.cost(load), now);
    if (t > at) at = t;
  }
  return at;
}

/** The failure of a waiter whose deadline came. */
export function timeoutFailure(w: Waiter, now: Millis): AcquireResult {
  return failure(
    "DEADLINE_EXCEEDED",
    `waited ${Math.round(now - w.enqueuedAt)} ms for '${w.res.name}'; no slot was free before the deadline`,
  );
}
