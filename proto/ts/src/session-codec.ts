/**
 * A hand-written binary codec for the Session stream's hot messages:
 * SessionRequest (acquire, release, cancel, batch) and SessionResponse
 * (granted, released, failure, lease_expired, batch). It gives exactly what
 * protobuf-es gives: the same bytes from toBinary, the same message objects
 * from fromBinary (session-codec.test.ts checks both ways on random messages).
 *
 * protobuf-es reads and writes through reflection, which costs more than
 * the rest of a session message's work on either end. This codec covers
 * only the common shapes and hands everything else to protobuf-es: other
 * kinds inside a message (heartbeat, report, feedback) are encoded and
 * decoded by protobuf-es in place, and anything unusual (unknown fields,
 * a field seen twice, wrong wire types, values protobuf-es would refuse or
 * coerce, malformed bytes) makes the whole message go through protobuf-es,
 * which then answers or throws as it always does.
 */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import {
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  ProviderFeedbackSchema,
  ReportRequestSchema,
  ReportResponseSchema,
  SessionRequestSchema,
  SessionResponseSchema,
  type AcquireRequest,
  type AcquireResponse,
  type Failure,
  type Lease,
  type LeaseExpired,
  type ReleaseRequest,
  type ReleaseResponse,
  type SessionCancel,
  type SessionRequest,
  type SessionResponse,
} from "./gen/ratequeue/v1/ratequeue_pb.js";

/** Thrown (never seen outside) where the fast path does not cover a message: protobuf-es takes it. */
const notCovered: unique symbol = Symbol("not covered by the fast path");

/** How many messages went to protobuf-es instead (tests check that the hot ones never do). */
export const sessionCodecFallbacks = { encode: 0, decode: 0 };

const VARINT = 0;
const BIT64 = 1;
const LEN = 2;
const tag = (field: number, wireType: number) => (field << 3) | wireType;

const maxUint64 = (1n << 64n) - 1n;
const minInt64 = -(1n << 63n);
const maxInt64 = (1n << 63n) - 1n;

// ---- Encoding ----

