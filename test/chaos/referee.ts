// The referee: checks a chaos run's whole history against what ratequeue
// promises, whatever faults happened. Each check returns the violations it
// found, each with a message that says what, where and when; an empty list
// means the promise held over the whole run.
import type { AcquireEvent, FaultEvent, GrantEvent, HistoryEvent, ReleaseEvent } from "./history.js";

/** The resource as configured, in the units the referee needs. */
export interface RefereeLimit {
  dimension: "requests" | "load";
  amount: number;
  periodMs: number;
  burst: number;
}

export interface RefereeResource {
  name: string;
  limits: RefereeLimit[];
  /** 0: no cap. */
  concurrency: number;
  leaseTtlMs: number;
  /** The parent in a resource tree: a grant here counts at the parent's level too. */
  parent?: string;
  /** A keyed child, made from its parent's template on first use (not declared; forgotten when idle). */
  keyed?: boolean;
}

/**
 * Whether a grant on `granted` counts against `level`: it is that resource
 * or one of its descendants (a tree's every level is judged on everything
 * granted below it).
 */
export function countsAt(level: string, granted: string, resources: RefereeResource[]): boolean {
  for (let n: string | undefined = granted; n !== undefined; n = resources.find((r) => r.name === n)?.parent) if (n === level) return true;
  return false;
}

/** A server's own record of a release (its debug "lease released" line). */
export interface ServerRelease {
  kind: "server-release";
  node: string;
  lease: string;
  resource: string;
  at: number;
  outcome: string;
  /** actual load - estimate, charged (or refunded, when negative) on the load limits at `at`. */
  reconciled: number;
  /** `<prefix>-<serial>` of the last lease id the releasing engine had issued: orders it among grants of its millisecond. */
  issued?: string;
}

/** A server paused a resource for its provider's refusal (its "provider throttled: resource paused" line), from `at` to `until`. */
export interface ServerPause {
  kind: "server-pause";
  node: string;
  resource: string;
  at: number;
  until: number;
}

export type RefereeEvent = HistoryEvent | ServerRelease | ServerPause;

export interface Violation {
  check: string;
  message: string;
}

export interface RefereeOptions {
  /** How long past its timeout an acquire may end DEADLINE_EXCEEDED (the clients' 2 s slack and some scheduling). */
  deadlineSlackMs: number;
  /** How long after a worker's death its lease may still be held: the lease TTL plus this (a failover in between). */
  failoverAllowanceMs: number;
}

export const defaultRefereeOptions: RefereeOptions = { deadlineSlackMs: 2500, failoverAllowanceMs: 5000 };

const of = <K extends RefereeEvent["kind"]>(events: RefereeEvent[], kind: K) =>
  events.filter((e): e is Extract<RefereeEvent, { kind: K }> => e.kind === kind);

/**
 * A run cut into windows of `windowMs` from `from` to `to`, skipping those a
 * disturbance or its recovery touches: an injected fault, or a change of
 * leader (one that no fault caused, on a loaded machine, disturbs as much).
 */
interface QuietWindows {
  from: number;
  to: number;
  windowMs: number;
  recoveryMs: number;
}

/** The grants of each quiet window (see QuietWindows), in one pass over the grants. */
function quietWindows(events: RefereeEvent[], grants: GrantEvent[], w: QuietWindows): { start: number; end: number; grants: GrantEvent[] }[] {
  const disturbances = [...of(events, "fault"), ...of(events, "lead").map((l) => ({ at: l.at, until: l.at }))];
  const windows: { start: number; end: number; grants: GrantEvent[] }[] = [];
  for (let start = w.from; start + w.windowMs <= w.to; start += w.windowMs) windows.push({ start, end: start + w.windowMs, grants: [] });
  for (const g of grants) {
    const i = Math.floor((g.at - w.from) / w.windowMs);
    if (i >= 0 && i < windows.length) windows[i]!.grants.push(g);
  }
  return windows.filter(({ start, end }) => !disturbances.some((f) => f.at < end && f.until + w.recoveryMs > start));
}

/**
 * Where an event stands among an engine's grants: its lease id's prefix and
 * serial (a release: the last id its engine had issued), twice the serial
 * plus `after`, so that a release comes after the grants it followed and
 * before the ones it let through.
 */
