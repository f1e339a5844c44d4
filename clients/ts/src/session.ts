// One Session stream per client, shared by every acquire: requests are
// tagged with ids, answers routed back by id. The rules it keeps are the
// "Session protocol" of proto/ratequeue/v1/ratequeue.proto: when the stream
// drops it reconnects with backoff (following a standby's leader hint),
// re-sends what was outstanding and has its owner heartbeat every lease.
// What is sent in one turn of the event loop goes out as one
// SessionRequestBatch (a lone message goes alone), and the server then
// answers in batches too: one HTTP/2 message carries many operations.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  forEachBatch,
  grpcServiceDefinition,
  RateQueueService,
  ReleaseRequestSchema,
  requestSizeBound,
  SessionRequestSchema,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import type { Connection } from "./connection.js";
import { Deadlines, type Deadline } from "./deadlines.js";
import { RateQueueError } from "./errors.js";
import { backoffMs, departureGraceMs, streamEnd } from "./protocol.js";

const sessionMethod = grpcServiceDefinition(RateQueueService).session;

type Stream = ClientDuplexStream<SessionRequest, SessionResponse>;

/**
 * How the client stops waiting for an answer by itself, some time after it
 * sent the request (one object per kind of request, shared by all of them).
 */
export interface GiveUp {
  /** Send a cancel (an acquire), or only stop waiting (a release). */
  withdraw: boolean;
  /** The error the request then rejects with (made then: a key refusal seen meanwhile is the real reason). */
  reason(request: SessionRequest, afterMs: number): RateQueueError;
}

/** A request sent, and its answer as the caller wants it. */
export interface Sent<T> {
  readonly request: SessionRequest;
  readonly answer: Promise<T>;
}

/** The answer as it came. */
const asItCame = (response: SessionResponse) => response;

/** An answer the session waits for; in the deadline heap while it has a GiveUp. */
interface Outstanding extends Deadline, Sent<unknown> {
  /** The message, kept to send again after a reconnect. */
  request: SessionRequest;
  answer: Promise<unknown>;
  /** When the request was made (epoch ms). */
  since: number;
  /** An acquire's deadline (epoch ms): a re-sent acquire asks only for the time left. */
  deadline?: number;
  /** How many streams that had answered broke with this message unanswered: a report gives up at two. */
  brokenStreams: number;
  giveUp: GiveUp | undefined;
  /** Turns the answer into what the caller gets; what it throws rejects. */
  answered(response: SessionResponse): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

const unsettled = (): void => {};

export interface SessionEvents {
  /** The server says a lease expired. */
  leaseExpired(leaseId: string): void;
  /** The stream ended refusing the key: every held lease is lost. */
  refused(err: RateQueueError): void;
  /**
   * A new stream is open and its waiting requests were sent again: heartbeat
   * every held lease, with at least one heartbeat even naming none (its
   * answer shows that the stream works).
   */
  opened(): void;
  /** True while the owner holds leases that need a stream to heartbeat. */
  holdsLeases(): boolean;
}

export interface SessionOptions {
  /** How long a waiting acquire survives without a working stream, ms. */
  reconnectTimeoutMs: number;
}

export class Session {
  private stream: Stream | undefined;
  /** The open stream has answered at least once. */
  private healthy = false;
  /** Since when no stream works (epoch ms); undefined while one does, or before the first attempt. */
  private downSince: number | undefined;
  private lastError = "not connected yet";
  private nextId = 1n;
  private readonly outstanding = new Map<bigint, Outstanding>();
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private departureTimer: NodeJS.Timeout | undefined;
  /** Fails waiting acquires that outlived the reconnect timeout. */
  private watchdog: NodeJS.Timeout | undefined;
  private closed = false;
  private refusedWith: RateQueueError | undefined;
  /** Requests given up on by the client itself, by one timer. */
  private readonly deadlines = new Deadlines<Outstanding>((pending) => {
    const { request, giveUp } = pending;
    const reason = giveUp!.reason(request, pending.dueAt - pending.since);
    if (giveUp!.withdraw) this.cancel(request.requestId, reason);
    else this.abandon(request.requestId, reason);
  });
  /** Messages written this turn, sent together by flush() on the current stream. */
  private outbox: SessionRequest[] = [];

  constructor(
    private readonly connection: Connection,
    private readonly events: SessionEvents,
    private readonly options: SessionOptions,
  ) {}

  /** The key refusal the last stream ended with, until a stream works again. */
  get refusal(): RateQueueError | undefined {
    return this.refusedWith;
  }

