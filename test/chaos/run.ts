// A chaos run: a fleet of workers in every client language saturates a
// Redis group while a seeded schedule of faults hits the nodes, Redis and
// the links between them; everything is recorded and the referee judges the
// whole history. Any run is replayed by its seed.
import { createAdminClient } from "@ratequeue/client";
import { Adapter, type Language } from "../conformance/adapter.js";
import { startCluster, type ChaosNode, type Cluster } from "./cluster.js";
import type { FaultEvent, HistoryEvent } from "./history.js";
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
  peakConcurrency,
  rateMargins,
  type RefereeEvent,
  type RefereeResource,
  type Violation,
} from "./referee.js";

// 2 s: under a loaded test machine a leader's renewal can be late; a longer lease keeps it from lapsing by itself.
const leaderTtlMs = 2000;
const leaseTtlMs = 3000;
const acquireTimeoutMs = 5000;

/** The resources under test, as configured and as the referee sees them. */
export const chaosConfig = {
  resources: {
    rps: { limits: [{ dimension: "requests", amount: 40, period: "1s", burst: 8 }], lease_ttl: "3s" },
    tokens: { limits: [{ dimension: "load", amount: 3000, period: "1s", burst: 600 }], lease_ttl: "3s" },
    capped: { concurrency: 3, lease_ttl: "3s" },
    laned: { limits: [{ dimension: "requests", amount: 20, period: "1s", burst: 4 }], lanes: { user: 3, batch: 1 }, lease_ttl: "3s" },
    throttled: { limits: [{ dimension: "requests", amount: 30, period: "1s", burst: 6 }], lease_ttl: "3s" },
    // A tree: tenants' keyed children (made on first use, forgotten 2 s after they idle) and a declared one, under one budget.
    quota: {
      limits: [{ dimension: "requests", amount: 30, period: "1s", burst: 6 }],
      concurrency: 6,
      per_key: { limits: [{ dimension: "requests", amount: 8, period: "1s", burst: 2 }], concurrency: 2 },
      per_key_idle: "2s",
      lease_ttl: "3s",
    },
    "quota/vip": { parent: "quota", share: 2, limits: [{ dimension: "requests", amount: 20, period: "1s", burst: 4 }], lease_ttl: "3s" },
  },
};

/** The keys of the tree's tenants (keyed children quota/t0 ...). */
const tenantKeys = 40;

export const chaosResources: RefereeResource[] = [
  { name: "rps", limits: [{ dimension: "requests", amount: 40, periodMs: 1000, burst: 8 }], concurrency: 0, leaseTtlMs },
  { name: "tokens", limits: [{ dimension: "load", amount: 3000, periodMs: 1000, burst: 600 }], concurrency: 0, leaseTtlMs },
  { name: "capped", limits: [], concurrency: 3, leaseTtlMs },
  { name: "laned", limits: [{ dimension: "requests", amount: 20, periodMs: 1000, burst: 4 }], concurrency: 0, leaseTtlMs },
  { name: "throttled", limits: [{ dimension: "requests", amount: 30, periodMs: 1000, burst: 6 }], concurrency: 0, leaseTtlMs },
  { name: "quota", limits: [{ dimension: "requests", amount: 30, periodMs: 1000, burst: 6 }], concurrency: 6, leaseTtlMs },
  { name: "quota/vip", parent: "quota", limits: [{ dimension: "requests", amount: 20, periodMs: 1000, burst: 4 }], concurrency: 0, leaseTtlMs },
  ...Array.from({ length: tenantKeys }, (_, i) => ({
    name: `quota/t${i}`,
    parent: "quota",
    limits: [{ dimension: "requests" as const, amount: 8, periodMs: 1000, burst: 2 }],
    concurrency: 2,
    leaseTtlMs,
    keyed: true,
  })),
];

/** What one worker runs at once: each loop acquires, holds, releases, again. */
interface Loop {
  resource: string;
  /** Each acquire names one of these keys, drawn at random. */
  keys?: string[];
  load?: number;
  lane?: string;
  priority?: number;
  holdMs: [number, number];
  /** The actual load reported at release, when it differs from the estimate. */
  actualLoad?: [number, number];
  /** The provider refuses this share of calls: the release reports it, with a retry-after in this range. */
  throttle?: { share: number; retryAfterMs: [number, number] };
}