function issuedOrder(id: string | undefined, after: 0 | 1): [string, number] {
  const match = id === undefined ? null : /^([0-9a-z]+)-([0-9a-z]+)/.exec(id);
  return match === null ? ["", after] : [match[1]!, parseInt(match[2]!, 36) * 2 + after];
}

/** Time order, and within one millisecond one engine's own order (others: grants first). */
function inEngineOrder(a: { t: number; grant: boolean; order: [string, number] }, b: { t: number; grant: boolean; order: [string, number] }): number {
  if (a.t !== b.t) return a.t - b.t;
  if (a.order[0] === b.order[0]) return a.order[1] - b.order[1];
  return Number(b.grant) - Number(a.grant);
}

/** How close one limit came to its bound: the most units over it in any window (negative: under it), and where. */
export interface RateMargin {
  resource: string;
  limit: number;
  worstExcess: number;
  /** The end of the worst window. */
  at: number;
}

/**
 * What each call really used beyond (or below) its estimate, and when that
 * was settled: the client's actual load minus the grant's load, at the time
 * a server applied the release (in that engine's order), or when the client
 * sent it if no server knew the lease. This is the load the provider saw,
 * whatever any server charged for it.
 */
function settledLoad(events: RefereeEvent[], resource: string, resources: RefereeResource[]): { t: number; units: number; issued: string | undefined }[] {
  const grants = new Map(of(events, "grant").filter((g) => countsAt(resource, g.resource, resources)).map((g) => [g.lease, g]));
  const applied = new Map<string, ServerRelease>();
  for (const s of of(events, "server-release")) if (!applied.has(s.lease)) applied.set(s.lease, s);
  const out: { t: number; units: number; issued: string | undefined }[] = [];
  for (const r of of(events, "release")) {
    const g = grants.get(r.lease);
    if (g === undefined || r.actualLoad === undefined || r.actualLoad === g.load) continue;
    const s = applied.get(r.lease);
    out.push({ t: s?.at ?? r.at, units: r.actualLoad - g.load, issued: s?.issued });
  }
  return out;
}

/**
 * For every limit, the worst window: units granted in it minus
 * `burst + t * amount / period`, counting grants at their server grant time
 * and, for load limits, the settled load (settledLoad) where it was settled.
 * Windows start and end at grants; for each end the worst start is kept as
 * a running maximum, so this is linear in the history.
 */
export function rateMargins(events: RefereeEvent[], resources: RefereeResource[]): RateMargin[] {
  const out: RateMargin[] = [];
  for (const r of resources) {
    const grants = of(events, "grant").filter((g) => countsAt(r.name, g.resource, resources));
    const reconciled = settledLoad(events, r.name, resources);
    r.limits.forEach((limit, k) => {
      type Charge = { t: number; units: number; grant: boolean; order: [string, number] };
      const log: Charge[] = grants.map((g) => ({ t: g.at, units: limit.dimension === "requests" ? 1 : g.load, grant: true, order: issuedOrder(g.lease, 0) }));
      if (limit.dimension === "load") for (const s of reconciled) log.push({ t: s.t, units: s.units, grant: false, order: issuedOrder(s.issued, 1) });
      log.sort(inEngineOrder);
      const rate = limit.amount / limit.periodMs;
      let before = 0; // units charged before the current entry
      let best = -Infinity; // max over window starts i of (t_i * rate - units before i)
      const margin: RateMargin = { resource: r.name, limit: k, worstExcess: -limit.burst, at: NaN };
      for (const c of log) {
        if (c.grant) best = Math.max(best, c.t * rate - before);
        before += c.units;
        if (!c.grant) continue;
        const excess = before - c.t * rate + best - limit.burst;
        if (excess > margin.worstExcess) {
          margin.worstExcess = excess;
          margin.at = c.t;
        }
      }
      out.push(margin);
    });
  }
  return out;
}

/** No window of any length exceeds any limit's bound (see rateMargins). */
export function checkRateLimits(events: RefereeEvent[], resources: RefereeResource[]): Violation[] {
  return rateMargins(events, resources)
    .filter((m) => m.worstExcess > 1e-6 * (1 + resources.find((r) => r.name === m.resource)!.limits[m.limit]!.burst))
    .map((m) => {
      const limit = resources.find((r) => r.name === m.resource)!.limits[m.limit]!;
      return {
        check: "rate",
        message: `${m.resource} limit ${m.limit + 1} (${limit.dimension} ${limit.amount} per ${limit.periodMs} ms, burst ${limit.burst}): ${m.worstExcess.toFixed(3)} units over its bound in a window ending at ${m.at}`,
      };
    });
}

