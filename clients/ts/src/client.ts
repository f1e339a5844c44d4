// The public client: acquire a lease, use it, release it.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Connection, type ClientOptions } from "./connection.js";
import { RateQueueError } from "./errors.js";
import {
  HeartbeatRequestSchema,
  ReleaseOutcome,
  ReportRequestSchema,
  type AcquireRequest,
  type ReleaseRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import {
  checkFeedback,
  feedbackToMessage,
  isEmptyFeedback,
  mergeFeedback,
  parseRateLimitHeaders,
  pausedUntilDate,
  type HeadersInput,
  type ProviderFeedback,
} from "./feedback.js";
import { maxLeaseIdsPerHeartbeat, reconnectTimeoutMs, timeoutSlackMs } from "./protocol.js";
import { Session, type GiveUp } from "./session.js";

export type { ClientOptions };

export interface AcquireOptions {
  /** What the call costs on load limits (tokens, bytes). Default 1. */
  load?: number;
  /** Higher is served first within a lane. Default 10. */
  priority?: number;
  /** The lane to wait in. Default: the resource's default lane. */
  lane?: string;
  /** Give up after this long with DEADLINE_EXCEEDED. Default: wait until granted or aborted. 0: one attempt. */
  timeoutMs?: number;
  /** Aborting withdraws the request from the server's queue. */
  signal?: AbortSignal;
  /**
   * A key inside the resource, such as a customer id: 1 to 128 characters,
   * no `@`, whitespace or control characters. The acquire is charged to the
   * child `RESOURCE/KEY`, made from the resource's `perKey` template on
   * first use, and to the resource and its ancestors, so each key gets its
   * own quota inside the shared limit. The lease's `resource` is
   * `RESOURCE/KEY`. A resource without `perKey` refuses a key with
   * INVALID_ARGUMENT. Absent or empty: the resource itself.
   */
  key?: string;
}

export type ReleaseResult = "released" | "already_released" | "expired" | "unknown";

/** A granted slot. Release it when the guarded call is done. */
export interface Lease extends AsyncDisposable {
  readonly id: string;
  /** The resource charged: the one acquired, or `RESOURCE/KEY` for an acquire with a key. */
  readonly resource: string;
  /** The load charged at acquire. */
  readonly load: number;
  /** How long the acquire waited in the queue. */
  readonly waitedMs: number;
  /** When the server granted the lease (server clock, epoch ms). */
  readonly grantedAt: number;
  /**
   * Aborted when the lease is lost: the server reports it expired or no longer
   * held, or refuses the API key. The reason is a RateQueueError.
   */
  readonly signal: AbortSignal;
  /**
   * The real load, when known before the lease is disposed: `await using`
   * then releases with it, reconciling the estimate.
   */
  actualLoad?: number;
  /**
   * Records what the provider said about the guarded call, to be sent with
   * the release: merged into the lease's pending feedback (throttled stays
   * true once true; other values replace earlier ones). A throttled release
   * without an actualLoad refunds the whole load (the provider spent no
   * tokens); the whole resource pauses, fleet-wide. After the release it
   * has no effect. Refuses values that are not finite numbers >= 0 with
   * INVALID_ARGUMENT.
   */
  report(feedback: ProviderFeedback): void;
  /**
   * Reads the provider's answer (its status and rate-limit headers, see
   * parseRateLimitHeaders) into the lease's pending feedback, as report does.
   */
  observe(headers: HeadersInput, status?: number): void;
  /**
   * Returns the slot, with the pending feedback; with actualLoad, corrects
   * the load limits by the difference. While no server can be reached the
   * release is sent again after each reconnect, for up to the lease's TTL (by
   * then the server has freed the slot): then it rejects with UNAVAILABLE.
   */
  release(options?: { actualLoad?: number; feedback?: ProviderFeedback }): Promise<ReleaseResult>;
}

export interface RateQueueClient {
  /** Waits for a lease on `resource` (with `options.key`, on its keyed child `RESOURCE/KEY`). */
  acquire(resource: string, options?: AcquireOptions): Promise<Lease>;
  /**
   * Acquires, runs fn, and releases on return or throw; an error of fn wins
   * over one of the release. An error that carries the provider's answer (a
   * numeric `status` or `statusCode`, and `headers`, directly or on its
   * `response`, as the openai and Anthropic SDKs' errors do) is observed
   * first: a 429 thrown by fn pauses the resource.
   */
  withLease<T>(resource: string, options: AcquireOptions, fn: (lease: Lease) => Promise<T> | T): Promise<T>;
  /**
   * Tells `resource` what the provider said about a call made without a
   * lease (a leased call reports through its lease). Resolves with the time
   * until which the resource now grants nothing, or undefined when it is
   * not paused. Sent again once if the stream breaks before the answer.
   */
  report(resource: string, feedback: ProviderFeedback): Promise<Date | undefined>;
  /** Releases every held lease, fails waiting acquires, ends the stream. */
  close(): Promise<void>;
}

const releaseResults: Record<number, ReleaseResult> = {
  [ReleaseOutcome.RELEASED]: "released",
  [ReleaseOutcome.ALREADY_RELEASED]: "already_released",
  [ReleaseOutcome.EXPIRED]: "expired",
  [ReleaseOutcome.UNKNOWN]: "unknown",
};

/** A release's answer as the caller gets it. */
function releaseResult(response: SessionResponse): ReleaseResult {
  if (response.kind.case !== "released") throw new RateQueueError("INTERNAL", `unexpected answer '${response.kind.case}' to a release`);
  return releaseResults[response.kind.value.outcome] ?? "unknown";
}

/** A release no server answered within the lease's TTL: by then the server has freed the slot anyway. */
const releaseGiveUp: GiveUp = {
  withdraw: false,
  reason: (request, ttlMs) =>
    new RateQueueError(
      "UNAVAILABLE",
      `no server answered the release of ${request.kind.case === "release" ? request.kind.value.leaseId : ""} within its TTL (${ttlMs} ms); the server frees the slot at its TTL`,
    ),
};

/** The options of an acquire without any. */
const noOptions: AcquireOptions = Object.freeze({});

/**
 * Rejects what cannot even be encoded on the wire (the server checks the
 * ranges); messages follow the server's "field: rule" form.
 */
function checkAcquireOptions({ load, priority, timeoutMs, key }: AcquireOptions): void {
  const invalid = (rule: string) => new RateQueueError("INVALID_ARGUMENT", rule);
  if (load !== undefined && !Number.isFinite(load)) throw invalid(`load: must be a finite number, got ${load}`);
  if (priority !== undefined && !(Number.isInteger(priority) && Math.abs(priority) < 2 ** 31)) {
    throw invalid(`priority: must be an integer, got ${priority}`);
  }
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
    throw invalid(`timeoutMs: must be a finite number of ms >= 0, got ${timeoutMs}`);
  }
  if (key !== undefined && typeof key !== "string") throw invalid(`key: must be a string, got ${typeof key}`);
  // A missing customer id must not silently skip its quota (the Python and Go clients refuse it too).
  if (key === "") throw invalid("key: must not be empty; leave it out to acquire the resource itself");
}