const loops: Loop[] = [
  { resource: "rps", holdMs: [0, 20] },
  { resource: "rps", holdMs: [0, 20] },
  { resource: "tokens", load: 100, holdMs: [0, 20], actualLoad: [20, 250] },
  { resource: "tokens", load: 100, holdMs: [0, 20], actualLoad: [20, 250] },
  { resource: "capped", holdMs: [200, 1200] },
  // Lane user always has a high-priority waiter: its low-priority requests wait (and time out).
  { resource: "laned", lane: "user", priority: 100, holdMs: [0, 10] },
  { resource: "laned", lane: "user", priority: 1, holdMs: [0, 10] },
  { resource: "laned", lane: "batch", priority: 10, holdMs: [0, 10] },
  // A provider that says no now and then: every refusal pauses the resource for the whole fleet.
  { resource: "throttled", holdMs: [0, 20], throttle: { share: 0.03, retryAfterMs: [200, 800] } },
  // Tenants: a few busy keys and many that come and go, beside a declared child with twice the share.
  { resource: "quota", keys: ["t0", "t1"], holdMs: [0, 200] },
  { resource: "quota", keys: Array.from({ length: tenantKeys }, (_, i) => `t${i}`), holdMs: [0, 100] },
  { resource: "quota/vip", holdMs: [0, 100] },
];

/** The faults a schedule draws from, with their weights. */
const faultKinds = {
  "kill-leader": 3,
  "term-leader": 2,
  "kill-standby": 1,
  "redis-pause": 1,
  "redis-restart": 1,
  "cut-leader-redis": 2,
  "cut-workers": 1,
  "reset-workers": 2,
  "kill-worker": 2,
} as const;
type FaultKind = keyof typeof faultKinds;

/** Faults after which a live worker's lease may be lost: none of the ones above lasts long enough. */
const excusedBy = (_fault: FaultEvent) => false;

export interface ChaosOptions {
  seed: number;
  durationMs: number;
  /** Workers of each language. */
  workers?: Partial<Record<Language, number>>;
  /** Progress lines (faults as they are injected). */
  log?: (line: string) => void;
}

export interface ChaosSummary {
  seed: number;
  durationMs: number;
  faults: Record<string, number>;
  grants: Record<string, number>;
  /** Per limit: the worst window's units over its bound (negative: under it). */
  worstWindow: { resource: string; limit: number; excess: number }[];
  concurrency: { resource: string; peak: number; cap: number }[];
  acquires: Record<string, number>;
  /** From each leader-ending fault to the next "leading" line, ms. */
  failoverMs: { p50: number; max: number; count: number };
  leaderRssMb: { start: number | undefined; end: number | undefined };
  /** Pauses the provider's refusals caused (server log lines), and grants the referee found inside one. */
  providerPauses: { count: number; grantsInside: number };
}

export interface ChaosResult {
  summary: ChaosSummary;
  violations: Violation[];
  events: RefereeEvent[];
}