/**
 * No grant falls inside a pause: after (not at: a grant of the same
 * millisecond may have come first) the moment a server paused a resource
 * and before the pause's end. A pause binds every grant until the next
 * change of leader; a new leader honours the pauses of its snapshot, but one
 * that its predecessor took after its last write it cannot know.
 */
export function checkPauses(events: RefereeEvent[]): Violation[] {
  const leads = of(events, "lead")
    .map((e) => e.at)
    .sort((a, b) => a - b);
  const grants = of(events, "grant");
  const out: Violation[] = [];
  for (const p of of(events, "server-pause")) {
    const nextLead = leads.find((t) => t > p.at) ?? Infinity;
    const end = Math.min(p.until, nextLead);
    const inside = grants.find((g) => g.resource === p.resource && g.at > p.at && g.at < end);
    if (inside !== undefined) {
      out.push({
        check: "pause",
        message: `${p.resource}: lease ${inside.lease} granted at ${inside.at}, inside the pause ${p.node} began at ${p.at} until ${p.until}`,
      });
    }
  }
  return out;
}

/** When each granted lease stopped holding its slot: the earliest end any party recorded. */
export function leaseEnds(events: RefereeEvent[]): Map<string, number> {
  const ends = new Map<string, number>();
  const end = (lease: string, at: number) => ends.set(lease, Math.min(at, ends.get(lease) ?? Infinity));
  const serverReleased = new Set(of(events, "server-release").filter((s) => s.outcome === "released").map((s) => s.lease));
  for (const s of of(events, "server-release")) if (s.outcome === "released") end(s.lease, s.at);
  for (const e of of(events, "expired")) end(e.lease, e.at);
  // A release no server applied (the lease was unknown to it): the call ended when the client sent it.
  for (const r of of(events, "release")) if (!serverReleased.has(r.lease)) end(r.lease, r.at);
  // A killed worker's calls end with it.
  const killedAt = new Map(of(events, "worker").filter((w) => w.event === "killed").map((w) => [w.worker, w.at]));
  for (const g of of(events, "grant")) {
    const k = killedAt.get(g.worker);
    if (k !== undefined && k >= g.at) end(g.lease, k);
  }
  return ends;
}

/** The most leases held at once on each capped resource, and when (see checkConcurrency for how a lease is counted). */
export function peakConcurrency(events: RefereeEvent[], resources: RefereeResource[]): { resource: string; peak: number; at: number }[] {
  const ends = leaseEnds(events);
  return resources
    .filter((r) => r.concurrency > 0)
    .map((r) => {
      const points: { t: number; d: number }[] = [];
      for (const g of of(events, "grant")) {
        if (!countsAt(r.name, g.resource, resources)) continue;
        points.push({ t: g.at, d: 1 }, { t: ends.get(g.lease) ?? Infinity, d: -1 });
      }
      // A slot freed at t may be granted again at t.
      points.sort((a, b) => a.t - b.t || a.d - b.d);
      let held = 0;
      const peak = { resource: r.name, peak: 0, at: NaN };
      for (const p of points) {
        held += p.d;
        if (held > peak.peak) Object.assign(peak, { peak: held, at: p.t });
      }
      return peak;
    });
}

/**
 * Leases held at once never exceed a resource's concurrency, across every
 * leader: each from its server grant time until its release or expiry at
 * whichever server recorded it first (or the client's release, or its
 * worker's death, when no server recorded one). A lease that never ended
 * counts until the end of the run.
 */
export function checkConcurrency(events: RefereeEvent[], resources: RefereeResource[]): Violation[] {
  return peakConcurrency(events, resources)
    .filter((p) => p.peak > resources.find((r) => r.name === p.resource)!.concurrency)
    .map((p) => ({
      check: "concurrency",
      message: `${p.resource}: ${p.peak} leases held at ${p.at}, over its concurrency of ${resources.find((r) => r.name === p.resource)!.concurrency}`,
    }));
}