  /**
   * Sends one message and resolves with its answer, turned by `answered`
   * into what the caller wants (made as the answer comes: one promise per
   * request). A failure answer rejects with its status; a dropped stream
   * re-sends the message on the next one. With `giveUp`, the client stops
   * waiting by itself `giveUpAfterMs` after sending it. A closed client
   * rejects.
   */
  request(kind: SessionRequest["kind"]): Sent<SessionResponse>;
  request<T>(kind: SessionRequest["kind"], answered: (response: SessionResponse) => T, giveUp?: GiveUp, giveUpAfterMs?: number): Sent<T>;
  request(
    kind: SessionRequest["kind"],
    answered: (response: SessionResponse) => unknown = asItCame,
    giveUp?: GiveUp,
    giveUpAfterMs = 0,
  ): Sent<unknown> {
    const id = this.nextId++;
    const request: SessionRequest = { $typeName: "ratequeue.v1.SessionRequest", requestId: id, kind };
    if (this.closed) return { request, answer: Promise.reject(new RateQueueError("CANCELLED", "the client is closed")) };
    const since = Date.now();
    const timeout = kind.case === "acquire" ? kind.value.timeout : undefined;
    const deadline = timeout === undefined ? undefined : since + durationMs(timeout);
    const pending: Outstanding = {
      request,
      answer: undefined as unknown as Promise<unknown>,
      since,
      deadline,
      brokenStreams: 0,
      giveUp,
      answered,
      resolve: unsettled,
      reject: unsettled,
      dueAt: since + giveUpAfterMs,
      heapIndex: -1,
    };
    pending.answer = new Promise((resolve, reject) => {
      pending.resolve = resolve;
      pending.reject = reject;
    });
    this.outstanding.set(id, pending);
    if (giveUp !== undefined) this.deadlines.add(pending);
    this.write(request);
    if ((kind.case === "acquire" || kind.case === "report") && !this.healthy) this.armWatchdog();
    return pending;
  }

  /** Withdraws a waiting acquire; its answer rejects with `reason`. */
  cancel(acquireId: bigint, reason: RateQueueError): void {
    const pending = this.take(acquireId);
    if (pending === undefined) return;
    pending.reject(reason);
    this.write(
      create(SessionRequestSchema, {
        requestId: this.nextId++,
        kind: { case: "cancel", value: { $typeName: "ratequeue.v1.SessionCancel", acquireRequestId: acquireId } },
      }),
    );
  }

  /** Stops waiting for a request's answer (it is not sent again); its answer rejects with `reason`. */
  abandon(id: bigint, reason: RateQueueError): void {
    this.take(id)?.reject(reason);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.departureTimer);
    clearTimeout(this.watchdog);
    this.failOutstanding(() => true, new RateQueueError("CANCELLED", "the client was closed"));
    this.deadlines.clear();
    // Releases and cancels written this turn go out before the end; what was just failed here does not.
    this.outbox = this.outbox.filter((r) => r.kind.case === "release" || r.kind.case === "cancel");
    this.flush();
    this.stream?.end();
    this.stream = undefined;
  }

  /** Stops waiting for a request: out of the map and the deadline heap. */
  private take(id: bigint): Outstanding | undefined {
    const pending = this.outstanding.get(id);
    if (pending === undefined) return undefined;
    this.outstanding.delete(id);
    if (pending.giveUp !== undefined) this.deadlines.remove(pending);
    return pending;
  }

  private write(request: SessionRequest): void {
    if (this.stream === undefined) {
      // Opening sends everything outstanding, this request among them if it expects an answer.
      if (this.open() === undefined || this.outstanding.has(request.requestId)) return;
    }
    if (this.outbox.push(request) === 1) setImmediate(this.flush);
  }

  /**
   * Sends what was written this turn on the current stream: one message
   * alone, several as SessionRequestBatches of at most maxBatchMessages
   * messages and maxBatchBytes bytes (@ratequeue/proto's forEachBatch).
   */
  private readonly flush = (): void => {
    const out = this.outbox;
    if (out.length === 0) return;
    this.outbox = [];
    const stream = this.stream;
    if (stream === undefined) return;
    if (out.length === 1) {
      stream.write(out[0]!);
      return;
    }
    forEachBatch(out, requestSizeBound, (start, end) => {
      if (end - start === 1) {
        stream.write(out[start]!);
        return;
      }
      const requests = start === 0 && end === out.length ? out : out.slice(start, end);
      stream.write({ $typeName: "ratequeue.v1.SessionRequest", requestId: 0n, kind: { case: "batch", value: { $typeName: "ratequeue.v1.SessionRequestBatch", requests } } });
    });
  };

  private open(): Stream | undefined {
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
    this.healthy = false;
    this.outbox = [];
    stream.on("data", (response: SessionResponse) => this.dispatch(stream, response));
    stream.on("error", (err: ServiceError) => this.dropped(stream, err));
    stream.on("end", () => this.dropped(stream));
    // Re-send what the previous stream left unanswered: acquires (with the
    // time they have left), then releases, then reports (a report until two
    // working streams broke without answering it: feedback is about a moment
    // that has passed). Heartbeats are sent afresh by the owner, for every
    // lease it holds now.
    const superseded = new RateQueueError("UNAVAILABLE", "the stream was replaced; a new heartbeat covers this one");
    const unanswered = new RateQueueError("UNAVAILABLE", `two streams broke before a server answered the report: ${this.lastError}`);
    for (const [id, pending] of this.outstanding) {
      const kind = pending.request.kind.case;
      if (kind === "heartbeat" || (kind === "report" && pending.brokenStreams >= 2)) {
        this.take(id);
        pending.reject(kind === "heartbeat" ? superseded : unanswered);
      }
    }
    for (const kind of ["acquire", "release", "report"] as const) {
      for (const pending of this.outstanding.values()) {
        const { request, deadline } = pending;
        if (request.kind.case !== kind) continue;
        if (deadline !== undefined && request.kind.case === "acquire") {
          request.kind.value.timeout = durationFromMs(Math.max(0, deadline - Date.now()));
        }
        if (this.outbox.push(request) === 1) setImmediate(this.flush);
      }
    }
    this.events.opened();
    return stream;
  }