/** mulberry32: a small seeded generator, so a seed replays a schedule. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Worker {
  name: string;
  language: Language;
  adapter: Adapter;
  dead: boolean;
  loops: Promise<void>[];
  lost: Set<string>;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const random = rng(options.seed);
  const between = (lo: number, hi: number) => lo + random() * (hi - lo);
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  const log = options.log ?? (() => {});
  const events: HistoryEvent[] = [];
  const cluster = await startCluster({ nodes: 3, config: chaosConfig, leaderTtl: `${leaderTtlMs}ms` });
  const workers: Worker[] = [];
  const startedAt = Date.now();
  const stopAt = startedAt + options.durationMs;
  let workerSerial = 0;

  try {
    await waitFor(() => cluster.leader() !== undefined, 15_000, "no node led");

    const startWorker = async (language: Language): Promise<void> => {
      const adapter = await Adapter.start(language);
      const worker: Worker = { name: `${language}-${++workerSerial}`, language, adapter, dead: false, loops: [], lost: new Set() };
      // Go's Dial connects at once and fails when no node serves at that moment (a takeover): try again.
      for (let tries = 0; ; tries++) {
        const opened = await adapter.call("open", { client: "c", url: cluster.url });
        if (opened.ok) break;
        if (tries === 20) throw new Error(`${language} worker could not open a client: ${opened.code}: ${opened.message}`);
        await sleep(500);
      }
      events.push({ kind: "worker", worker: worker.name, event: "start", at: Date.now() });
      workers.push(worker);
      // Each loop draws from its own generator, so a worker's timing does not shift the fault schedule.
      worker.loops = loops.map((loop, i) => runLoop(worker, loop, rng(options.seed * 1000 + workerSerial * 10 + i), stopAt, events));
      worker.loops.push(watchLost(worker, stopAt, events));
    };
    const counts = { ts: 2, python: 2, go: 2, ...options.workers };
    for (const [language, n] of Object.entries(counts) as [Language, number][]) for (let i = 0; i < n; i++) await startWorker(language);

    // Warm up, then the schedule: a fault, a pause, another fault... and a quiet end.
    await sleep(6000);
    const warmedUpAt = Date.now();
    const rssStart = cluster.rss(cluster.leader() ?? cluster.nodes[0]!);
    while (Date.now() < stopAt - 8000) {
      const kind = weighted(random, faultKinds);
      const fault = await inject(kind, cluster, workers, events, between, pick, startWorker);
      if (fault !== undefined) {
        events.push(fault);
        log(`chaos seed ${options.seed}: ${fault.fault} ${fault.target} for ${fault.until - fault.at} ms`);
      }
      await sleep(between(3000, 7000));
    }

    // The end: every loop stops, workers close their clients, the leader drains.
    await Promise.all(workers.flatMap((w) => w.loops));
    for (const w of workers) if (!w.dead) await w.adapter.stop();
    const leaks = await drained(cluster);
    const rssEnd = cluster.rss(cluster.leader() ?? cluster.nodes[0]!);

    const history: RefereeEvent[] = [...events, ...serverEvents(cluster)];
    const summary = summarize(options, history, rssStart, rssEnd);
    // Judged from the end of the warm-up, when every worker runs.
    const quiet = { from: warmedUpAt, to: stopAt - 1000, windowMs: 2000, recoveryMs: leaderTtlMs + leaseTtlMs + 2000 };
    const violations = [
      ...checkRateLimits(history, chaosResources),
      ...checkConcurrency(history, chaosResources),
      ...checkPauses(history),
      ...checkAcquires(history, defaultRefereeOptions),
      ...checkLeaseLife(history, chaosResources, defaultRefereeOptions, excusedBy),
      ...checkUtilisation(history, chaosResources[0]!, { ...quiet, minShare: 0.9 }),
      ...checkLaneShares(history, "laned", { user: 3, batch: 1 }, { ...quiet, tolerance: 0.15 }),
      ...checkPriorities(history, "laned", "user", 100, { ...quiet, maxLowShare: 0.05 }),
      ...leaks,
      ...memory(summary.leaderRssMb),
    ];
    return { summary, violations, events: history };
  } finally {
    await Promise.all(workers.map((w) => (w.dead ? undefined : w.adapter.kill())));
    await cluster.close();
  }
}

/** One loop of a worker: acquire, hold, release (with the actual load), until `stopAt`. */
async function runLoop(worker: Worker, loop: Loop, random: () => number, stopAt: number, events: HistoryEvent[]): Promise<void> {
  const between = ([lo, hi]: [number, number]) => lo + random() * (hi - lo);
  while (!worker.dead && Date.now() < stopAt) {
    const start = Date.now();
    const key = loop.keys === undefined ? undefined : loop.keys[Math.floor(random() * loop.keys.length)];
    // The lease is on the key's child: that is the resource every level is judged on.
    const resource = key === undefined ? loop.resource : `${loop.resource}/${key}`;
    const answer = await worker.adapter.call("acquire", {
      client: "c",
      resource: loop.resource,
      key,
      load: loop.load,
      lane: loop.lane,
      priority: loop.priority,
      timeoutMs: acquireTimeoutMs,
    });
    const end = Date.now();
    if (worker.dead) return;
    if (!answer.ok) {
      const outcome = answer.code === "DEADLINE_EXCEEDED" ? "deadline" : answer.code === "CANCELLED" ? "cancelled" : "failed";
      events.push({ kind: "acquire", worker: worker.name, resource, start, end, outcome, code: answer.code, timeoutMs: acquireTimeoutMs });
      await sleep(50);
      continue;
    }
    const lease = answer.lease as string;
    events.push(
      {
        kind: "grant",
        worker: worker.name,
        resource,
        lease,
        at: answer.grantTimeMs as number,
        load: answer.load as number,
        priority: loop.priority ?? 10,
        lane: loop.lane ?? "",
      },
      { kind: "acquire", worker: worker.name, resource, start, end, outcome: "granted", timeoutMs: acquireTimeoutMs, lease },
    );
    await sleep(between(loop.holdMs));
    if (worker.dead) return;
    const actualLoad = loop.actualLoad === undefined ? undefined : Math.round(between(loop.actualLoad));
    const throttle = loop.throttle !== undefined && random() < loop.throttle.share ? { retryAfterMs: Math.round(between(loop.throttle.retryAfterMs)) } : undefined;
    const at = Date.now();
    const released = await worker.adapter.call("release", { lease, actualLoad, ...(throttle && { throttle }) });
    if (worker.dead) return;
    const outcome = released.ok ? ((released.outcome as string | null) ?? null) : null;
    events.push({ kind: "release", worker: worker.name, lease, at, actualLoad, outcome: outcome as "released" | null });
  }
}