/**
 * Every acquire ends, once: a grant of a lease granted to nobody else, a
 * DEADLINE_EXCEEDED no earlier than its timeout and at most the slack after
 * it, or a cancellation; any other failure is a violation unless its code is
 * in `allowedFailures`. An acquire still waiting when its worker stopped
 * must not have outlived its timeout and slack; one whose worker was killed
 * ends with the worker.
 */
export function checkAcquires(events: RefereeEvent[], options: RefereeOptions, allowedFailures: string[] = []): Violation[] {
  const out: Violation[] = [];
  const grants = new Map<string, GrantEvent[]>();
  for (const g of of(events, "grant")) grants.set(g.lease, [...(grants.get(g.lease) ?? []), g]);
  for (const [lease, gs] of grants) {
    if (gs.length > 1) out.push({ check: "acquire", message: `lease ${lease} was granted ${gs.length} times` });
  }
  const claimed = new Map<string, AcquireEvent>();
  for (const a of of(events, "acquire")) {
    const where = `${a.worker}'s acquire on ${a.resource} at ${a.start}`;
    if (a.end < a.start) out.push({ check: "acquire", message: `${where} ended before it started` });
    switch (a.outcome) {
      case "granted": {
        const g = a.lease === undefined ? undefined : grants.get(a.lease)?.[0];
        if (g === undefined) out.push({ check: "acquire", message: `${where} was granted a lease no grant records` });
        else if (g.at < a.start - 1 || g.at > a.end + 1) out.push({ check: "acquire", message: `${where} was granted at ${g.at}, outside [${a.start}, ${a.end}]` });
        if (a.lease !== undefined && claimed.has(a.lease)) out.push({ check: "acquire", message: `${where} got lease ${a.lease}, already another acquire's` });
        if (a.lease !== undefined) claimed.set(a.lease, a);
        break;
      }
      case "deadline": {
        if (a.timeoutMs === undefined) {
          out.push({ check: "acquire", message: `${where} ended DEADLINE_EXCEEDED without a timeout` });
          break;
        }
        const waited = a.end - a.start;
        if (waited < a.timeoutMs - 1) out.push({ check: "acquire", message: `${where} timed out after ${waited} ms, before its ${a.timeoutMs} ms` });
        if (waited > a.timeoutMs + options.deadlineSlackMs) {
          out.push({ check: "acquire", message: `${where} timed out after ${waited} ms, more than ${options.deadlineSlackMs} ms past its ${a.timeoutMs} ms` });
        }
        break;
      }
      case "cancelled":
        break;
      case "failed":
        if (!allowedFailures.includes(a.code ?? "")) out.push({ check: "acquire", message: `${where} failed ${a.code} after ${a.end - a.start} ms` });
        break;
    }
  }
  const killed = new Set(of(events, "worker").filter((w) => w.event === "killed").map((w) => w.worker));
  for (const p of of(events, "pending")) {
    if (killed.has(p.worker)) continue;
    const limit = (p.timeoutMs ?? Infinity) + options.deadlineSlackMs;
    if (p.at - p.start > limit) out.push({ check: "acquire", message: `${p.worker}'s acquire on ${p.resource} at ${p.start} still waited at ${p.at}: it hung` });
  }
  return out;
}

/**
 * A live worker's lease is never reported lost, unless a fault could have
 * kept it from heartbeating for a TTL (`excusedBy` says which faults can);
 * a killed worker's lease ends at the latest a TTL plus the failover
 * allowance after the kill.
 */
