// One worker process's Session stream: many acquires multiplexed by request
// id, answered in whatever order the engine decides them. A client that
// sends batches gets batches back: what one turn of the event loop decided
// goes out as one message.
import { status, type ServerDuplexStream } from "@grpc/grpc-js";
import {
  forEachBatch,
  maxBatchMessages,
  responseSizeBound,
  type ReportRequest,
  type ReportResponse,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import type { Authenticator, Principal, SessionLimits } from "../auth/index.js";
import type { AcquireResult, Clock, Engine, HeartbeatResult, Ticket } from "../core/index.js";
import { RpcError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Gate } from "../store/index.js";
import { acquireFromProto, heartbeatFromProto, releaseFromProto, reportFromProto } from "../validate/requests.js";
import { failureToProto, grantToProto, heartbeatToProto, releaseToProto, reportToProto, statusOf } from "./convert.js";
import { serviceError, reportError } from "./handler.js";
import type { EdgeOutcomes } from "./edge-outcomes.js";
import type { LeaseHolder, LeaseRouter } from "./lease-router.js";
import { malformedError } from "./malformed.js";

export interface SessionDeps {
  engine: Engine;
  clock: Clock;
  log: Logger;
  gate: Gate;
  router: LeaseRouter;
  auth: Authenticator;
  limits: SessionLimits;
  /** Acquires the edge refused, per namespace (edge-outcomes.ts). */
  outcomes: EdgeOutcomes;
}

type Call = ServerDuplexStream<SessionRequest, SessionResponse>;

/** Serves one Session stream until the client ends it or goes away. */
export class WorkerSession implements LeaseHolder {
  /** Waiting acquires by the client's request id. */
  private readonly waiting = new Map<bigint, Ticket>();
  /** Leases this session holds, to detach them from the router at close. */
  private readonly leases = new Set<string>();
  private closed = false;
  private closedWith: { waiting: number; leases: number } | undefined;
  /** Set once the client sends a batch: answers are then coalesced per event-loop turn. */
  private batching = false;
  /** Answers decided this turn, sent together by flush(). */
  private outbox: SessionResponse[] = [];
  private readonly flush = (): void => {
    const out = this.outbox;
    this.outbox = [];
    if (this.closed || out.length === 0) return;
    if (out.length === 1) {
      this.call.write(out[0]!);
      return;
    }
    // Runs of at most maxBatchMessages answers and maxBatchBytes, as the client's batches.
    forEachBatch(out, responseSizeBound, (start, end) => {
      if (end - start === 1) {
        this.call.write(out[start]!);
        return;
      }
      const responses = start === 0 && end === out.length ? out : out.slice(start, end);
      this.call.write({
        $typeName: "ratequeue.v1.SessionResponse",
        requestId: 0n,
        kind: { case: "batch", value: { $typeName: "ratequeue.v1.SessionResponseBatch", responses } },
      });
    });
  };

  /** Whether a resource is the caller's (made once: a release asks for every lease). */
  private readonly ownsResource = (resource: string): boolean => this.principal.scope.owns(resource);

  constructor(
    readonly id: string,
    private readonly call: Call,
    private readonly deps: SessionDeps,
    /** The caller; every resource and lease it names is looked up in its namespace. */
    readonly principal: Principal,
  ) {
    call.on("data", (req: SessionRequest) => this.handle(req));
    call.on("end", () => {
      this.close();
      call.end();
    });
    call.on("cancelled", () => this.close());
    call.on("error", () => this.close());
  }

  /** What the session had in flight when it closed (or has now): for the debug log line at its end. */
  counts(): { waiting: number; leases: number } {
    return this.closedWith ?? { waiting: this.waiting.size, leases: this.leases.size };
  }

  notifyExpired(leaseId: string, resource: string): void {
    this.leases.delete(leaseId);
    const name = this.principal.scope.publicName(resource);
    this.send(0n, { case: "leaseExpired", value: { $typeName: "ratequeue.v1.LeaseExpired", leaseId, resource: name } });
  }

  /** Ends the stream with a status (shutdown, revoked credentials). */
  abort(err: RpcError): void {
    if (this.closed) return;
    this.close();
    this.call.emit("error", serviceError(err));
  }

  private handle(req: SessionRequest): void {
    if (this.closed) return;
    const bad = malformedError(req);
    if (bad !== undefined) {
      this.abort(bad);
      return;
    }
    if (req.kind.case === "batch") {
      const batch = req.kind.value.requests;
      const refused =
        req.requestId !== 0n
          ? "request_id: must be 0 on a batch (each message in it has its own)"
          : batch.length > maxBatchMessages
            ? `batch: must hold at most ${maxBatchMessages} messages, got ${batch.length}`
            : batch.some((r) => r.kind.case === "batch")
              ? "batch: must not hold a batch"
              : undefined;
      // A malformed batch is a broken client: the stream ends, as for a body that does not decode.
      if (refused !== undefined) return this.abort(new RpcError(status.INVALID_ARGUMENT, refused));
      this.batching = true;
      for (const r of batch) this.handle(r);
      return;
    }
    const id = req.requestId;
    try {
      const refusal = this.deps.gate.refusal();
      if (refusal !== undefined) {
        this.abort(refusal);
        return;
      }
      if (id === 0n) throw new RpcError(status.INVALID_ARGUMENT, "request_id: must not be 0 (0 is reserved for notices)");
      const { engine, clock, router } = this.deps;
      switch (req.kind.case) {
        case "acquire": {
          if (this.waiting.has(id)) {
            throw new RpcError(status.INVALID_ARGUMENT, `request_id: ${id} is already waiting on this session; use a new id per message`);
          }
          const input = acquireFromProto(req.kind.value, clock.now(), this.id);
          const { limits } = this.deps;
          if (this.waiting.size >= limits.maxQueuedPerSession) {
            throw new RpcError(status.RESOURCE_EXHAUSTED, `session: ${this.waiting.size} acquires already wait on this session, the most allowed; wait for answers or open fewer`);
          }
          if (this.leases.size >= limits.maxLeasesPerSession) {
            throw new RpcError(status.RESOURCE_EXHAUSTED, `session: this session holds ${this.leases.size} leases, the most allowed; release some first`);
          }
          input.resource = this.principal.scope.engineName(input.resource);
          const ticket = engine.acquire(input, (result) => this.decided(id, result));
          if (ticket !== null) this.waiting.set(id, ticket);
          return;
        }
        case "release": {
          const { leaseId, actualLoad, feedback } = releaseFromProto(req.kind.value);
          const outcome = ownsLease(engine, this.principal, leaseId) ? engine.release(leaseId, actualLoad, this.ownsResource, feedback) : "unknown";
          this.leases.delete(leaseId);
          router.detach(leaseId);
          this.send(id, { case: "released", value: releaseToProto(outcome) });
          return;
        }
        case "heartbeat": {
          const results = heartbeatIn(engine, this.principal, heartbeatFromProto(req.kind.value), this.id);
          for (const r of results) {
            if (!r.held) continue;
            this.leases.add(r.leaseId);
            router.attach(r.leaseId, this);
          }
          this.send(id, { case: "heartbeat", value: heartbeatToProto(results) });
          return;
        }
        case "report": {
          this.send(id, { case: "reported", value: reportIn(engine, this.principal, req.kind.value) });
          return;
        }
        case "cancel": {
          if (req.kind.value.acquireRequestId === 0n) throw new RpcError(status.INVALID_ARGUMENT, "acquire_request_id: must not be 0");
          const ticket = this.waiting.get(req.kind.value.acquireRequestId);
          // An unknown or already decided acquire: nothing to withdraw.
          if (ticket !== undefined) engine.cancel(ticket);
          return;
        }
        default:
          throw new RpcError(status.INVALID_ARGUMENT, "kind: the message must hold one of acquire, release, heartbeat, cancel or report");
      }
    } catch (err) {
      const e = reportError(this.deps.log, "Session", err);
      if (req.kind.case === "acquire") this.deps.outcomes.failed(this.principal.namespace, e.code);
      this.send(id, { case: "failure", value: failureToProto(e.code, e.message) });
    }
  }

  private decided(id: bigint, result: AcquireResult): void {
    this.waiting.delete(id);
    if (!result.ok) {
      const code = statusOf(result.failure.code);
      // The engine counts the refusals of the resources it knows.
      if (result.failure.code === "NOT_FOUND") this.deps.outcomes.failed(this.principal.namespace, code);
      const message = this.principal.scope.publicMessage(result.failure.message);
      this.send(id, { case: "failure", value: failureToProto(code, message) });
      return;
    }
    const lease = result.grant.lease;
    if (this.closed) {
      // Granted as the stream went away: nobody can use it, so give it back.
      this.deps.engine.release(lease.id);
      return;
    }
    this.leases.add(lease.id);
    this.deps.router.attach(lease.id, this);
    this.send(id, { case: "granted", value: grantToProto(result.grant, this.principal.scope) });
  }

  private send(requestId: bigint, kind: SessionResponse["kind"]): void {
    if (this.closed) return;
    const response: SessionResponse = { $typeName: "ratequeue.v1.SessionResponse", requestId, kind };
    if (!this.batching) {
      this.call.write(response);
      return;
    }
    if (this.outbox.push(response) === 1) setImmediate(this.flush);
  }

  /** Withdraws every waiting acquire; held leases live on until their TTL. */
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closedWith = { waiting: this.waiting.size, leases: this.leases.size };
    for (const ticket of this.waiting.values()) this.deps.engine.cancel(ticket);
    this.waiting.clear();
    for (const leaseId of this.leases) this.deps.router.detach(leaseId, this);
    this.leases.clear();
  }
}