/** Records each lease the worker's client reports lost, when it first does. */
async function watchLost(worker: Worker, stopAt: number, events: HistoryEvent[]): Promise<void> {
  while (!worker.dead && Date.now() < stopAt) {
    const answer = await worker.adapter.call("leases", { client: "c" });
    if (answer.ok) {
      for (const lease of answer.lost as string[]) {
        if (worker.lost.has(lease)) continue;
        worker.lost.add(lease);
        events.push({ kind: "lost", worker: worker.name, lease, at: Date.now() });
      }
    }
    await sleep(250);
  }
}

async function inject(
  kind: FaultKind,
  cluster: Cluster,
  workers: Worker[],
  events: HistoryEvent[],
  between: (lo: number, hi: number) => number,
  pick: <T>(xs: T[]) => T,
  startWorker: (language: Language) => Promise<void>,
): Promise<FaultEvent | undefined> {
  const running = cluster.nodes.filter((n) => n.process !== undefined && n.process.process.exitCode === null && n.process.process.signalCode === null);
  const leader = cluster.leader();
  const at = Date.now();
  const fault = (target: string, until = Date.now()): FaultEvent => ({ kind: "fault", fault: kind, target, at, until });
  const bounce = async (node: ChaosNode, signal: NodeJS.Signals) => {
    await node.process!.stop(signal);
    await sleep(between(500, 2500));
    await cluster.start(node);
    return fault(node.name);
  };
  switch (kind) {
    case "kill-leader":
      return leader && bounce(leader, "SIGKILL");
    case "term-leader":
      return leader && bounce(leader, "SIGTERM");
    case "kill-standby": {
      const standbys = running.filter((n) => n !== leader);
      return standbys.length > 0 ? bounce(pick(standbys), "SIGKILL") : undefined;
    }
    case "redis-pause": {
      const ms = Math.round(between(300, 1000));
      await cluster.redis.client.call("CLIENT", "PAUSE", String(ms), "ALL");
      await sleep(ms);
      return fault("redis", at + ms);
    }
    case "redis-restart":
      await cluster.redis.stop(false);
      await sleep(between(300, 1000));
      await cluster.redis.start();
      return fault("redis");
    case "cut-leader-redis": {
      if (leader === undefined) return undefined;
      leader.redisLink.cut();
      await sleep(between(300, 1500));
      leader.redisLink.heal();
      return fault(leader.name);
    }
    case "cut-workers": {
      const node = leader ?? pick(running);
      node.workerLink.cut();
      await sleep(between(300, 1000));
      node.workerLink.heal();
      return fault(node.name);
    }
    case "reset-workers": {
      const node = leader ?? pick(running);
      node.workerLink.reset();
      return fault(node.name);
    }
    case "kill-worker": {
      const alive = workers.filter((w) => !w.dead);
      if (alive.length === 0) return undefined;
      const worker = pick(alive);
      worker.dead = true;
      await worker.adapter.kill();
      const killed = fault(worker.name);
      workers.splice(workers.indexOf(worker), 1);
      events.push({ kind: "worker", worker: worker.name, event: "killed", at: killed.at });
      await sleep(500);
      await startWorker(worker.language);
      return killed;
    }
  }
}

function weighted<K extends string>(random: () => number, weights: Record<K, number>): K {
  const entries = Object.entries(weights) as [K, number][];
  let r = random() * entries.reduce((n, [, w]) => n + w, 0);
  for (const [k, w] of entries) {
    r -= w;
    if (r < 0) return k;
  }
  return entries[entries.length - 1]![0];
}

/** The servers' own records: expiries, releases (debug) and leadership, from every process of every node. */
function serverEvents(cluster: Cluster): RefereeEvent[] {
  const out: RefereeEvent[] = [];
  for (const node of cluster.nodes) {
    for (const e of node.logs) {
      if (e.msg === "lease expired") out.push({ kind: "expired", node: node.name, lease: e.lease as string, resource: e.resource as string, at: e.at as number });
      else if (e.msg === "lease released")
        out.push({ kind: "server-release", node: node.name, lease: e.lease as string, resource: e.resource as string, at: e.at as number, outcome: "released", reconciled: e.reconciled as number, issued: e.issued as string | undefined });
      else if (e.msg === "provider throttled: resource paused")
        out.push({ kind: "server-pause", node: node.name, resource: e.resource as string, at: e.at as number, until: (e.at as number) + (e.pause_ms as number) });
      else if (e.msg === "leading" || e.msg === "granting again: the leadership lease held") out.push({ kind: "lead", node: node.name, at: Date.parse(e.time as string) });
    }
  }
  return out;
}