export function checkLeaseLife(
  events: RefereeEvent[],
  resources: RefereeResource[],
  options: RefereeOptions,
  excusedBy: (fault: FaultEvent) => boolean = () => false,
): Violation[] {
  const out: Violation[] = [];
  const ttl = new Map(resources.map((r) => [r.name, r.leaseTtlMs]));
  const grantOf = new Map(of(events, "grant").map((g) => [g.lease, g]));
  const workerEvents = of(events, "worker");
  const killedAt = new Map(workerEvents.filter((w) => w.event === "killed").map((w) => [w.worker, w.at]));
  const faults = of(events, "fault").filter(excusedBy);
  for (const l of of(events, "lost")) {
    const g = grantOf.get(l.lease);
    const leaseTtl = ttl.get(g?.resource ?? "") ?? 0;
    const k = killedAt.get(l.worker);
    if (k !== undefined && k <= l.at) continue;
    const excused = faults.some((f) => f.at <= l.at && f.until >= l.at - leaseTtl - options.failoverAllowanceMs);
    if (!excused) out.push({ check: "lease", message: `${l.worker}'s lease ${l.lease} on ${g?.resource} was reported lost at ${l.at} though its worker was alive` });
  }
  const ends = new Map<string, number>();
  for (const s of of(events, "server-release")) if (s.outcome === "released") ends.set(s.lease, Math.min(s.at, ends.get(s.lease) ?? Infinity));
  for (const e of of(events, "expired")) ends.set(e.lease, Math.min(e.at, ends.get(e.lease) ?? Infinity));
  const released = new Set(of(events, "release").map((r: ReleaseEvent) => r.lease));
  for (const g of of(events, "grant")) {
    const k = killedAt.get(g.worker);
    if (k === undefined || k < g.at || released.has(g.lease)) continue;
    const limit = k + (ttl.get(g.resource) ?? 0) + options.failoverAllowanceMs;
    const end = ends.get(g.lease);
    if (end === undefined || end > limit) {
      out.push({ check: "lease", message: `${g.worker} was killed at ${k} holding ${g.lease} on ${g.resource}; its slot was ${end === undefined ? "never" : `only at ${end}`} returned (limit ${limit})` });
    }
  }
  return out;
}

/**
 * Under saturation, between faults, the fleet uses at least `minShare` of
 * what a limit allows: in each window of `windowMs` that no fault (nor its
 * recovery, `recoveryMs` after it ends) touches, the grants on the resource
 * reach minShare * amount * windowMs / period of its first requests limit.
 */
export function checkUtilisation(
  events: RefereeEvent[],
  resource: RefereeResource,
  { minShare, ...quiet }: QuietWindows & { minShare: number },
): Violation[] {
  const limit = resource.limits.find((l) => l.dimension === "requests");
  if (limit === undefined) return [];
  const grants = of(events, "grant").filter((g) => g.resource === resource.name);
  const allowed = (limit.amount * quiet.windowMs) / limit.periodMs;
  return quietWindows(events, grants, quiet)
    .filter((w) => w.grants.length < minShare * allowed)
    .map((w) => ({
      check: "utilisation",
      message: `${resource.name}: ${w.grants.length} grants in [${w.start}, ${w.end}), under ${minShare * 100}% of the ${allowed} allowed`,
    }));
}

/**
 * Between faults, with every lane of a resource backlogged, each lane's
 * share of the grants stays within `tolerance` of its weight's share.
 */
export function checkLaneShares(
  events: RefereeEvent[],
  resource: string,
  weights: Record<string, number>,
  { tolerance, ...quiet }: QuietWindows & { tolerance: number },
): Violation[] {
  const grants = of(events, "grant").filter((g) => g.resource === resource);
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const out: Violation[] = [];
  for (const w of quietWindows(events, grants, quiet)) {
    if (w.grants.length === 0) continue;
    for (const [lane, weight] of Object.entries(weights)) {
      const share = w.grants.filter((g) => g.lane === lane).length / w.grants.length;
      if (Math.abs(share - weight / total) > tolerance) {
        out.push({ check: "lanes", message: `${resource}: lane ${lane} had ${(share * 100).toFixed(0)}% of the ${w.grants.length} grants in [${w.start}, ${w.end}), its weight gives ${((100 * weight) / total).toFixed(0)}%` });
      }
    }
  }
  return out;
}

/**
 * Between faults, on a lane kept full of waiters of a higher priority,
 * requests of a lower priority are (almost) never granted: inside a lane the
 * higher priority goes first. At most `maxLowShare` of the lane's grants in
 * each quiet window may have a priority below `high`.
 */
export function checkPriorities(
  events: RefereeEvent[],
  resource: string,
  lane: string,
  high: number,
  { maxLowShare, ...quiet }: QuietWindows & { maxLowShare: number },
): Violation[] {
  const grants = of(events, "grant").filter((g) => g.resource === resource && g.lane === lane);
  const out: Violation[] = [];
  for (const w of quietWindows(events, grants, quiet)) {
    const low = w.grants.filter((g) => g.priority < high).length;
    if (w.grants.length > 0 && low > maxLowShare * w.grants.length) {
      out.push({ check: "priorities", message: `${resource}: ${low} of the ${w.grants.length} grants of lane ${lane} in [${w.start}, ${w.end}) went to priorities below ${high} while higher ones waited` });
    }
  }
  return out;
}
