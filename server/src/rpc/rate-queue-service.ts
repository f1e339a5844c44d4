// RateQueueService: the worker-facing RPCs, mapped onto the engine.
import { randomUUID } from "node:crypto";
import { status, type ServerDuplexStream, type ServerUnaryCall } from "@grpc/grpc-js";
import type { AcquireRequest, AcquireResponse, RateQueueService, SessionRequest, SessionResponse } from "@ratequeue/proto";
import { Counter, type Principal } from "../auth/index.js";
import type { Ticket } from "../core/index.js";
import { RpcError } from "../errors.js";
import { acquireFromProto, heartbeatFromProto, releaseFromProto } from "../validate/requests.js";
import { grantToProto, heartbeatToProto, releaseToProto, statusOf } from "./convert.js";
import { reportError, serviceError, unary } from "./handler.js";
import type { ServiceHandlers } from "./service-handlers.js";
import { heartbeatIn, ownsLease, reportIn, WorkerSession, type SessionDeps } from "./session.js";

/** Owner recorded on leases granted by unary Acquire (no session holds them). */
const unaryOwner = "unary";

export interface RateQueueServiceHandle {
  implementation: ServiceHandlers<typeof RateQueueService>;
  /** Open sessions, by id. */
  sessions: Map<string, WorkerSession>;
}

export function createRateQueueService(deps: SessionDeps): RateQueueServiceHandle {
  const { engine, clock, log, gate, router, auth, limits, outcomes } = deps;
  const sessions = new Map<string, WorkerSession>();
  /** Open sessions and waiting unary acquires, per key. */
  const sessionsPerKey = new Counter();
  const unaryWaitingPerKey = new Counter();

  const guard = (): void => {
    const refusal = gate.refusal();
    if (refusal !== undefined) throw refusal;
  };

  const acquire = (call: ServerUnaryCall<AcquireRequest, AcquireResponse>, principal: Principal) =>
    new Promise<AcquireResponse>((resolve, reject) => {
      guard();
      const { keyId, scope } = principal;
      let input: ReturnType<typeof acquireFromProto>;
      try {
        input = acquireFromProto(call.request, clock.now(), unaryOwner, deadlineMs(call.getDeadline()));
        if (unaryWaitingPerKey.get(keyId) >= limits.maxQueuedPerSession) {
          throw new RpcError(status.RESOURCE_EXHAUSTED, `${limits.maxQueuedPerSession} unary acquires of this key already wait, the most allowed`);
        }
      } catch (err) {
        if (err instanceof RpcError) outcomes.failed(principal.namespace, err.code);
        throw err;
      }
      if (call.cancelled) return reject(new RpcError(status.CANCELLED, "the call was cancelled"));
      input.resource = scope.engineName(input.resource);
      let ticket: Ticket | null = null;
      let unsubscribe = (): void => {};
      const onCancelled = (): void => {
        if (ticket !== null) engine.cancel(ticket);
      };
      ticket = engine.acquire(input, (result) => {
        call.removeListener("cancelled", onCancelled);
        if (ticket !== null) {
          unaryWaitingPerKey.add(keyId, -1);
          unsubscribe();
        }
        if (!result.ok) {
          if (result.failure.code === "NOT_FOUND") outcomes.failed(principal.namespace, status.NOT_FOUND);
          reject(new RpcError(statusOf(result.failure.code), scope.publicMessage(result.failure.message)));
        } else if (call.cancelled) {
          // The caller left as the grant was made: nobody can use the lease.
          engine.release(result.grant.lease.id);
        } else {
          resolve(grantToProto(result.grant, scope));
        }
      });
      if (ticket !== null) {
        const waiting = ticket;
        unaryWaitingPerKey.add(keyId, 1);
        call.once("cancelled", onCancelled);
        // A revoked key's waiting acquire ends at once.
        unsubscribe = auth.onRevoked(keyId, (err) => {
          reject(err);
          engine.cancel(waiting);
        });
      }
    });

  const implementation: ServiceHandlers<typeof RateQueueService> = {
    session: (call: ServerDuplexStream<SessionRequest, SessionResponse>) => {
      auth.authenticate(call.metadata, call.getPeer()).then(
        (principal) => openSession(call, principal),
        (err: unknown) => call.emit("error", serviceError(reportError(log, "Session", err))),
      );
    },
    acquire: unary(log, "Acquire", async (_req, call) =>
      acquire(call, await auth.authenticate(call.metadata, call.getPeer())),
    ),
    release: unary(log, "Release", async (req, call) => {
      const principal = await auth.authenticate(call.metadata, call.getPeer());
      guard();
      const { leaseId, actualLoad, feedback } = releaseFromProto(req);
      if (!ownsLease(engine, principal, leaseId)) return releaseToProto("unknown");
      router.detach(leaseId);
      return releaseToProto(engine.release(leaseId, actualLoad, (resource) => principal.scope.owns(resource), feedback));
    }),
    report: unary(log, "Report", async (req, call) => {
      const principal = await auth.authenticate(call.metadata, call.getPeer());
      guard();
      return reportIn(engine, principal, req);
    }),
    heartbeat: unary(log, "Heartbeat", async (req, call) => {
      const principal = await auth.authenticate(call.metadata, call.getPeer());
      guard();
      return heartbeatToProto(heartbeatIn(engine, principal, heartbeatFromProto(req), unaryOwner));
    }),
  };

  // At debug level every session's start and end is logged with the counts
  // of what it held, so that a stall (acquires that never come back) can be
  // told apart: sessions that never opened, were refused, or opened and wait.
  const debug = log.level === "debug";

  function openSession(call: ServerDuplexStream<SessionRequest, SessionResponse>, principal: Principal): void {
    const peer = call.getPeer();
    if (call.cancelled) {
      if (debug) log.debug("session gone before it opened", { peer });
      return;
    }
    const refused = (err: RpcError) => {
      if (debug) log.debug("session refused", { peer, key: principal.keyId, code: status[err.code], reason: err.message });
      call.emit("error", serviceError(err));
    };
    const refusal = gate.refusal();
    if (refusal !== undefined) return refused(refusal);
    const { keyId } = principal;
    if (sessionsPerKey.get(keyId) >= limits.maxSessionsPerKey) {
      const what = auth.enabled ? "this API key" : "this server (authentication is off)";
      return refused(new RpcError(status.RESOURCE_EXHAUSTED, `${limits.maxSessionsPerKey} sessions of ${what} are open, the most allowed; close some first`));
    }
    const id = randomUUID();
    const session = new WorkerSession(id, call, deps, principal);
    sessions.set(id, session);
    sessionsPerKey.add(keyId, 1);
    if (debug) log.debug("session opened", { session: id, peer, key: keyId, open: sessions.size });
    const unsubscribe = auth.onRevoked(keyId, (err) => session.abort(err));
    let forgotten = false;
    const forget = (): void => {
      if (forgotten) return;
      forgotten = true;
      if (debug) log.debug("session closed", { session: id, peer, open: sessions.size - 1, ...session.counts() });
      sessions.delete(id);
      sessionsPerKey.add(keyId, -1);
      unsubscribe();
    };
    call.on("end", forget);
    call.on("cancelled", forget);
    call.on("error", forget);
    call.on("close", forget);
  }
  return { implementation, sessions };
}

/** A grpc-js deadline as epoch ms, or undefined for none. */
function deadlineMs(deadline: Date | number): number | undefined {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}
