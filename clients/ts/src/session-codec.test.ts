// The hand-written codec of the Session stream's messages (@ratequeue/proto,
// session-codec.ts) against protobuf-es, on random messages both ways: the
// same bytes as toBinary, the same messages (or the same error) as
// fromBinary, for valid, unusual and damaged input; and the hot messages
// never fall back to protobuf-es. It lives here because the client and the
// server both speak through it and this directory's tests run with the client.
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  decodeSessionRequest,
  decodeSessionResponse,
  encodeSessionRequest,
  encodeSessionResponse,
  requestSizeBound,
  responseSizeBound,
  sessionCodecFallbacks,
  SessionRequestSchema,
  SessionResponseSchema,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import fc from "fast-check";
import { expect, test } from "vitest";

type RequestInit = MessageInitShape<typeof SessionRequestSchema>;
type ResponseInit = MessageInitShape<typeof SessionResponseSchema>;

// ---- Values, with the edges weighted in ----

const text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  fc.constantFrom("", "bench", "openai-gpt4/tenant-7", "é", "\u{1F600}", "\uD800", "a\uDFFFb", "\uFEFFbom"),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ minLength: 120, maxLength: 400 }),
);
const uint64 = fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, (1n << 49n) - 1n, 1n << 49n, (1n << 64n) - 1n));
const int64 = fc.oneof(fc.bigInt({ min: -1000n, max: 2_000_000_000n }), fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }));
const int32 = fc.oneof(fc.integer({ min: -5, max: 20 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
const double = fc.oneof(fc.double(), fc.constantFrom(0, -0, 1, 0.5, NaN, Infinity, -Infinity, 1e300));
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 2 });
const secondsNanos = fc.record({ seconds: int64, nanos: int32 });

const feedback = fc.record(
  {
    throttled: fc.boolean(),
    retryAfter: secondsNanos,
    requests: fc.record({ limit: double, limitPeriod: secondsNanos, remaining: double }, { requiredKeys: [] }),
    load: fc.record({ limit: double, reset: secondsNanos }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

const acquire = fc.record({ resource: text, load: maybe(double), priority: maybe(int32), lane: text, timeout: maybe(secondsNanos), key: text });
const release = fc.record({ leaseId: text, actualLoad: maybe(double), feedback: maybe(feedback) });

const requestKind = (inBatch: boolean): fc.Arbitrary<RequestInit["kind"]> =>
  fc.oneof(
    { weight: 4, arbitrary: acquire.map((value) => ({ case: "acquire" as const, value })) },
    { weight: 4, arbitrary: release.map((value) => ({ case: "release" as const, value })) },
    fc.record({ acquireRequestId: uint64 }).map((value) => ({ case: "cancel" as const, value })),
    fc.record({ leaseIds: fc.array(text, { maxLength: 5 }) }).map((value) => ({ case: "heartbeat" as const, value })),
    fc.record({ resource: text, feedback: maybe(feedback) }).map((value) => ({ case: "report" as const, value })),
    fc.constant({ case: undefined }),
    ...(inBatch ? [] : [fc.array(request(true), { maxLength: 6 }).map((requests) => ({ case: "batch" as const, value: { requests } }))]),
  );
function request(inBatch: boolean): fc.Arbitrary<RequestInit> {
  return fc.record({ requestId: uint64, kind: requestKind(inBatch) });
}

const lease = fc.record(
  { leaseId: text, resource: text, load: double, expireTime: secondsNanos, ttl: secondsNanos, grantTime: secondsNanos },
  { requiredKeys: ["leaseId", "resource", "load"] },
);
const responseKind = (inBatch: boolean): fc.Arbitrary<ResponseInit["kind"]> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ lease: maybe(lease), waitTime: maybe(secondsNanos) }).map((value) => ({ case: "granted" as const, value })) },
    { weight: 3, arbitrary: fc.record({ outcome: int32, message: text }).map((value) => ({ case: "released" as const, value })) },
    { weight: 3, arbitrary: fc.record({ code: int32, message: text }).map((value) => ({ case: "failure" as const, value })) },
    fc.record({ leaseId: text, resource: text }).map((value) => ({ case: "leaseExpired" as const, value })),
    fc
      .record({ leases: fc.array(fc.record({ leaseId: text, held: fc.boolean(), expireTime: maybe(secondsNanos) }), { maxLength: 4 }) })
      .map((value) => ({ case: "heartbeat" as const, value })),
    fc.record({ pausedUntil: maybe(secondsNanos) }).map((value) => ({ case: "reported" as const, value })),
    fc.constant({ case: undefined }),
    ...(inBatch ? [] : [fc.array(response(true), { maxLength: 6 }).map((responses) => ({ case: "batch" as const, value: { responses } }))]),
  );
