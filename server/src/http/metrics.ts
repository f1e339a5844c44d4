// GET /metrics: Prometheus text exposition through prom-client. Every
// ratequeue_* figure is read at scrape time from what the engine, the edge and
// the group keep anyway (Engine.metrics, EdgeOutcomes, sessions, group
// status); nothing on the acquire path exists for metrics alone. A scrape
// sees the namespaces its key may see: a root key (or no authentication)
// every namespace, any other key its own.
import type { IncomingMessage } from "node:http";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { namespaceOf, type Authenticator } from "../auth/index.js";
import { waitBucketsMs, type Engine, type LimitSpec, type ResourceMetrics } from "../core/index.js";
import type { EdgeOutcomes } from "../rpc/edge-outcomes.js";
import type { Page } from "./http-server.js";
import { authenticateRequest, HttpRefusal } from "./request-auth.js";

export interface MetricsSources {
  engine: Engine;
  outcomes: EdgeOutcomes;
  auth: Authenticator;
  /** Open Session streams. */
  sessions(): number;
  /** This node may grant (a lone node: always, until it stops). */
  leader(): boolean;
  /** The node reaches Redis; undefined without a group. */
  redisUp(): boolean | undefined;
  /** Off: one series per namespace instead of per resource (deployments with very many resources). */
  resourceLabels: boolean;
  /** A member of a Redis group: snapshots and Redis have figures too. */
  group: boolean;
}

export interface Metrics {
  /** GET /metrics. */
  page: Page;
  /** Records one snapshot's duration (groups). */
  snapshotTaken(durationMs: number): void;
}

type Labels = Record<string, string>;
type Sample = { labels: Labels; value: number; metricName?: string };

/** A metric prom-client formats, whose samples a function reads at scrape time. */
function readAtScrape(name: string, help: string, type: "counter" | "gauge" | "histogram", samples: () => Sample[]) {
  return {
    name,
    help,
    type,
    aggregator: "sum",
    collect: () => {},
    reset: () => {},
    get: async () => ({ name, help, type, aggregator: "sum", values: samples() }),
  };
}

/** A limit's label: what it counts and over which period, e.g. "requests/60s". */
function limitLabel(l: LimitSpec, i: number, all: LimitSpec[]): string {
  const period = l.periodMs % 1000 === 0 ? `${l.periodMs / 1000}s` : `${l.periodMs}ms`;
  const label = `${l.dimension}/${period}`;
  const same = all.filter((o) => o.dimension === l.dimension && o.periodMs === l.periodMs).length;
  return same > 1 ? `${label}#${i + 1}` : label;
}

/** Adds `value` to the sample with these labels (aggregating resources when their label is off). */
function add(out: Map<string, Sample>, labels: Labels, value: number, metricName?: string): void {
  const key = JSON.stringify([metricName, labels]);
  const sample = out.get(key);
  if (sample === undefined) out.set(key, { labels, value, metricName });
  else sample.value += value;
}

