// The server's lifecycle: an engine, the gRPC services around it, health,
// and graceful shutdown. main.ts parses flags and calls startServer.
import { Server, status } from "@grpc/grpc-js";
import { AdminService, RateQueueService } from "@ratequeue/proto";
import { HealthImplementation } from "grpc-health-check";
import { defaultSessionLimits, serverCredentials, setupAuth, type AuthOptions, type SessionLimits, type TlsFiles } from "./auth/index.js";
import { Engine, systemClock, type Clock, type ResourceSpec } from "./core/index.js";
import { RpcError } from "./errors.js";
import { connectAdminRoutes } from "./http/connect-admin.js";
import { configActions } from "./http/dashboard/config-actions.js";
import { dashboardPage } from "./http/dashboard/page.js";
import { startHttpServer } from "./http/http-server.js";
import { createMetrics } from "./http/metrics.js";
import { createStatusPage } from "./http/status.js";
import { EdgeOutcomes } from "./rpc/edge-outcomes.js";
import { createLogger, type Logger } from "./log.js";
import { createAdminService } from "./rpc/admin-service.js";
import { LeaseRouter } from "./rpc/lease-router.js";
import { createRateQueueService } from "./rpc/rate-queue-service.js";
import { addReflection } from "./rpc/reflection.js";
import { addService } from "./rpc/service-handlers.js";
import { memoryResourceStore, OpenGate, RedisGroup, type GroupOptions, type ResourceStore } from "./store/index.js";
import { limits as validLimits } from "./validate/fields.js";

export interface ServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Resources to declare at start. */
  resources?: ResourceSpec[];
  clock?: Clock;
  log?: Logger;
  store?: ResourceStore;
  /** API keys and namespaces; see auth/setup.ts for when authentication is on. */
  auth?: AuthOptions;
  /** Serve TLS (and optionally require client certificates). */
  tls?: TlsFiles;
  /** What one client may hold; defaults in auth/quotas.ts. */
  limits?: Partial<SessionLimits>;
  /** Join a Redis group: durable config, leader election, snapshots. Without it the node runs alone. */
  group?: GroupOptions;
  /** The HTTP port (http/http-server.ts): 0 picks a free port; undefined serves none. */
  httpPort?: number;
  /** Metrics per resource (default) or, false, per namespace only. */
  metricsResourceLabels?: boolean;
}

export interface RunningServer {
  /** The bound port. */
  port: number;
  /** The bound HTTP port, when one is served. */
  httpPort: number | undefined;
  engine: Engine;
  /**
   * Stops taking work, answers waiters with UNAVAILABLE, lets in-flight
   * calls finish for up to graceMs, then closes every connection.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/** The health service name clients may check besides the server-wide "". */
export const healthServiceName = "ratequeue.v1.RateQueueService";
/** Health service name SERVING on a standby that follows a leader and could take over (readiness). */
export const standbyHealthServiceName = "ratequeue.v1.Standby";
/** Health service name SERVING while the node reaches Redis (groups only). */
export const redisHealthServiceName = "ratequeue.v1.Redis";

// The resources to declare are taken apart from the other options: the
// engine copies them, and the closures below, which keep `options` for the
// server's life, do not keep them too (only a group's seed does).
export async function startServer({ resources = [], ...options }: ServerOptions): Promise<RunningServer> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? createLogger();
  const router = new LeaseRouter();
  let health: HealthImplementation | undefined;
  /** Readiness for /readyz: a lone node until it shuts down; in a group, the leader or a ready standby. */
  let ready = options.group === undefined;
  let serving = options.group === undefined;
  let redisUp: boolean | undefined = options.group === undefined ? undefined : false;
  let snapshotTaken: ((ms: number) => void) | undefined;
  const group =
    options.group &&
    new RedisGroup(options.group, {
      clock,
      log,
      // With Redis, the config file only seeds what Redis does not hold.
      seed: resources,
      namespaces: options.auth?.namespaces,
      onStatus: (s) => {
        const healthStatus = s.serving ? "SERVING" : "NOT_SERVING";
        health?.setStatus("", healthStatus);
        health?.setStatus(healthServiceName, healthStatus);
        health?.setStatus(standbyHealthServiceName, s.standby ? "SERVING" : "NOT_SERVING");
        health?.setStatus(redisHealthServiceName, s.redis ? "SERVING" : "NOT_SERVING");
        ready = s.serving || s.standby;
        serving = s.serving;
        redisUp = s.redis;
      },
      onSnapshot: (ms) => snapshotTaken?.(ms),
    });
  const engine = new Engine({
    clock: group?.engineClock ?? clock,
    // A leader grants nothing past its lease deadline, whatever triggers the grant.
    grantDeadline: group && (() => group.gate.deadline()),
    // At debug level, every release with what it reconciled: what a chaos run's referee checks.
    onLeaseReleased:
      log.level === "debug"
        ? ({ lease, at, reconciled, issued }) => log.debug("lease released", { resource: lease.resource, lease: lease.id, owner: lease.owner, at, reconciled, issued })
        : undefined,
    onLeaseExpired: (lease) => {
      log.info("lease expired", { resource: lease.resource, lease: lease.id, owner: lease.owner, at: lease.expiresAt });
      router.expired(lease.id, lease.resource);
    },
    onFeedback: (e) => {
      if (e.kind === "paused") {
        log.warn("provider throttled: resource paused", {
          resource: e.resource,
          at: e.at,
          until: new Date(e.until).toISOString(),
          pause_ms: e.pauseMs,
          from: e.retryAfter ? "retry_after" : "cooldown",
        });
      } else {
        log.info(e.learned === undefined ? "provider limit at or above the configured one: learned limit dropped" : "provider limit learned", {
          resource: e.resource,
          limit: e.limit + 1,
          configured: e.configured,
          learned: e.learned,
          period_ms: e.periodMs,
        });
      }
      // A new leader must honour what the provider said: do not wait for the next snapshot.
      group?.snapshotSoon();
    },
  });
  if (group === undefined) for (const spec of resources) engine.putResource(spec);