function response(inBatch: boolean): fc.Arbitrary<ResponseInit> {
  return fc.record({ requestId: uint64, kind: responseKind(inBatch) });
}

// ---- Both codecs, side by side ----

interface Codec<M> {
  schema: DescMessage;
  encode(m: M): Uint8Array;
  decode(bytes: Uint8Array): M;
}
const requests: Codec<SessionRequest> = { schema: SessionRequestSchema, encode: encodeSessionRequest, decode: decodeSessionRequest };
const responses: Codec<SessionResponse> = { schema: SessionResponseSchema, encode: encodeSessionResponse, decode: decodeSessionResponse };

/** Bytes to compare: as numbers (a readable diff), or as a hex string past a few hundred. */
const bytesOf = (b: Uint8Array) => (b.length < 500 ? [...b] : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex"));

/** What decoding gives: the message, or the error's message. */
function outcome(decode: () => unknown): { ok: unknown } | { error: string } {
  try {
    return { ok: decode() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Encodes like toBinary; decodes (from a Uint8Array and from a Buffer) like fromBinary. */
function sameBothWays<M>(codec: Codec<M>, m: M): void {
  const expected = toBinary(codec.schema, m as never);
  expect(bytesOf(codec.encode(m))).toEqual(bytesOf(expected));
  expect(codec.decode(expected)).toStrictEqual(fromBinary(codec.schema, expected));
  const buffer = Buffer.from(expected);
  expect(codec.decode(buffer)).toStrictEqual(fromBinary(codec.schema, buffer));
}

test.each([
  ["SessionRequest", requests, request(false).map((init) => create(SessionRequestSchema, init))],
  ["SessionResponse", responses, response(false).map((init) => create(SessionResponseSchema, init))],
] as const)("%s: the same bytes as toBinary, the same message as fromBinary", (_name, codec, messages) => {
  fc.assert(
    fc.property(messages as fc.Arbitrary<never>, (m) => sameBothWays(codec as Codec<never>, m)),
    { numRuns: 3000 },
  );
});

/** A few bytes that protobuf-es reads as unknown fields, duplicates or junk. */
const damage = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant("append" as const), bytes: fc.constantFrom([0x08, 0x05], [0xa8, 0x06, 0x01], [0x12, 0x00], [0x1a, 0x02, 0x08, 0x01], [0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]) }),
);

type Damage = typeof damage extends fc.Arbitrary<infer D> ? D : never;

function damaged(bytes: Uint8Array, d: Damage): Uint8Array {
  const b = [...bytes];
  switch (d.kind) {
    case "flip":
      if (b.length > 0) b[d.at % b.length] = d.value;
      break;
    case "cut":
      b.length = b.length === 0 ? 0 : d.at % b.length;
      break;
    case "insert":
      b.splice(d.at % (b.length + 1), 0, ...d.bytes);
      break;
    case "append":
      b.push(...d.bytes);
      break;
  }
  return new Uint8Array(b);
}

test.each([
  ["SessionRequest", requests, request(false).map((init) => create(SessionRequestSchema, init))],
  ["SessionResponse", responses, response(false).map((init) => create(SessionResponseSchema, init))],
] as const)("%s: damaged or unusual bytes decode as fromBinary decodes them, or fail with its error", (_name, codec, messages) => {
  fc.assert(
    fc.property(messages as fc.Arbitrary<never>, fc.array(damage, { minLength: 1, maxLength: 3 }), (m, damages) => {
      let bytes: Uint8Array = toBinary(codec.schema, m);
      for (const d of damages) bytes = damaged(bytes, d);
      const got = outcome(() => codec.decode(bytes));
      expect(got).toStrictEqual(outcome(() => fromBinary(codec.schema, bytes)));
      // What decodes encodes back as protobuf-es encodes it (unknown fields included).
      if ("ok" in got) expect(bytesOf(codec.encode(got.ok as never))).toEqual(bytesOf(toBinary(codec.schema, got.ok as never)));
    }),
    { numRuns: 3000 },
  );
});

test("values protobuf-es refuses or coerces are left to protobuf-es", () => {
  const odd: RequestInit[] = [
    { requestId: 1n, kind: { case: "acquire", value: { resource: "r", priority: 1.5 } } },
    { requestId: 1n, kind: { case: "acquire", value: { resource: "r", priority: 2 ** 31 } } },
    { requestId: 1n, kind: { case: "acquire", value: { resource: "r", timeout: { seconds: 1n << 63n } } } },
  ];
  for (const init of odd) {
    const m = create(SessionRequestSchema, init);
    expect(outcome(() => bytesOf(encodeSessionRequest(m)))).toStrictEqual(outcome(() => bytesOf(toBinary(SessionRequestSchema, m))));
  }
  // A negative request id, a string where a number goes: protobuf-es's own answer.
  const negative = create(SessionRequestSchema, { requestId: 1n });
  (negative as { requestId: unknown }).requestId = -1n;
  expect(outcome(() => encodeSessionRequest(negative))).toStrictEqual(outcome(() => toBinary(SessionRequestSchema, negative)));
  const withUnknown = create(SessionResponseSchema, { requestId: 3n, kind: { case: "failure", value: { code: 5, message: "x" } } });
  withUnknown.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([7]) }];
  expect(bytesOf(encodeSessionResponse(withUnknown))).toEqual(bytesOf(toBinary(SessionResponseSchema, withUnknown)));
});