export function createMetrics(sources: MetricsSources): Metrics {
  const { engine, outcomes, auth } = sources;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges that prom-client names like counters (promtool flags them): left out.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);
  const snapshots = new Histogram({
    name: "ratequeue_snapshot_duration_seconds",
    help: "Time to take a snapshot of the engine's state and write it to Redis (group leaders).",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: sources.group ? [registry] : [],
  });

  /** The resources visible to the scrape being served, read once per scrape. */
  let visible: { m: ResourceMetrics; labels: Labels }[] = [];
  let visibleNamespaces: (ns: string) => boolean = () => true;
  const resourceLabels = (m: ResourceMetrics): Labels => {
    const namespace = namespaceOf(m.name);
    if (!sources.resourceLabels) return { namespace };
    return { namespace, resource: m.name.slice(namespace === "default" ? 0 : namespace.length + 1) };
  };
  const series = (fill: (out: Map<string, Sample>) => void) => () => {
    const out = new Map<string, Sample>();
    fill(out);
    return [...out.values()];
  };
  const metric = (name: string, help: string, type: "counter" | "gauge" | "histogram", fill: (out: Map<string, Sample>) => void) =>
    registry.registerMetric(readAtScrape(name, help, type, series(fill)) as never);

  metric("ratequeue_acquires_total", "Acquires by their outcome: granted, timeout, cancelled, rejected (queue full, a client's limits), invalid, not_found.", "counter", (out) => {
    for (const { m, labels } of visible) {
      for (const l of m.lanes) {
        add(out, { ...labels, lane: l.name, result: "granted" }, l.grants);
        add(out, { ...labels, lane: l.name, result: "timeout" }, l.timeouts);
        add(out, { ...labels, lane: l.name, result: "cancelled" }, l.cancellations);
      }
      add(out, { ...labels, lane: "", result: "rejected" }, m.rejected);
      add(out, { ...labels, lane: "", result: "invalid" }, m.invalid);
    }
    // Refused at the edge: no resource of the engine to name.
    for (const e of outcomes.entries()) {
      if (!visibleNamespaces(e.namespace)) continue;
      add(out, { namespace: e.namespace, ...(sources.resourceLabels && { resource: "" }), lane: "", result: e.result }, e.value);
    }
  });
  metric("ratequeue_load_granted_total", "Load granted (the estimates charged at grant).", "counter", (out) => {
    for (const { m, labels } of visible) for (const l of m.lanes) add(out, { ...labels, lane: l.name }, l.loadGranted);
  });
  metric("ratequeue_load_reconciled_total", "Load settled at release: charged when the actual load exceeded the estimate, refunded when it fell short.", "counter", (out) => {
    for (const { m, labels } of visible) {
      add(out, { ...labels, direction: "charged" }, m.loadCharged);
      add(out, { ...labels, direction: "refunded" }, m.loadRefunded);
    }
  });
  metric("ratequeue_wait_seconds", "Time from acquire to grant.", "histogram", (out) => {
    for (const { m, labels } of visible) {
      for (const l of m.lanes) {
        const lane = { ...labels, lane: l.name };
        let cumulative = 0;
        waitBucketsMs.forEach((bound, i) => {
          cumulative += l.waitBuckets[i]!;
          add(out, { ...lane, le: String(bound / 1000) }, cumulative, "ratequeue_wait_seconds_bucket");
        });
        cumulative += l.waitBuckets[waitBucketsMs.length]!;
        add(out, { ...lane, le: "+Inf" }, cumulative, "ratequeue_wait_seconds_bucket");
        add(out, lane, l.waitSumMs / 1000, "ratequeue_wait_seconds_sum");
        add(out, lane, cumulative, "ratequeue_wait_seconds_count");
      }
    }
  });
  metric("ratequeue_queue_depth", "Acquires waiting.", "gauge", (out) => {
    for (const { m, labels } of visible) for (const l of m.lanes) add(out, { ...labels, lane: l.name }, l.queueDepth);
  });
  metric("ratequeue_leases_in_flight", "Leases held.", "gauge", (out) => {
    for (const { m, labels } of visible) add(out, labels, m.leasesInFlight);
  });
  metric("ratequeue_lease_expirations_total", "Leases that expired unheartbeated (their worker died or was cut off).", "counter", (out) => {
    for (const { m, labels } of visible) add(out, labels, m.expirations);
  });
  metric("ratequeue_limit_utilisation_ratio", "What a limit allowed over its last period that was used, 0 to 1 (per namespace: the busiest resource's).", "gauge", (out) => {
    for (const { m, labels } of visible) {
      m.limits.forEach((l, i) => {
        // What the limit allowed: the learned amount when the provider taught a lower one.
        const ratio = Math.min(1, l.usedLastPeriod / (l.learnedAmount ?? l.limit.amount));
        const sample = { ...labels, limit: limitLabel(l.limit, i, m.limits.map((x) => x.limit)) };
        const key = JSON.stringify([undefined, sample]);
        const existing = out.get(key);
        if (existing === undefined) out.set(key, { labels: sample, value: ratio });
        else existing.value = Math.max(existing.value, ratio);
      });
    }
  });
  if (sources.resourceLabels) {
    metric("ratequeue_limit_available", "Units a limit would grant at once now.", "gauge", (out) => {
      for (const { m, labels } of visible) {
        m.limits.forEach((l, i) => add(out, { ...labels, limit: limitLabel(l.limit, i, m.limits.map((x) => x.limit)) }, l.available));
      }
    });
    metric("ratequeue_limit_amount", "A limit's amount per its period: the configured one, and the learned one while provider feedback holds it lower (source label).", "gauge", (out) => {
      for (const { m, labels } of visible) {
        m.limits.forEach((l, i) => {
          const limit = limitLabel(l.limit, i, m.limits.map((x) => x.limit));
          add(out, { ...labels, limit, source: "configured" }, l.limit.amount);
          if (l.learnedAmount !== undefined) add(out, { ...labels, limit, source: "learned" }, l.learnedAmount);
        });
      }
    });
  }
  metric("ratequeue_provider_throttles_total", "Calls the provider refused (429, or 503/529 overloaded), reported in releases and reports.", "counter", (out) => {
    for (const { m, labels } of visible) add(out, labels, m.throttles);
  });
  metric("ratequeue_resource_paused", "1 while a resource grants nothing because its provider refused a call (per namespace: resources paused).", "gauge", (out) => {
    for (const { m, labels } of visible) add(out, labels, m.pausedUntil === undefined ? 0 : 1);
  });
  metric("ratequeue_sessions", "Open Session streams.", "gauge", (out) => add(out, {}, sources.sessions()));
  metric("ratequeue_leader", "1 while this node may grant (a lone node, or a group's leader), else 0.", "gauge", (out) => add(out, {}, sources.leader() ? 1 : 0));
  metric("ratequeue_auth_failures_total", "Calls refused for a missing, malformed or unknown API key.", "counter", (out) => add(out, {}, auth.failures));
  metric("ratequeue_redis_up", "1 while this node reaches Redis (groups), else 0.", "gauge", (out) => {
    const up = sources.redisUp();
    if (up !== undefined) add(out, {}, up ? 1 : 0);
  });

  // One scrape at a time: each reads the engine for its own key's namespaces.
  let scraping: Promise<unknown> = Promise.resolve();
  const page: Page = (req) => {
    const next = scraping.then(() => scrape(req));
    scraping = next.catch(() => {});
    return next;
  };
  const scrape = async (req: IncomingMessage) => {
    let principal;
    try {
      principal = await authenticateRequest(auth, req);
    } catch (err) {
      if (!(err instanceof HttpRefusal)) throw err;
      return { status: err.status, type: "text/plain", body: `${err.message}\n` };
    }
    const all = !auth.enabled || principal.role === "root";
    visibleNamespaces = all ? () => true : (ns) => ns === principal.namespace;
    visible = engine
      .metrics()
      .filter((m) => all || principal.scope.owns(m.name))
      .map((m) => ({ m, labels: resourceLabels(m) }));
    try {
      return { type: registry.contentType, body: await registry.metrics() };
    } finally {
      visible = [];
    }
  };

  return { page, snapshotTaken: (ms) => snapshots.observe(ms / 1000) };
}
