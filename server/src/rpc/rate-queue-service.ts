// RateQueueService: the worker-facing RPCs, mapped onto the engine.
import { randomUUID } from "node:crypto";
import { status, type ServerDuplexStream, type ServerUnaryCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { AcquireRequest, AcquireResponse, SessionRequest, SessionResponse } from "@ratequeue/client/proto";
import type { Ticket } from "../core/index.js";
import { grantToProto, heartbeatToProto, releaseToProto } from "./convert.js";
import { serviceError, unary } from "./handler.js";
import { RpcError, statusOf } from "./rpc-error.js";
import { WorkerSession, type SessionDeps } from "./session.js";
import { acquireFromProto, heartbeatFromProto, releaseFromProto } from "./validate.js";

/** Owner recorded on leases granted by unary Acquire (no session holds them). */
const unaryOwner = "unary";

export interface RateQueueServiceHandle {
  implementation: UntypedServiceImplementation;
  /** Open sessions, by id. */
  sessions: Map<string, WorkerSession>;
}

export function createRateQueueService(deps: SessionDeps): RateQueueServiceHandle {
  const { engine, clock, log, gate, router } = deps;
  const sessions = new Map<string, WorkerSession>();

  const guard = (): void => {
    const refusal = gate.refusal();
    if (refusal !== undefined) throw refusal;
  };

  const acquire = (call: ServerUnaryCall<AcquireRequest, AcquireResponse>) =>
    new Promise<AcquireResponse>((resolve, reject) => {
      guard();
      const callDeadline = deadlineMs(call.getDeadline());
      const input = acquireFromProto(call.request, clock.now(), unaryOwner, callDeadline);
      let ticket: Ticket | null = null;
      const onCancelled = (): void => {
        if (ticket !== null) engine.cancel(ticket);
      };
      ticket = engine.acquire(input, (result) => {
        call.removeListener("cancelled", onCancelled);
        if (!result.ok) {
          reject(new RpcError(statusOf(result.failure.code), result.failure.message));
        } else if (call.cancelled) {
          // The caller left as the grant was made: nobody can use the lease.
          engine.release(result.grant.lease.id);
        } else {
          resolve(grantToProto(result.grant));
        }
      });
      if (ticket !== null) call.once("cancelled", onCancelled);
    });

  const implementation: UntypedServiceImplementation = {
    session: (call: ServerDuplexStream<SessionRequest, SessionResponse>) => {
      const refusal = gate.refusal();
      if (refusal !== undefined) {
        call.emit("error", serviceError(refusal));
        return;
      }
      const id = randomUUID();
      const session = new WorkerSession(id, call, deps);
      sessions.set(id, session);
      const forget = (): void => void sessions.delete(id);
      call.on("end", forget);
      call.on("cancelled", forget);
      call.on("error", forget);
      call.on("close", forget);
    },
    acquire: unary(log, "Acquire", (_req, call: ServerUnaryCall<AcquireRequest, AcquireResponse>) => acquire(call)),
    release: unary(log, "Release", (req) => {
      guard();
      const { leaseId, actualLoad } = releaseFromProto(req as Parameters<typeof releaseFromProto>[0]);
      router.detach(leaseId);
      return releaseToProto(engine.release(leaseId, actualLoad));
    }),
    heartbeat: unary(log, "Heartbeat", (req) => {
      guard();
      return heartbeatToProto(engine.heartbeat(heartbeatFromProto(req as Parameters<typeof heartbeatFromProto>[0])));
    }),
  };
  return { implementation, sessions };
}

/** A grpc-js deadline as epoch ms, or undefined for none. */
function deadlineMs(deadline: Date | number): number | undefined {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}

export { status };