/** A growing scratch buffer, reused by every encode; finish() copies out what was written. */
class Writer {
  buf = Buffer.allocUnsafe(4096);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }

  /** A varint of an unsigned 32-bit number (a tag, a length, a non-negative int32). */
  uint32(v: number): void {
    this.ensure(5);
    const buf = this.buf;
    let pos = this.pos;
    while (v > 0x7f) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  /** An int32 field's varint: a negative one takes 10 bytes, sign-extended to 64 bits. */
  int32(v: number): void {
    if (v >= 0) return this.uint32(v);
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    let lo = v >>> 0;
    for (let i = 0; i < 4; i++) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    // 4 bits of lo and 3 of the all-ones high word, then 0x7f... for the rest.
    buf[pos++] = (lo & 0x0f) | 0x70 | 0x80;
    for (let i = 0; i < 4; i++) buf[pos++] = 0xff;
    buf[pos++] = 0x01;
    this.pos = pos;
  }

  /** A 64-bit varint of a bigint already known to be in range (uint64, or int64 as two's complement). */
  varint64(v: bigint): void {
    if (v >= 0n && v <= 0xffffffffn) return this.uint32(Number(v));
    let u = BigInt.asUintN(64, v);
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    while (u > 0x7fn) {
      buf[pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    buf[pos++] = Number(u);
    this.pos = pos;
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  string(s: string): void {
    const n = s.length;
    this.ensure(5 + 3 * n);
    const buf = this.buf;
    if (n < 128) {
      // Most strings here are short ASCII: one length byte, one byte a character.
      const start = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[start + i] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = start + n;
        return;
      }
    }
    this.uint32(Buffer.byteLength(s, "utf8"));
    // Buffer, like TextEncoder, writes a lone surrogate as U+FFFD.
    this.pos += buf.write(s, this.pos, "utf8");
  }

  /** Starts a length-delimited field's body; join() writes its length. One byte is kept for it. */
  fork(): number {
    this.ensure(1);
    return this.pos++;
  }

  join(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    // A longer body: move it to make room for a longer length varint.
    const size = len < 1 << 14 ? 2 : len < 1 << 21 ? 3 : len < 1 << 28 ? 4 : 5;
    this.ensure(size - 1);
    this.buf.copyWithin(at + size, at + 1, this.pos);
    this.pos += size - 1;
    const end = this.pos;
    this.pos = at;
    this.uint32(len);
    this.pos = end;
  }

  /** A sub-message that protobuf-es encodes, as a length-delimited field. */
  foreign<S extends DescMessage>(field: number, schema: S, value: MessageShape<S>): void {
    const bytes = toBinary(schema, value);
    this.uint32(tag(field, LEN));
    this.uint32(bytes.length);
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}

const writer = new Writer();

/** Refuses a message with unknown fields: protobuf-es writes them back. */
function plain(m: { $unknown?: unknown[] } | undefined | null): void {
  if (typeof m !== "object" || m === null || (m.$unknown !== undefined && m.$unknown.length > 0)) throw notCovered;
}

function isInt32(v: unknown): v is number {
  return typeof v === "number" && (v | 0) === v;
}

function stringField(w: Writer, field: number, v: string): void {
  if (typeof v !== "string") throw notCovered;
  if (v === "") return;
  w.uint32(tag(field, LEN));
  w.string(v);
}

function uint64Field(w: Writer, field: number, v: bigint): void {
  if (typeof v !== "bigint" || v < 0n || v > maxUint64) throw notCovered;
  if (v === 0n) return;
  w.uint32(tag(field, VARINT));
  w.varint64(v);
}

function int32Field(w: Writer, field: number, v: number, implicit: boolean): void {
  if (!isInt32(v)) throw notCovered;
  if (implicit && v === 0) return;
  w.uint32(tag(field, VARINT));
  w.int32(v);
}

function doubleField(w: Writer, field: number, v: number, implicit: boolean): void {
  if (typeof v !== "number") throw notCovered;
  // Implicit presence leaves out +0 only: -0 is written.
  if (implicit && Object.is(v, 0)) return;
  w.uint32(tag(field, BIT64));
  w.double(v);
}

/** google.protobuf.Duration and Timestamp have the same two fields. */
function secondsNanos(w: Writer, field: number, m: Duration | Timestamp): void {
  plain(m);
  const { seconds, nanos } = m;
  if (typeof seconds !== "bigint" || seconds < minInt64 || seconds > maxInt64) throw notCovered;
  w.uint32(tag(field, LEN));
  const at = w.fork();
  if (seconds !== 0n) {
    w.uint32(tag(1, VARINT));
    w.varint64(seconds);
  }
  int32Field(w, 2, nanos, true);
  w.join(at);
}

function writeAcquire(w: Writer, m: AcquireRequest): void {
  plain(m);
  stringField(w, 1, m.resource);
  if (m.load !== undefined) doubleField(w, 2, m.load, false);
  if (m.priority !== undefined) int32Field(w, 3, m.priority, false);
  stringField(w, 4, m.lane);
  if (m.timeout !== undefined) secondsNanos(w, 5, m.timeout);
  stringField(w, 6, m.key);
}

function writeRelease(w: Writer, m: ReleaseRequest): void {
  plain(m);
  stringField(w, 1, m.leaseId);
  if (m.actualLoad !== undefined) doubleField(w, 2, m.actualLoad, false);
  if (m.feedback !== undefined) w.foreign(3, ProviderFeedbackSchema, m.feedback);
}

function writeRequest(w: Writer, m: SessionRequest, inBatch: boolean): void {
  plain(m);
  uint64Field(w, 1, m.requestId);
  const kind = m.kind;
  if (typeof kind !== "object" || kind === null) throw notCovered;
  if (kind.case === undefined) return;
  const value = kind.value;
  plain(value);
  switch (kind.case) {
    case "acquire": {
      w.uint32(tag(2, LEN));
      const at = w.fork();
      writeAcquire(w, value as AcquireRequest);
      w.join(at);
      return;
    }
    case "release": {
      w.uint32(tag(3, LEN));
      const at = w.fork();
      writeRelease(w, value as ReleaseRequest);
      w.join(at);
      return;
    }
    case "heartbeat":
      return w.foreign(4, HeartbeatRequestSchema, kind.value);
    case "cancel": {
      w.uint32(tag(5, LEN));
      const at = w.fork();
      uint64Field(w, 1, (value as SessionCancel).acquireRequestId);
      w.join(at);
      return;
    }
    case "report":
      return w.foreign(6, ReportRequestSchema, kind.value);
    case "batch": {
      if (inBatch) throw notCovered;
      const requests = kind.value.requests;
      if (!Array.isArray(requests)) throw notCovered;
      w.uint32(tag(7, LEN));
      const at = w.fork();
      for (const r of requests) {
        w.uint32(tag(1, LEN));
        const one = w.fork();
        writeRequest(w, r, true);
        w.join(one);
      }
      w.join(at);
      return;
    }
    default:
      throw notCovered;
  }
}

function writeLease(w: Writer, m: Lease): void {
  plain(m);
  stringField(w, 1, m.leaseId);
  stringField(w, 2, m.resource);
  doubleField(w, 3, m.load, true);
  if (m.expireTime !== undefined) secondsNanos(w, 4, m.expireTime);
  if (m.ttl !== undefined) secondsNanos(w, 5, m.ttl);
  if (m.grantTime !== undefined) secondsNanos(w, 6, m.grantTime);
}

function writeResponse(w: Writer, m: SessionResponse, inBatch: boolean): void {
  plain(m);
  uint64Field(w, 1, m.requestId);
  const kind = m.kind;
  if (typeof kind !== "object" || kind === null) throw notCovered;
  if (kind.case === undefined) return;
  const value = kind.value;
  plain(value);
  switch (kind.case) {
    case "granted": {
      const v = value as AcquireResponse;
      w.uint32(tag(2, LEN));
      const at = w.fork();
      if (v.lease !== undefined) {
        w.uint32(tag(1, LEN));
        const lease = w.fork();
        writeLease(w, v.lease);
        w.join(lease);
      }
      if (v.waitTime !== undefined) secondsNanos(w, 2, v.waitTime);
      w.join(at);
      return;
    }
    case "released": {
      const v = value as ReleaseResponse;
      w.uint32(tag(3, LEN));
      const at = w.fork();
      int32Field(w, 1, v.outcome, true);
      stringField(w, 2, v.message);
      w.join(at);
      return;
    }
    case "heartbeat":
      return w.foreign(4, HeartbeatResponseSchema, kind.value);
    case "failure": {
      const v = value as Failure;
      w.uint32(tag(5, LEN));
      const at = w.fork();
      int32Field(w, 1, v.code, true);
      stringField(w, 2, v.message);
      w.join(at);
      return;
    }
    case "leaseExpired": {
      const v = value as LeaseExpired;
      w.uint32(tag(6, LEN));
      const at = w.fork();
      stringField(w, 1, v.leaseId);
      stringField(w, 2, v.resource);
      w.join(at);
      return;
    }
    case "reported":
      return w.foreign(7, ReportResponseSchema, kind.value);
    case "batch": {
      if (inBatch) throw notCovered;
      const responses = kind.value.responses;
      if (!Array.isArray(responses)) throw notCovered;
      w.uint32(tag(8, LEN));
      const at = w.fork();
      for (const r of responses) {
        w.uint32(tag(1, LEN));
        const one = w.fork();
        writeResponse(w, r, true);
        w.join(one);
      }
      w.join(at);
      return;
    }
    default:
      throw notCovered;
  }
}

function encode<M>(write: (w: Writer, m: M, inBatch: boolean) => void, schema: DescMessage, m: M): Buffer {
  writer.pos = 0;
  try {
    write(writer, m, false);
    return writer.finish();
  } catch {
    sessionCodecFallbacks.encode++;
    const bytes = toBinary(schema, m as MessageShape<DescMessage>);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
}

/** The bytes protobuf-es's toBinary(SessionRequestSchema, m) gives. */
export function encodeSessionRequest(m: SessionRequest): Buffer {
  return encode(writeRequest, SessionRequestSchema, m);
}

/** The bytes protobuf-es's toBinary(SessionResponseSchema, m) gives. */
export function encodeSessionResponse(m: SessionResponse): Buffer {
  return encode(writeResponse, SessionResponseSchema, m);
}

// ---- Decoding ----

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads one message's bytes; every read checks against `end` of the enclosing message. */
class Reader {
  pos = 0;
  /**
   * @param bytes as given, for protobuf-es to decode sub-messages from (its unknown fields keep their type).
   * @param buf the same bytes as a Buffer.
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly buf: Buffer,
  ) {}

  /** A tag of fields 1 to 15 (one byte): its field number and wire type; anything else is not covered. */
  tag(end: number): number {
    if (this.pos >= end) throw notCovered;
    const t = this.buf[this.pos++]!;
    if (t & 0x80) throw notCovered;
    return t;
  }

  /** A varint of at most 32 bits (a length, an int32's low word), as protobuf-es reads it. */
  uint32(end: number): number {
    const buf = this.buf;
    let result = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= end) throw notCovered;
      const b = buf[this.pos++]!;
      result |= (b & 0x7f) << shift;
      if (b < 0x80) return result >>> 0;
    }
    if (this.pos >= end) throw notCovered;
    let b = buf[this.pos++]!;
    result |= (b & 0x0f) << 28;
    // The rest of a 64-bit varint (a negative int32), ignored.
    for (let read = 5; b & 0x80; read++) {
      if (read >= 10 || this.pos >= end) throw notCovered;
      b = buf[this.pos++]!;
    }
    return result >>> 0;
  }

  /** A 64-bit varint as a signed bigint (two's complement): one BigInt made for the usual small values. */
  int64(end: number): bigint {
    const start = this.pos;
    const buf = this.buf;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7 && this.pos < end; i++) {
      const b = buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return BigInt(value);
      scale *= 128;
    }
    this.pos = start;
    return BigInt.asIntN(64, this.uint64(end));
  }

  /** A 64-bit varint as an unsigned bigint (0 to 2^64-1). */
  uint64(end: number): bigint {
    const buf = this.buf;
    const start = this.pos;
    // Up to 7 bytes (49 bits) fit a double exactly.
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= end) throw notCovered;
      const b = buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return BigInt(value);
      scale *= 128;
    }
    this.pos = start;
    let big = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) throw notCovered;
      const b = buf[this.pos++]!;
      // The tenth byte holds the 64th bit only.
      if (i === 9 && b > 1) throw notCovered;
      big |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (b < 0x80) return big;
    }
    throw notCovered;
  }

  double(end: number): number {
    if (this.pos + 8 > end) throw notCovered;
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A length-delimited field's end. */
  sub(end: number): number {
    const len = this.uint32(end);
    const subEnd = this.pos + len;
    if (subEnd > end) throw notCovered;
    return subEnd;
  }

  string(end: number): string {
    const stop = this.sub(end);
    const buf = this.buf;
    const start = this.pos;
    this.pos = stop;
    for (let i = start; i < stop; i++) {
      // proto3 strings must be valid UTF-8: protobuf-es decodes them strictly, and so does this.
      if (buf[i]! > 0x7f) return strictUtf8.decode(buf.subarray(start, stop));
    }
    return buf.toString("latin1", start, stop);
  }

  /** A sub-message that protobuf-es decodes. */
  foreign<S extends DescMessage>(schema: S, end: number): MessageShape<S> {
    const stop = this.sub(end);
    const m = fromBinary(schema, this.bytes.subarray(this.pos, stop));
    this.pos = stop;
    return m;
  }
}

