// One Session stream per client, shared by every acquire: requests are
// tagged with ids, answers routed back by id. When the stream drops, the
// session reconnects with backoff (following a standby's leader hint),
// re-sends what was outstanding and heartbeats its leases to keep them.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import type { Connection } from "./connection.js";
import { isRetryable, RateQueueError } from "./errors.js";
import {
  grpcServiceDefinition,
  RateQueueService,
  ReleaseRequestSchema,
  SessionCancelSchema,
  SessionRequestSchema,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";

const sessionMethod = grpcServiceDefinition(RateQueueService).session;

/** An answer the session waits for. */
interface Outstanding {
  /** The message, kept to send again after a reconnect. */
  request: SessionRequest;
  /** An acquire's deadline (epoch ms): a re-sent acquire asks only for the time left. */
  deadline?: number;
  resolve(response: SessionResponse): void;
  reject(err: RateQueueError): void;
}

export interface SessionEvents {
  /** The server says a lease expired. */
  leaseExpired(leaseId: string): void;
  /** A new stream is open; the owner re-attaches its leases. */
  reconnected(): void;
  /** True while the owner holds leases that need a stream to heartbeat. */
  holdsLeases(): boolean;
}

export class Session {
  private stream: ClientDuplexStream<SessionRequest, SessionResponse> | undefined;
  private nextId = 1n;
  private readonly outstanding = new Map<bigint, Outstanding>();
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly connection: Connection,
    private readonly events: SessionEvents,
  ) {}

  /**
   * Sends one message and resolves with its answer. A failure answer rejects
   * with its status; a dropped stream re-sends the message on the next one.
   */
  request(kind: SessionRequest["kind"]): { id: bigint; answer: Promise<SessionResponse> } {
    if (this.closed) throw new RateQueueError("CANCELLED", "the client is closed");
    const id = this.nextId++;
    const request = create(SessionRequestSchema, { requestId: id, kind });
    const timeout = kind.case === "acquire" ? kind.value.timeout : undefined;
    const deadline = timeout === undefined ? undefined : Date.now() + durationMs(timeout);
    const answer = new Promise<SessionResponse>((resolve, reject) => {
      this.outstanding.set(id, { request, deadline, resolve, reject });
    });
    this.write(request);
    return { id, answer };
  }

  /** Withdraws a waiting acquire; its answer rejects with CANCELLED. */
  cancel(acquireId: bigint, reason: RateQueueError): void {
    const pending = this.outstanding.get(acquireId);
    if (pending === undefined) return;
    this.outstanding.delete(acquireId);
    pending.reject(reason);
    this.write(
      create(SessionRequestSchema, {
        requestId: this.nextId++,
        kind: { case: "cancel", value: create(SessionCancelSchema, { acquireRequestId: acquireId }) },
      }),
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const err = new RateQueueError("CANCELLED", "the client was closed");
    for (const pending of this.outstanding.values()) pending.reject(err);
    this.outstanding.clear();
    this.stream?.end();
    this.stream = undefined;
  }

  private write(request: SessionRequest): void {
    if (this.stream !== undefined) {
      this.stream.write(request);
      return;
    }
    // Opening sends everything outstanding, this request among them if it expects an answer.
    const stream = this.open();
    if (stream !== undefined && !this.outstanding.has(request.requestId)) stream.write(request);
  }

  private open(): ClientDuplexStream<SessionRequest, SessionResponse> | undefined {
    if (this.closed || this.reconnectTimer !== undefined) return undefined;
    const client = this.connection.client();
    const stream = client.makeBidiStreamRequest(
      sessionMethod.path,
      sessionMethod.requestSerialize,
      sessionMethod.responseDeserialize,
      this.connection.metadata(),
      {},
    );
    this.stream = stream;
    stream.on("data", (response: SessionResponse) => {
      this.attempt = 0;
      this.dispatch(response);
    });
    stream.on("error", (err: ServiceError) => this.dropped(stream, err));
    stream.on("end", () => this.dropped(stream));
    // Re-send what the previous stream left unanswered, in order.
    for (const pending of this.outstanding.values()) {
      const { request, deadline } = pending;
      if (deadline !== undefined && request.kind.case === "acquire") {
        request.kind.value.timeout = durationFromMs(Math.max(0, deadline - Date.now()));
      }
      stream.write(request);
    }
    return stream;
  }

  private dispatch(response: SessionResponse): void {
    if (response.kind.case === "leaseExpired") {
      this.events.leaseExpired(response.kind.value.leaseId);
      return;
    }
    const pending = this.outstanding.get(response.requestId);
    if (pending === undefined) {
      // A grant for an acquire the caller already gave up on: give it back.
      if (response.kind.case === "granted" && response.kind.value.lease) {
        const value = create(ReleaseRequestSchema, { leaseId: response.kind.value.lease.leaseId });
        this.request({ case: "release", value }).answer.catch(() => {});
      }
      return;
    }
    if (response.kind.case === "failure" && response.kind.value.code === status.UNAVAILABLE) {
      // This node is going away (shutting down, or no longer the leader): keep
      // the request and reconnect, which sends it again to whoever serves next.
      this.stream?.cancel();
      return;
    }
    this.outstanding.delete(response.requestId);
    if (response.kind.case === "failure") {
      pending.reject(RateQueueError.fromCode(response.kind.value.code, response.kind.value.message));
    } else {
      pending.resolve(response);
    }
  }

  private dropped(stream: ClientDuplexStream<SessionRequest, SessionResponse>, err?: ServiceError): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    if (this.closed) return;
    if (err !== undefined && !isRetryable(err.code)) {
      // Credentials or permissions: trying again cannot help. Fail what waits.
      const failure = RateQueueError.fromCode(err.code, err.details);
      for (const pending of this.outstanding.values()) pending.reject(failure);
      this.outstanding.clear();
      return;
    }
    this.connection.moveOn(err);
    // Nothing waits and nothing is held: reconnect lazily on the next request.
    if (this.outstanding.size === 0 && !this.events.holdsLeases()) return;
    // At most ~1 s apart: during a failover the new leader should be found
    // within a second of taking over, not after a long backoff.
    const delay = Math.min(1000, 50 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.open() !== undefined) this.events.reconnected();
    }, delay);
  }
}