test("the hot messages never fall back to protobuf-es", () => {
  const hotRequest = fc.record({
    requestId: fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
    kind: fc.oneof(
      acquire.map((value) => ({ case: "acquire" as const, value })),
      fc.record({ leaseId: text, actualLoad: maybe(double) }).map((value) => ({ case: "release" as const, value })),
      fc.record({ acquireRequestId: uint64 }).map((value) => ({ case: "cancel" as const, value })),
    ),
  });
  const hotResponse = fc.record({
    requestId: uint64,
    kind: fc.oneof(
      fc.record({ lease: maybe(lease), waitTime: maybe(secondsNanos) }).map((value) => ({ case: "granted" as const, value })),
      fc.record({ outcome: int32, message: text }).map((value) => ({ case: "released" as const, value })),
      fc.record({ code: int32, message: text }).map((value) => ({ case: "failure" as const, value })),
      fc.record({ leaseId: text, resource: text }).map((value) => ({ case: "leaseExpired" as const, value })),
    ),
  });
  const before = { ...sessionCodecFallbacks };
  fc.assert(
    fc.property(fc.array(hotRequest, { minLength: 1, maxLength: 5 }), fc.array(hotResponse, { minLength: 1, maxLength: 5 }), (reqs, ress) => {
      const batch = create(SessionRequestSchema, { kind: { case: "batch", value: { requests: reqs } } });
      for (const m of [...reqs.map((r) => create(SessionRequestSchema, r)), batch]) decodeSessionRequest(encodeSessionRequest(m));
      const answers = create(SessionResponseSchema, { kind: { case: "batch", value: { responses: ress } } });
      for (const m of [...ress.map((r) => create(SessionResponseSchema, r)), answers]) decodeSessionResponse(encodeSessionResponse(m));
    }),
    { numRuns: 1000 },
  );
  expect(sessionCodecFallbacks).toEqual(before);
});

test("a batch of 1000 with long bodies: lengths of several bytes are written and read back", () => {
  const requestsInit = Array.from({ length: 1000 }, (_, i) => ({
    requestId: BigInt(i + 1),
    kind: { case: "acquire" as const, value: { resource: "r".repeat(200 + (i % 50)), key: `k${i}` } },
  }));
  const batch = create(SessionRequestSchema, { kind: { case: "batch", value: { requests: requestsInit } } });
  sameBothWays(requests, batch);
});

test("lengths around each varint boundary (1 to 4 bytes) are moved and written right", () => {
  for (const boundary of [1 << 7, 1 << 14, 1 << 21]) {
    for (let n = boundary - 5; n <= boundary; n++) {
      const one = { requestId: 1n, kind: { case: "acquire" as const, value: { resource: "x".repeat(n) } } };
      sameBothWays(requests, create(SessionRequestSchema, one));
      sameBothWays(requests, create(SessionRequestSchema, { kind: { case: "batch", value: { requests: [one, one] } } }));
      const failure = { requestId: 2n, kind: { case: "failure" as const, value: { code: 3, message: "é".repeat(n >> 1) } } };
      sameBothWays(responses, create(SessionResponseSchema, { kind: { case: "batch", value: { responses: [failure] } } }));
    }
  }
});

test("the size bounds batches are cut by are never below a message's encoded size in a batch", () => {
  /** A message's bytes inside a batch: its tag, its length and itself. */
  const inBatch = (n: number) => 1 + (n < 1 << 7 ? 1 : n < 1 << 14 ? 2 : n < 1 << 21 ? 3 : 4) + n;
  fc.assert(
    fc.property(request(true), response(true), (req, res) => {
      const r = create(SessionRequestSchema, req);
      expect(requestSizeBound(r)).toBeGreaterThanOrEqual(inBatch(encodeSessionRequest(r).length));
      const a = create(SessionResponseSchema, res);
      expect(responseSizeBound(a)).toBeGreaterThanOrEqual(inBatch(encodeSessionResponse(a).length));
    }),
    { numRuns: 3000 },
  );
});