/**
 * Field numbers seen so far in one message, as bits: a field seen twice is
 * not covered (protobuf-es merges messages and keeps the last scalar).
 */
function once(seen: number, field: number): number {
  const bit = 1 << field;
  if (seen & bit) throw notCovered;
  return seen | bit;
}

function readSecondsNanos<T extends "google.protobuf.Duration" | "google.protobuf.Timestamp">(
  r: Reader,
  end: number,
  typeName: T,
): { $typeName: T; seconds: bigint; nanos: number } {
  const stop = r.sub(end);
  let seconds = 0n;
  let nanos = 0;
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    if (t === tag(1, VARINT)) {
      seen = once(seen, 1);
      seconds = r.int64(stop);
    } else if (t === tag(2, VARINT)) {
      seen = once(seen, 2);
      nanos = r.uint32(stop) | 0;
    } else throw notCovered;
  }
  return { $typeName: typeName, seconds, nanos };
}

const readDuration = (r: Reader, end: number): Duration => readSecondsNanos(r, end, "google.protobuf.Duration");
const readTimestamp = (r: Reader, end: number): Timestamp => readSecondsNanos(r, end, "google.protobuf.Timestamp");

function readAcquire(r: Reader, end: number): AcquireRequest {
  const stop = r.sub(end);
  const m: AcquireRequest = { $typeName: "ratequeue.v1.AcquireRequest", resource: "", lane: "", key: "" };
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, LEN)) m.resource = r.string(stop);
    else if (t === tag(2, BIT64)) m.load = r.double(stop);
    else if (t === tag(3, VARINT)) m.priority = r.uint32(stop) | 0;
    else if (t === tag(4, LEN)) m.lane = r.string(stop);
    else if (t === tag(5, LEN)) m.timeout = readDuration(r, stop);
    else if (t === tag(6, LEN)) m.key = r.string(stop);
    else throw notCovered;
  }
  return m;
}