/** The leader ends the run near the memory it had after the warm-up (a new leader: less). */
function memory({ start, end }: { start: number | undefined; end: number | undefined }): Violation[] {
  if (start === undefined || end === undefined || end <= start * 1.25 + 32) return [];
  return [{ check: "memory", message: `the leader's memory grew from ${start} MB after the warm-up to ${end} MB at the end` }];
}

/** Once the fleet is gone: nothing waits and, after a lease TTL, nothing is held, on the leader. */
async function drained(cluster: Cluster): Promise<Violation[]> {
  const deadline = Date.now() + leaseTtlMs * 2 + 10_000;
  let last = "";
  for (;;) {
    const leader = cluster.leader();
    if (leader !== undefined) {
      const admin = createAdminClient({ url: `127.0.0.1:${leader.port}` });
      try {
        // A parent's figures count its children's; keyed children are forgotten once idle, and must be.
        const stats = await Promise.all(chaosResources.filter((r) => r.keyed !== true).map((r) => admin.getResourceStats(r.name)));
        const waiting = (s: (typeof stats)[number]) => s.lanes.reduce((n, l) => n + l.queueDepth, 0) + s.children.reduce((n, c) => n + c.queueDepth, 0);
        const keyed = (s: (typeof stats)[number]) => s.children.filter((c) => c.keyed).length;
        const left = stats.filter((s) => s.leasesInFlight > 0 || waiting(s) > 0 || keyed(s) > 0);
        if (left.length === 0) return [];
        last = left.map((s) => `${s.name}: ${s.leasesInFlight} leases, ${waiting(s)} waiting, ${keyed(s)} keyed children`).join("; ");
      } catch (err) {
        last = String(err);
      } finally {
        admin.close();
      }
    }
    if (Date.now() > deadline) return [{ check: "leaks", message: `the fleet stopped, yet the leader still holds: ${last || "no leader"}` }];
    await sleep(250);
  }
}

/**
 * From each fault that ended a leadership to the next "leading" line, ms,
 * sorted. A kill or SIGTERM of the leader always ends it; a cut of the
 * leader's link to Redis only when a node took the lead before the next
 * fault (a cut shorter than the leader TTL leaves the leader in place).
 */
export function failoverPauses(faults: FaultEvent[], leads: number[]): number[] {
  const byTime = [...faults].sort((a, b) => a.at - b.at);
  return byTime
    .flatMap((f, i) => {
      const next = leads.find((t) => t > f.at);
      if (next === undefined) return [];
      if (f.fault === "kill-leader" || f.fault === "term-leader") return [next - f.at];
      const nextFault = byTime[i + 1]?.at ?? Infinity;
      return f.fault === "cut-leader-redis" && next < nextFault ? [next - f.at] : [];
    })
    .sort((a, b) => a - b);
}

function summarize(options: ChaosOptions, history: RefereeEvent[], rssStart: number | undefined, rssEnd: number | undefined): ChaosSummary {
  const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});
  const faults = history.filter((e): e is FaultEvent => e.kind === "fault");
  const leads = history.filter((e) => e.kind === "lead").map((e) => e.at).sort((a, b) => a - b);
  const pauses = failoverPauses(faults, leads);
  const mb = (bytes: number | undefined) => (bytes === undefined ? undefined : Math.round(bytes / 2 ** 20));
  return {
    seed: options.seed,
    durationMs: options.durationMs,
    faults: count(faults.map((f) => f.fault)),
    grants: count(history.filter((e) => e.kind === "grant").map((e) => (e as { resource: string }).resource)),
    worstWindow: rateMargins(history, chaosResources).map((m) => ({ resource: m.resource, limit: m.limit, excess: Math.round(m.worstExcess * 1000) / 1000 })),
    concurrency: peakConcurrency(history, chaosResources).map((p) => ({ resource: p.resource, peak: p.peak, cap: chaosResources.find((r) => r.name === p.resource)!.concurrency })),
    acquires: count(history.filter((e) => e.kind === "acquire").map((e) => (e as { outcome: string; code?: string }).outcome)),
    failoverMs: { p50: pauses[Math.floor(pauses.length / 2)] ?? NaN, max: pauses[pauses.length - 1] ?? NaN, count: pauses.length },
    leaderRssMb: { start: mb(rssStart), end: mb(rssEnd) },
    providerPauses: { count: history.filter((e) => e.kind === "server-pause").length, grantsInside: checkPauses(history).length },
  };
}

async function waitFor(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await sleep(50);
  }
}