  private dispatch(stream: Stream, response: SessionResponse): void {
    if (this.stream !== stream) return;
    if (!this.healthy) {
      this.healthy = true;
      this.downSince = undefined;
      this.refusedWith = undefined;
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
    }
    if (response.kind.case !== "batch") {
      this.answer(stream, response);
      return;
    }
    // In the order the server decided them; a batch in a batch is not in the protocol.
    for (const r of response.kind.value.responses) {
      if (this.stream !== stream) return;
      if (r.kind.case !== "batch") this.answer(stream, r);
    }
  }

  /** Routes one answer or notice. */
  private answer(stream: Stream, response: SessionResponse): void {
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
      // This node is going away (shutting down, or no longer the leader):
      // keep the request and give the node a moment to end the stream
      // itself, with a status that may name the leader; then reconnect,
      // which sends the request again to whoever serves next.
      this.lastError = `UNAVAILABLE: ${response.kind.value.message}`;
      this.departureTimer ??= setTimeout(() => {
        this.departureTimer = undefined;
        if (this.stream === stream) stream.cancel();
      }, departureGraceMs);
      return;
    }
    this.attempt = 0;
    this.take(response.requestId);
    if (response.kind.case === "failure") {
      pending.reject(RateQueueError.fromCode(response.kind.value.code, response.kind.value.message));
      return;
    }
    let value: unknown;
    try {
      value = pending.answered(response);
    } catch (err) {
      pending.reject(err);
      return;
    }
    pending.resolve(value);
  }

  private dropped(stream: Stream, err?: ServiceError): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    // Unsent answers-to-be are outstanding and sent again on the next stream; unsent cancels are moot.
    this.outbox = [];
    clearTimeout(this.departureTimer);
    this.departureTimer = undefined;
    if (this.closed) return;
    if (this.healthy || this.downSince === undefined) this.downSince = Date.now();
    // Every unanswered report was on this stream; one that had answered counts.
    if (this.healthy) for (const p of this.outstanding.values()) if (p.request.kind.case === "report") p.brokenStreams++;
    this.healthy = false;
    const end = err === undefined ? "retry" : streamEnd(err.code);
    this.lastError = err === undefined ? "the server ended the stream" : `${status[err.code] ?? err.code}: ${err.details}`;
    if (end === "refused") {
      // The key is refused: no reconnect can help until a new request asks
      // for one, and nobody can heartbeat the leases with this key.
      const failure = RateQueueError.fromCode(err!.code, err!.details);
      this.failOutstanding(() => true, failure);
      this.refusedWith = failure;
      this.events.refused(failure);
      return;
    }
    if (end === "final") {
      // What waits cannot be granted by reconnecting; releases (and reports, once) are sent again.
      this.failOutstanding((p) => p.request.kind.case !== "release" && p.request.kind.case !== "report", RateQueueError.fromCode(err!.code, err!.details));
    } else {
      this.connection.moveOn(err);
    }
    // Nothing waits and nothing is held: reconnect lazily on the next request.
    if (this.outstanding.size === 0 && !this.events.holdsLeases()) return;
    this.armWatchdog();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.open();
    }, backoffMs(this.attempt++));
  }

  private failOutstanding(match: (pending: Outstanding) => boolean, err: RateQueueError): void {
    for (const [id, pending] of this.outstanding) {
      if (!match(pending)) continue;
      this.take(id);
      pending.reject(err);
    }
  }

  /** Fails, at the right moment, the acquires and reports that have waited the reconnect timeout without a working stream. */
  private armWatchdog(): void {
    if (this.watchdog !== undefined || this.closed) return;
    const limit = this.options.reconnectTimeoutMs;
    const expiresAt = (p: Outstanding) => Math.max(p.since, this.downSince ?? p.since) + limit;
    let next = Infinity;
    const timed = (p: Outstanding) => p.request.kind.case === "acquire" || p.request.kind.case === "report";
    for (const p of this.outstanding.values()) if (timed(p)) next = Math.min(next, expiresAt(p));
    if (next === Infinity) return;
    this.watchdog = setTimeout(
      () => {
        this.watchdog = undefined;
        if (this.healthy) return;
        const now = Date.now();
        const err = new RateQueueError("UNAVAILABLE", `no ratequeue server reachable for ${limit} ms: ${this.lastError}`);
        this.failOutstanding((p) => timed(p) && expiresAt(p) <= now, err);
        this.armWatchdog();
      },
      Math.max(0, next - Date.now()),
    );
    this.watchdog.unref();
  }
}