function readRelease(r: Reader, end: number): ReleaseRequest {
  const stop = r.sub(end);
  const m: ReleaseRequest = { $typeName: "ratequeue.v1.ReleaseRequest", leaseId: "" };
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, LEN)) m.leaseId = r.string(stop);
    else if (t === tag(2, BIT64)) m.actualLoad = r.double(stop);
    else if (t === tag(3, LEN)) m.feedback = r.foreign(ProviderFeedbackSchema, stop);
    else throw notCovered;
  }
  return m;
}

function readCancel(r: Reader, end: number): SessionCancel {
  const stop = r.sub(end);
  let acquireRequestId = 0n;
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, VARINT)) acquireRequestId = r.uint64(stop);
    else throw notCovered;
  }
  return { $typeName: "ratequeue.v1.SessionCancel", acquireRequestId };
}

/** One SessionRequest ending at `end`; inside a batch, another batch is not covered. */
function readRequest(r: Reader, end: number, inBatch: boolean): SessionRequest {
  let requestId = 0n;
  let kind: SessionRequest["kind"] = { case: undefined };
  let seen = 0;
  while (r.pos < end) {
    const t = r.tag(end);
    const field = t >>> 3;
    seen = once(seen, field);
    if (t === tag(1, VARINT)) {
      requestId = r.uint64(end);
      continue;
    }
    // One member of the oneof only: protobuf-es keeps the last.
    if (kind.case !== undefined || (t & 7) !== LEN) throw notCovered;
    switch (field) {
      case 2:
        kind = { case: "acquire", value: readAcquire(r, end) };
        break;
      case 3:
        kind = { case: "release", value: readRelease(r, end) };
        break;
      case 4:
        kind = { case: "heartbeat", value: r.foreign(HeartbeatRequestSchema, end) };
        break;
      case 5:
        kind = { case: "cancel", value: readCancel(r, end) };
        break;
      case 6:
        kind = { case: "report", value: r.foreign(ReportRequestSchema, end) };
        break;
      case 7: {
        if (inBatch) throw notCovered;
        const stop = r.sub(end);
        const requests: SessionRequest[] = [];
        while (r.pos < stop) {
          if (r.tag(stop) !== tag(1, LEN)) throw notCovered;
          const one = r.sub(stop);
          requests.push(readRequest(r, one, true));
        }
        kind = { case: "batch", value: { $typeName: "ratequeue.v1.SessionRequestBatch", requests } };
        break;
      }
      default:
        throw notCovered;
    }
  }
  return { $typeName: "ratequeue.v1.SessionRequest", requestId, kind };
}

