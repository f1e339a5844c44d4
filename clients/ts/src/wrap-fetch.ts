// wrapFetch: a fetch that takes a lease for every HTTP request to an LLM
// provider, tells ratequeue what the provider answered, and reconciles the
// tokens the call really used. It is the `fetch` option of the official
// `openai` and `@anthropic-ai/sdk` packages, so the SDKs' own retries wait
// for the fleet-wide pause too.
import type { Lease, RateQueueClient } from "./client.js";
import { throttledStatuses } from "./feedback.js";

/** The signature of `fetch`, as the `openai` and `@anthropic-ai/sdk` packages declare their `fetch` option. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface WrapFetchOptions {
  /** The resource every request spends. */
  resource: string;
  /**
   * The load to acquire, from the request's parsed JSON body (or the Request
   * itself when the body is not JSON). Default: the prompt's characters / 4
   * (OpenAI `messages[].content`, Anthropic `system` and `messages[].content`,
   * strings or parts with `text`) plus `max_completion_tokens` or
   * `max_tokens`; at least 1. Plug in a real tokenizer here.
   */
  estimate?: (body: unknown) => number | Promise<number>;
  /**
   * The key inside `resource` that each request is charged to, such as a
   * customer id (see AcquireOptions.key): the lease is on
   * `RESOURCE/KEY`, so each key spends its own quota inside the shared
   * limit. A string for every request, or a function of the request, given
   * what `estimate` is given and the Request itself (to read a header):
   * `key: (body) => (body as { user?: string }).user` or
   * `key: (_, request) => request.headers.get("x-customer-id")`. Absent,
   * null or undefined: the request is charged to `resource` itself; an
   * empty key fails INVALID_ARGUMENT, as in acquire.
   */
  key?: string | ((body: unknown, request: Request) => string | null | undefined | Promise<string | null | undefined>);
  /** Higher is served first within a lane. Default 10. */
  priority?: number;
  /** The lane to wait in. Default: the resource's default lane. */
  lane?: string;
  /**
   * Send the provider's answer (429s, rate-limit headers) with each release.
   * Default true. False still reconciles tokens from usage but tells
   * ratequeue nothing about the provider: a refused call keeps its estimate
   * charged, and nothing pauses.
   */
  feedback?: boolean;
  /** The fetch that sends the requests. Default: globalThis.fetch. */
  fetch?: FetchFunction;
}

/** Tokens a response's `usage` reported; the latest value of each field wins. */
interface Usage {
  input?: number;
  output?: number;
  total?: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const count = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined);

/** Code points of the text of a message content: a string, or parts carrying `text`. */
function textLength(content: unknown): number {
  let n = 0;
  const add = (s: string) => {
    for (const _ of s) n++;
  };
  if (typeof content === "string") add(content);
  else if (Array.isArray(content)) for (const part of content) if (isRecord(part) && typeof part.text === "string") add(part.text);
  return n;
}

/**
 * The default load of a request body: prompt characters / 4 plus the most
 * tokens the answer may take; at least 1.
 */
export function estimateTokens(body: unknown): number {
  if (!isRecord(body)) return 1;
  let chars = textLength(body.system);
  if (Array.isArray(body.messages)) for (const m of body.messages) if (isRecord(m)) chars += textLength(m.content);
  const answer = count(body.max_completion_tokens) ?? count(body.max_tokens) ?? 0;
  return Math.max(1, Math.ceil(chars / 4) + answer);
}

/** Reads a `usage` object (OpenAI: prompt/completion/total_tokens; Anthropic: input/output_tokens) into `into`. */
function readUsage(usage: unknown, into: Usage): void {
  if (!isRecord(usage)) return;
  const input = count(usage.prompt_tokens) ?? count(usage.input_tokens);
  const output = count(usage.completion_tokens) ?? count(usage.output_tokens);
  const total = count(usage.total_tokens);
  if (input !== undefined) into.input = input;
  if (output !== undefined) into.output = output;
  if (total !== undefined) into.total = total;
}

/** The usage of one JSON body or SSE event: OpenAI's `usage`, Anthropic's `message.usage`, the Responses API's `response.usage`. */
function readEventUsage(data: unknown, into: Usage): void {
  if (!isRecord(data)) return;
  readUsage(data.usage, into);
  if (isRecord(data.message)) readUsage(data.message.usage, into);
  if (isRecord(data.response)) readUsage(data.response.usage, into);
}

function usageTotal(u: Usage): number | undefined {
  if (u.total !== undefined) return u.total;
  if (u.input === undefined && u.output === undefined) return undefined;
  return (u.input ?? 0) + (u.output ?? 0);
}

/** Server-sent events, fed in pieces: each event's data goes to `onData`. */
class SseReader {
  private buffer = "";
  private data: string[] = [];

  constructor(private readonly onData: (data: string) => void) {}

  push(text: string): void {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    // The last piece may be an unfinished line (a lone "\r" may yet be followed by "\n": splitting again is harmless).
    this.buffer = lines.pop()!;
    for (const line of lines) this.line(line);
  }

  end(): void {
    if (this.buffer !== "") this.line(this.buffer);
    this.buffer = "";
    this.line("");
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length > 0) this.onData(this.data.join("\n"));
      this.data = [];
    } else if (line.startsWith("data:")) {
      this.data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    }
  }
}

/**
 * The body, passed through unchanged, with every SSE event's usage read into
 * `usage`; `done` runs once, when the body ends, fails or is cancelled.
 */