/**
 * Heartbeats the leases of the caller's namespace; leases of other
 * namespaces come back not held, as if unknown, and are left untouched.
 * After a takeover, an unknown lease of one of the caller's resources is
 * re-attached to `owner` (Engine.heartbeat).
 */
export function heartbeatIn(engine: Engine, principal: Principal, leaseIds: string[], owner: string): HeartbeatResult[] {
  const reattach = { owner, mayAdopt: (resource: string) => principal.scope.owns(resource) };
  const foreign = (id: string) => !ownsLease(engine, principal, id);
  if (!leaseIds.some(foreign)) return engine.heartbeat(leaseIds, reattach);
  const mine = engine.heartbeat(leaseIds.filter((id) => !foreign(id)), reattach);
  let i = 0;
  return leaseIds.map((leaseId) => (foreign(leaseId) ? { leaseId, held: false } : mine[i++]!));
}

/** Applies a report of provider feedback on one of the caller's resources (Session and unary Report). */
export function reportIn(engine: Engine, principal: Principal, req: ReportRequest): ReportResponse {
  const { resource, feedback } = reportFromProto(req);
  const result = engine.report(principal.scope.engineName(resource), feedback);
  if (result === undefined) throw new RpcError(status.NOT_FOUND, `resource '${resource}' not found`);
  return reportToProto(result.pausedUntil);
}

/**
 * Whether the caller may act on a lease: one of its namespace, or one the
 * engine does not know (which then answers "unknown" as for anyone).
 */
export function ownsLease(engine: Engine, principal: Principal, leaseId: string): boolean {
  const resource = engine.leaseResource(leaseId);
  return resource === undefined || principal.scope.owns(resource);
}