function readLease(r: Reader, end: number): Lease {
  const stop = r.sub(end);
  const m: Lease = { $typeName: "ratequeue.v1.Lease", leaseId: "", resource: "", load: 0 };
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, LEN)) m.leaseId = r.string(stop);
    else if (t === tag(2, LEN)) m.resource = r.string(stop);
    else if (t === tag(3, BIT64)) m.load = r.double(stop);
    else if (t === tag(4, LEN)) m.expireTime = readTimestamp(r, stop);
    else if (t === tag(5, LEN)) m.ttl = readDuration(r, stop);
    else if (t === tag(6, LEN)) m.grantTime = readTimestamp(r, stop);
    else throw notCovered;
  }
  return m;
}

function readGranted(r: Reader, end: number): AcquireResponse {
  const stop = r.sub(end);
  const m: AcquireResponse = { $typeName: "ratequeue.v1.AcquireResponse" };
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, LEN)) m.lease = readLease(r, stop);
    else if (t === tag(2, LEN)) m.waitTime = readDuration(r, stop);
    else throw notCovered;
  }
  return m;
}

/** ReleaseResponse and Failure: an int32 (or open enum) and a message. */
function readCodeMessage(r: Reader, end: number): { code: number; message: string } {
  const stop = r.sub(end);
  let code = 0;
  let message = "";
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, VARINT)) code = r.uint32(stop) | 0;
    else if (t === tag(2, LEN)) message = r.string(stop);
    else throw notCovered;
  }
  return { code, message };
}