function watchEvents(body: ReadableStream<Uint8Array>, usage: Usage, done: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const events = new SseReader((data) => {
    // Only the few events that carry usage are worth parsing.
    if (!data.includes('"usage"')) return;
    try {
      readEventUsage(JSON.parse(data), usage);
    } catch {
      // Not JSON: nothing to read.
    }
  });
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done();
  };
  // A pull source rather than a TransformStream: a cancel by the reader
  // reaches `cancel` below on every Node version (a transformer's cancel
  // hook is recent).
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          finish();
          controller.error(err);
          return;
        }
        if (chunk.done) {
          events.push(decoder.decode());
          events.end();
          finish();
          controller.close();
          return;
        }
        events.push(decoder.decode(chunk.value, { stream: true }));
        controller.enqueue(chunk.value);
      },
      async cancel(reason) {
        finish();
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** The request body as text, when it is text or bytes; undefined for streams, forms and no body. */
async function bodyText(input: string | URL | Request, init: RequestInit | undefined): Promise<string | undefined> {
  const body = init?.body;
  if (typeof body === "string") return body;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    const bytes = body instanceof ArrayBuffer ? new Uint8Array(body) : new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return new TextDecoder().decode(bytes);
  }
  if (body == null && input instanceof Request && input.body !== null && !input.bodyUsed) return input.clone().text();
  return undefined;
}

/**
 * What `estimate` and `key` are given: `subject()` is the parsed JSON body,
 * or the request itself when the body is not JSON; `request()` the request.
 */
interface RequestView {
  json: unknown;
  parsed: boolean;
  subject(): unknown;
  request(): Request;
}

async function viewRequest(input: string | URL | Request, init: RequestInit | undefined): Promise<RequestView> {
  let json: unknown;
  let parsed = false;
  const text = await bodyText(input, init);
  if (text !== undefined) {
    try {
      json = JSON.parse(text);
      parsed = true;
    } catch {
      // Not JSON.
    }
  }
  // Made only when asked for. A stream body can be read only once: the request comes without it.
  let request: Request | undefined;
  const streamed = init?.body instanceof ReadableStream;
  const requestOf = () => (request ??= input instanceof Request && init === undefined ? input : new Request(input, streamed ? { ...init, body: null } : init));
  return { json, parsed, subject: () => (parsed ? json : requestOf()), request: requestOf };
}

async function estimateLoad(view: RequestView, estimate: WrapFetchOptions["estimate"]): Promise<number> {
  if (estimate === undefined) return view.parsed ? estimateTokens(view.json) : 1;
  return estimate(view.subject());
}

async function keyOf(view: RequestView, key: WrapFetchOptions["key"]): Promise<string | undefined> {
  return (typeof key === "function" ? await key(view.subject(), view.request()) : key) ?? undefined;
}

/** The response of `fetch`, with a new body: status, headers and url kept. */
function withBody(response: Response, body: ReadableStream<Uint8Array>): Response {
  const wrapped = new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  Object.defineProperty(wrapped, "url", { value: response.url });
  return wrapped;
}

/**
 * Returns a `fetch` that takes a lease on `options.resource` for every
 * request (on its keyed child `RESOURCE/KEY` when `options.key` gives a
 * key), for use as the `fetch` option of the `openai` and
 * `@anthropic-ai/sdk` clients:
 *
 * ```ts
 * const openai = new OpenAI({ fetch: wrapFetch(rq, { resource: "openai-gpt4" }) });
 * ```
 *
 * Each call acquires (load: `estimate`), sends the request, reads the
 * answer's status and rate-limit headers into the lease
 * (`lease.observe`), and releases with the tokens the body's `usage` gives:
 * a JSON body is read from a clone; an SSE stream is watched as the caller
 * reads it and released when it ends or is cancelled (so the lease is held
 * until the caller reads or cancels the body). A 429, 503 or 529 releases at
 * once, throttled, with no actual load (the server refunds it and pauses the
 * resource fleet-wide; the SDK's retry waits in the queue). A fetch that
 * throws releases the lease and rethrows. An abort of the request's signal
 * also ends its wait for a lease, with the signal's reason.
 */
export function wrapFetch(client: RateQueueClient, options: WrapFetchOptions): FetchFunction {
  const { resource, estimate, priority, lane } = options;
  const feedback = options.feedback ?? true;
  const send = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  return async (input, init) => {
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    signal?.throwIfAborted();
    const view = await viewRequest(input, init);
    const load = await estimateLoad(view, estimate);
    const key = await keyOf(view, options.key);
    let lease: Lease;
    try {
      lease = await client.acquire(resource, { load, priority, lane, key, signal });
    } catch (err) {
      // The SDKs recognise their own abort by its reason.
      if (signal?.aborted) throw signal.reason;
      throw err;
    }
    const release = (actualLoad?: number) => void lease.release({ actualLoad }).catch(() => {}); // the server frees the slot at its TTL

    let response: Response;
    try {
      response = await send(input, init);
    } catch (err) {
      release();
      throw err;
    }
    if (feedback) lease.observe(response.headers, response.status);

    // Refused or failed: nothing to reconcile. A throttled release without
    // an actual load is refunded.
    if (throttledStatuses.has(response.status) || !response.ok || response.body === null) {
      release();
      return response;
    }
    const usage: Usage = {};
    const type = response.headers.get("content-type") ?? "";
    if (type.includes("text/event-stream")) {
      return withBody(response, watchEvents(response.body, usage, () => release(usageTotal(usage))));
    }
    if (type.includes("json")) {
      response
        .clone()
        .text()
        .then(
          (text) => readEventUsage(JSON.parse(text), usage),
          () => {},
        )
        .catch(() => {}) // not JSON after all
        .finally(() => release(usageTotal(usage)));
      return response;
    }
    release();
    return response;
  };
}