/** Observes the provider's answer an error carries, found by its shape (no dependency on any HTTP client). */
function observeFailure(lease: Lease, err: unknown): void {
  if (typeof err !== "object" || err === null) return;
  const e = err as { status?: unknown; statusCode?: unknown; headers?: unknown; response?: { status?: unknown; headers?: unknown } | null };
  const status = [e.status, e.statusCode, e.response?.status].find((s): s is number => typeof s === "number");
  if (status === undefined) return;
  const headers = [e.headers, e.response?.headers].find((h) => typeof h === "object" && h !== null) as HeadersInput | undefined;
  lease.observe(headers ?? {}, status);
}

/** Creates a client. It connects on first use. */
export function createClient(options: ClientOptions = {}): RateQueueClient {
  return new Client(options);
}

class HeldLease implements Lease {
  actualLoad?: number;
  /** Made when first asked for: most leases are released without anyone looking at their signal. */
  private controller: AbortController | undefined;
  /** Why the lease was lost, when it was lost before anyone asked for its signal. */
  private lostWith: RateQueueError | undefined;
  private released: Promise<ReleaseResult> | undefined;
  /** What the provider said, merged; made by the first report or observe. */
  private feedback: ProviderFeedback | undefined;

  constructor(
    private readonly client: Client,
    readonly id: string,
    readonly resource: string,
    readonly load: number,
    readonly waitedMs: number,
    readonly grantedAt: number,
    /** The TTL heartbeats extend by, ms. */
    readonly ttlMs: number,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.lostWith !== undefined) this.controller.abort(this.lostWith);
    }
    return this.controller.signal;
  }

  lost(reason: RateQueueError): void {
    if (this.controller !== undefined) this.controller.abort(reason);
    else this.lostWith ??= reason;
  }

  report(feedback: ProviderFeedback): void {
    checkFeedback(feedback);
    if (this.released === undefined) mergeFeedback((this.feedback ??= {}), feedback);
  }

  observe(headers: HeadersInput, status?: number): void {
    if (this.released === undefined) mergeFeedback((this.feedback ??= {}), parseRateLimitHeaders(headers, status));
  }

  release(options?: { actualLoad?: number; feedback?: ProviderFeedback }): Promise<ReleaseResult> {
    if (this.released !== undefined) return this.released;
    // Feedback that cannot be encoded rejects this call; the lease stays held for a correct one.
    try {
      if (options?.feedback !== undefined) this.report(options.feedback);
    } catch (err) {
      return Promise.reject(err);
    }
    const feedback = this.feedback === undefined || isEmptyFeedback(this.feedback) ? undefined : this.feedback;
    return (this.released = this.client.release(this, options?.actualLoad ?? this.actualLoad, feedback));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

class Client implements RateQueueClient {
  private readonly connection: Connection;
  private readonly session: Session;
  private readonly leases = new Map<string, HeldLease>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatEveryMs = 0;
  private heartbeatsInFlight = 0;

  constructor(options: ClientOptions) {
    this.connection = new Connection(options);
    this.session = new Session(
      this.connection,
      {
        leaseExpired: (leaseId) =>
          this.forget(leaseId, new RateQueueError("DEADLINE_EXCEEDED", "the server expired the lease: it was not heartbeated within its TTL")),
        refused: (err) => {
          for (const id of [...this.leases.keys()]) {
            this.forget(id, new RateQueueError(err.code, `the server refused the API key, so the lease cannot be kept: ${err.message}`));
          }
        },
        opened: () => this.heartbeat(true),
        holdsLeases: () => this.leases.size > 0,
      },
      { reconnectTimeoutMs: options.reconnectTimeoutMs ?? reconnectTimeoutMs },
    );
  }

  acquire(resource: string, options: AcquireOptions = noOptions): Promise<Lease> {
    const { signal, timeoutMs } = options;
    // A literal, as create() would make it (without its reflection, on every acquire).
    const request: AcquireRequest = { $typeName: "ratequeue.v1.AcquireRequest", resource, lane: options.lane ?? "", key: options.key ?? "" };
    // What cannot be sent rejects, as from an async function.
    try {
      signal?.throwIfAborted();
      checkAcquireOptions(options);
      if (options.load !== undefined) request.load = options.load;
      if (options.priority !== undefined) request.priority = options.priority;
      if (timeoutMs !== undefined) request.timeout = durationFromMs(Math.max(0, timeoutMs));
    } catch (err) {
      return Promise.reject(err);
    }
    const kind = { case: "acquire", value: request } as const;
    // The server answers a timeout itself; giving up 2 s later only covers a server that cannot be reached.
    const sent =
      timeoutMs === undefined
        ? this.session.request(kind, this.granted)
        : this.session.request(kind, this.granted, this.acquireGiveUp, timeoutMs + timeoutSlackMs);
    if (signal === undefined) return sent.answer;
    const id = sent.request.requestId;
    const onAbort = () => this.session.cancel(id, new RateQueueError("CANCELLED", "the acquire was aborted by its signal"));
    signal.addEventListener("abort", onAbort, { once: true });
    const stop = () => signal.removeEventListener("abort", onAbort);
    sent.answer.then(stop, stop);
    return sent.answer;
  }

  /** A grant's answer as a held lease (made as the answer comes, so no step is left between). */
  private readonly granted = (response: SessionResponse): HeldLease => {
    if (response.kind.case !== "granted" || response.kind.value.lease === undefined) {
      throw new RateQueueError("INTERNAL", `unexpected answer '${response.kind.case}' to an acquire`);
    }
    const { lease, waitTime } = response.kind.value;
    const held = new HeldLease(
      this,
      lease.leaseId,
      lease.resource,
      lease.load,
      waitTime === undefined ? 0 : durationMs(waitTime),
      lease.grantTime === undefined ? Date.now() : timestampMs(lease.grantTime),
      lease.ttl === undefined ? 30_000 : durationMs(lease.ttl),
    );
    this.hold(held);
    return held;
  };

  /** An acquire with a timeout the server did not answer 2 s past it: a key refusal seen meanwhile is the real reason. */
  private readonly acquireGiveUp: GiveUp = {
    withdraw: true,
    reason: (request, afterMs) =>
      this.session.refusal ??
      new RateQueueError(
        "DEADLINE_EXCEEDED",
        `no lease on '${request.kind.case === "acquire" ? request.kind.value.resource : ""}' within ${afterMs - timeoutSlackMs} ms (the server could not be reached)`,
      ),
  };

  async withLease<T>(resource: string, options: AcquireOptions, fn: (lease: Lease) => Promise<T> | T): Promise<T> {
    const lease = await this.acquire(resource, options);
    let result: T;
    try {
      result = await fn(lease);
    } catch (err) {
      observeFailure(lease, err);
      await lease.release().catch(() => {});
      throw err;
    }
    await lease.release();
    return result;
  }

  async close(): Promise<void> {
    const held = [...this.leases.values()];
    await Promise.allSettled(held.map((lease) => lease.release()));
    clearInterval(this.heartbeatTimer);
    this.session.close();
    this.connection.close();
  }

  async report(resource: string, feedback: ProviderFeedback): Promise<Date | undefined> {
    checkFeedback(feedback);
    const value = create(ReportRequestSchema, { resource, feedback: feedbackToMessage(feedback) });
    const response = await this.session.request({ case: "report", value }).answer;
    if (response.kind.case !== "reported") throw new RateQueueError("INTERNAL", `unexpected answer '${response.kind.case}' to a report`);
    return pausedUntilDate(response.kind.value.pausedUntil);
  }

  /** Releases a lease (HeldLease.release makes it once); given up on at the lease's TTL. */
  release(lease: HeldLease, actualLoad: number | undefined, feedback: ProviderFeedback | undefined): Promise<ReleaseResult> {
    this.leases.delete(lease.id);
    const value: ReleaseRequest = { $typeName: "ratequeue.v1.ReleaseRequest", leaseId: lease.id };
    if (actualLoad !== undefined) value.actualLoad = actualLoad;
    try {
      if (feedback !== undefined) value.feedback = feedbackToMessage(feedback);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.session.request({ case: "release", value }, releaseResult, releaseGiveUp, lease.ttlMs).answer;
  }

  private hold(lease: HeldLease): void {
    this.leases.set(lease.id, lease);
    // Heartbeat three times per TTL of the shortest-lived lease held.
    const every = Math.max(50, Math.floor(lease.ttlMs / 3));
    if (this.heartbeatTimer === undefined || every < this.heartbeatEveryMs) {
      clearInterval(this.heartbeatTimer);
      this.heartbeatEveryMs = every;
      this.heartbeatTimer = setInterval(() => this.heartbeat(), every);
      this.heartbeatTimer.unref();
    }
  }

  private forget(leaseId: string, reason: RateQueueError): void {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return;
    this.leases.delete(leaseId);
    lease.lost(reason);
  }

  /**
   * Extends every held lease. On a new stream (`reattach`) it moves them to
   * it, and sends one heartbeat even with none held: its answer shows that
   * the stream works.
   */
  private heartbeat(reattach = false): void {
    if (this.leases.size === 0 && this.heartbeatTimer !== undefined) {
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = undefined;
    }
    // One round at a time: while a stream is down, do not pile them up.
    if (!reattach && (this.heartbeatsInFlight > 0 || this.leases.size === 0)) return;
    const ids = [...this.leases.keys()];
    for (let i = 0; i < ids.length || (i === 0 && reattach); i += maxLeaseIdsPerHeartbeat) {
      const value = create(HeartbeatRequestSchema, { leaseIds: ids.slice(i, i + maxLeaseIdsPerHeartbeat) });
      this.heartbeatsInFlight++;
      const answer = this.session.request({ case: "heartbeat", value }).answer;
      answer.finally(() => this.heartbeatsInFlight--).catch(() => {});
      answer.then(
        (response) => {
          if (response.kind.case !== "heartbeat") return;
          for (const state of response.kind.value.leases) {
            if (!state.held) this.forget(state.leaseId, new RateQueueError("NOT_FOUND", "the server no longer holds the lease (it expired, or a server restarted without it)"));
          }
        },
        () => {}, // A dropped stream re-sends it; a closed client needs none.
      );
    }
  }
}