function readLeaseExpired(r: Reader, end: number): LeaseExpired {
  const stop = r.sub(end);
  const m: LeaseExpired = { $typeName: "ratequeue.v1.LeaseExpired", leaseId: "", resource: "" };
  let seen = 0;
  while (r.pos < stop) {
    const t = r.tag(stop);
    seen = once(seen, t >>> 3);
    if (t === tag(1, LEN)) m.leaseId = r.string(stop);
    else if (t === tag(2, LEN)) m.resource = r.string(stop);
    else throw notCovered;
  }
  return m;
}

function readResponse(r: Reader, end: number, inBatch: boolean): SessionResponse {
  let requestId = 0n;
  let kind: SessionResponse["kind"] = { case: undefined };
  let seen = 0;
  while (r.pos < end) {
    const t = r.tag(end);
    const field = t >>> 3;
    seen = once(seen, field);
    if (t === tag(1, VARINT)) {
      requestId = r.uint64(end);
      continue;
    }
    if (kind.case !== undefined || (t & 7) !== LEN) throw notCovered;
    switch (field) {
      case 2:
        kind = { case: "granted", value: readGranted(r, end) };
        break;
      case 3: {
        const { code, message } = readCodeMessage(r, end);
        const value: ReleaseResponse = { $typeName: "ratequeue.v1.ReleaseResponse", outcome: code, message };
        kind = { case: "released", value };
        break;
      }
      case 4:
        kind = { case: "heartbeat", value: r.foreign(HeartbeatResponseSchema, end) };
        break;
      case 5: {
        const { code, message } = readCodeMessage(r, end);
        kind = { case: "failure", value: { $typeName: "ratequeue.v1.Failure", code, message } };
        break;
      }
      case 6:
        kind = { case: "leaseExpired", value: readLeaseExpired(r, end) };
        break;
      case 7:
        kind = { case: "reported", value: r.foreign(ReportResponseSchema, end) };
        break;
      case 8: {
        if (inBatch) throw notCovered;
        const stop = r.sub(end);
        const responses: SessionResponse[] = [];
        while (r.pos < stop) {
          if (r.tag(stop) !== tag(1, LEN)) throw notCovered;
          const one = r.sub(stop);
          responses.push(readResponse(r, one, true));
        }
        kind = { case: "batch", value: { $typeName: "ratequeue.v1.SessionResponseBatch", responses } };
        break;
      }
      default:
        throw notCovered;
    }
  }
  return { $typeName: "ratequeue.v1.SessionResponse", requestId, kind };
}

function decode<M>(read: (r: Reader, end: number, inBatch: boolean) => M, schema: DescMessage, bytes: Uint8Array): M {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    return read(new Reader(bytes, buf), buf.length, false);
  } catch {
    sessionCodecFallbacks.decode++;
    return fromBinary(schema, bytes) as M;
  }
}

/** The message protobuf-es's fromBinary(SessionRequestSchema, bytes) gives (and the same errors). */
export function decodeSessionRequest(bytes: Uint8Array): SessionRequest {
  return decode(readRequest, SessionRequestSchema, bytes);
}

/** The message protobuf-es's fromBinary(SessionResponseSchema, bytes) gives (and the same errors). */
export function decodeSessionResponse(bytes: Uint8Array): SessionResponse {
  return decode(readResponse, SessionResponseSchema, bytes);
}
