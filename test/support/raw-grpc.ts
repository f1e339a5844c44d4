// A bare grpc-js client over our generated contract, for tests that send what
// the friendly client refuses to: out-of-range fields, raw bytes, odd metadata.
import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Client, credentials, Metadata, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import {
  AdminService,
  authorizationMetadataKey,
  grpcServiceDefinition,
  namespaceMetadataKey,
  RateQueueService,
  SessionRequestSchema,
  type SessionResponse,
} from "@ratequeue/proto";

export const rqMethods = grpcServiceDefinition(RateQueueService);
export const adminMethods = grpcServiceDefinition(AdminService);

export interface RawOptions {
  key?: string;
  /** Root keys pick the namespace they act in. */
  namespace?: string;
  creds?: ChannelCredentials;
  channelOptions?: Record<string, unknown>;
}

/** Outcome of a unary call: the response or the status. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; code: number; message: string };

export class RawClient {
  readonly client: Client;

  constructor(
    target: string,
    private readonly options: RawOptions = {},
  ) {
    this.client = new Client(target, options.creds ?? credentials.createInsecure(), options.channelOptions ?? {});
  }

  metadata(): Metadata {
    const md = new Metadata();
    if (this.options.key !== undefined) md.set(authorizationMetadataKey, `Bearer ${this.options.key}`);
    if (this.options.namespace !== undefined) md.set(namespaceMetadataKey, this.options.namespace);
    return md;
  }

  /** A unary call by path with (de)serialisers of the method definition. */
  call<T>(
    method: { path: string; requestSerialize: (v: never) => Buffer; responseDeserialize: (b: Buffer) => unknown },
    request: unknown,
    deadlineMs = 10_000,
  ): Promise<Outcome<T>> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize as (v: unknown) => Buffer,
        method.responseDeserialize as (b: Buffer) => T,
        request,
        this.metadata(),
        { deadline: Date.now() + deadlineMs },
        (err: ServiceError | null, value?: T) =>
          resolve(err ? { ok: false, code: err.code, message: err.details } : { ok: true, value: value as T }),
      );
    });
  }

  /** A unary call sending raw bytes as the request body. */
  callBytes(path: string, body: Buffer, deadlineMs = 10_000): Promise<Outcome<Buffer>> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        this.metadata(),
        { deadline: Date.now() + deadlineMs },
        (err: ServiceError | null, value?: Buffer) =>
          resolve(err ? { ok: false, code: err.code, message: err.details } : { ok: true, value: value! }),
      );
    });
  }

  /** Opens a Session stream; answers are collected in order. */
  session(): RawSession {
    return new RawSession(this);
  }

  close(): void {
    this.client.close();
  }
}

export class RawSession {
  readonly responses: SessionResponse[] = [];
  /** The status the stream ended with, once it ended. */
  status: { code: number; message: string } | undefined;
  readonly stream;
  private waiters: (() => void)[] = [];

  constructor(raw: RawClient) {
    const m = rqMethods.session;
    this.stream = raw.client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, raw.metadata(), {});
    this.stream.on("data", (r: SessionResponse) => {
      this.responses.push(r);
      this.wake();
    });
    this.stream.on("error", (e: ServiceError) => {
      this.status = { code: e.code, message: e.details };
      this.wake();
    });
    this.stream.on("status", (s: { code: number; details: string }) => {
      this.status ??= { code: s.code, message: s.details };
      this.wake();
    });
  }

  send(init: MessageInitShape<typeof SessionRequestSchema>): void {
    this.stream.write(create(SessionRequestSchema, init));
  }

  /** Resolves with the first answer to `requestId`. */
  async answer(requestId: bigint, timeoutMs = 10_000): Promise<SessionResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.responses.find((r) => r.requestId === requestId);
      if (found) return found;
      if (this.status !== undefined) throw new Error(`stream ended (${this.status.code} ${this.status.message}) before an answer to ${requestId}`);
      if (Date.now() > deadline) throw new Error(`no answer to ${requestId} within ${timeoutMs} ms`);
      await this.next(deadline - Date.now());
    }
  }

  /** Resolves with the n-th answer (1-based), in the order the server sent them. */
  async nth(n: number, timeoutMs = 10_000): Promise<SessionResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.responses.length < n) {
      if (this.status !== undefined) throw new Error(`stream ended (${this.status.code} ${this.status.message}) after ${this.responses.length} answers`);
      if (Date.now() > deadline) throw new Error(`only ${this.responses.length} answers within ${timeoutMs} ms, waiting for ${n}`);
      await this.next(deadline - Date.now());
    }
    return this.responses[n - 1]!;
  }

  /** Resolves with the stream's final status. */
  async ended(timeoutMs = 10_000): Promise<{ code: number; message: string }> {
    const deadline = Date.now() + timeoutMs;
    while (this.status === undefined) {
      if (Date.now() > deadline) throw new Error(`stream still open after ${timeoutMs} ms`);
      await this.next(deadline - Date.now());
    }
    return this.status;
  }

  end(): void {
    this.stream.end();
  }

  private next(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Re-exported so tests build messages with one import. */
export { create };
export type { DescMessage };