  const gate = group?.gate ?? new OpenGate();
  // In a group, keys live in Redis; the config's namespaces are added by each new leader.
  const authOptions: AuthOptions = group ? { ...options.auth, store: group.keyStore, namespaces: [], group: true } : (options.auth ?? {});
  const auth = await setupAuth(options.host, authOptions, log);
  const limits: SessionLimits = { ...defaultSessionLimits, ...options.limits };
  const server = new Server({
    // Workers keep one stream open for hours; keepalives find dead peers.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
    "grpc.max_receive_message_length": validLimits.maxMessageBytes,
    "grpc.max_send_message_length": validLimits.maxMessageBytes,
  });
  const outcomes = new EdgeOutcomes();
  const rateQueue = createRateQueueService({ engine, clock, log, gate, router, auth, limits, outcomes });
  addService(server, RateQueueService, rateQueue.implementation);
  const admin = createAdminService({ engine, log, gate, auth, store: group ?? options.store ?? memoryResourceStore });
  addService(server, AdminService, admin);
  health = new HealthImplementation(
    group === undefined
      ? { "": "SERVING", [healthServiceName]: "SERVING" }
      : { "": "NOT_SERVING", [healthServiceName]: "NOT_SERVING", [standbyHealthServiceName]: "NOT_SERVING", [redisHealthServiceName]: "NOT_SERVING" },
  );
  health.addToServer(server);
  addReflection(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.host}:${options.port}`, serverCredentials(options.tls), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  const metrics = createMetrics({
    engine,
    outcomes,
    auth,
    sessions: () => rateQueue.sessions.size,
    leader: () => serving,
    redisUp: () => redisUp,
    resourceLabels: options.metricsResourceLabels ?? true,
    group: group !== undefined,
  });
  snapshotTaken = metrics.snapshotTaken;
  const http =
    options.httpPort === undefined
      ? undefined
      : await startHttpServer({
          host: options.host,
          port: options.httpPort,
          tls: options.tls,
          log,
          routes: connectAdminRoutes(admin),
          ready: () => ready,
          pages: {
            "/metrics": metrics.page,
            "/status": createStatusPage({
              auth,
              sessionNamespaces: () => [...rateQueue.sessions.values()].map((s) => s.principal.namespace),
              leader: () => serving,
              standby: () => ready && !serving,
              redisUp: () => redisUp,
            }),
            "/": dashboardPage,
          },
          actions: configActions,
        });
  log.info("listening", {
    host: options.host,
    port,
    httpPort: http?.port ?? "off",
    resources: engine.resourceCount(),
    auth: auth.enabled ? "on" : "off",
    tls: options.tls === undefined ? "off" : options.tls.clientCaFile === undefined ? "on" : "on, client certificates required",
  });
  group?.start({
    engine,
    endSessions: (err) => {
      for (const session of rateQueue.sessions.values()) session.abort(err);
    },
    reloadKeys: () => auth.reload(),
  });

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = 5000): Promise<void> =>
    (stopping ??= new Promise<void>((resolve) => {
      log.info("shutting down", { graceMs });
      const reason = "the server is shutting down; retry on another node or after it restarts";
      gate.close(reason);
      ready = false;
      serving = false;
      health!.setStatus("", "NOT_SERVING");
      health!.setStatus(healthServiceName, "NOT_SERVING");
      engine.shutdown(reason);
      // After the engine stopped: a final, exact snapshot, then the lease goes to a standby.
      const leaving = group?.stop() ?? Promise.resolve();
      const force = setTimeout(() => server.forceShutdown(), graceMs);
      // Open sessions never end by themselves: end them now.
      for (const session of rateQueue.sessions.values()) session.abort(new RpcError(status.UNAVAILABLE, reason));
      server.tryShutdown(() => {
        clearTimeout(force);
        void Promise.all([leaving, http?.close()]).then(() => {
          log.info("stopped");
          resolve();
        });
      });
    }));

  return { port, httpPort: http?.port, engine, shutdown };
}
