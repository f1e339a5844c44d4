/**
 * How the Session stream's batches are cut, for the TypeScript client (its
 * SessionRequestBatches) and the server (its SessionResponseBatches) alike:
 * what one turn of the event loop sends goes out in order, in runs of at
 * most maxBatchMessages messages and maxBatchBytes bytes; a run of one, or
 * a message too large to share, goes alone. The Python and Go clients keep
 * the same two bounds (docs/protocol.md, "Batches").
 */
import type { SessionRequest, SessionResponse } from "./gen/ratequeue/v1/ratequeue_pb.js";

/** The most messages in one batch; the server ends a stream that sends more (INVALID_ARGUMENT). */
export const maxBatchMessages = 1000;
/** The most bytes one batch's messages take, well under the server's largest message (1 MiB by default). */
export const maxBatchBytes = 256 * 1024;

/** A string's encoded size at most: UTF-8 takes at most 3 bytes per UTF-16 unit, plus a tag and a length. */
const text = (s: string) => 6 + 3 * s.length;
/** A ProviderFeedback at most: a flag, a Duration and four dimensions of two doubles and two Durations. */
const feedbackBytes = 320;

/** An upper bound of a request's encoded size inside a batch (with its tag and length), without encoding it. */
export function requestSizeBound(r: SessionRequest): number {
  const k = r.kind;
  switch (k.case) {
    case "acquire":
      return 96 + text(k.value.resource) + text(k.value.lane) + text(k.value.key);
    case "release":
      return 32 + text(k.value.leaseId) + (k.value.feedback === undefined ? 0 : feedbackBytes);
    case "heartbeat": {
      let n = 32;
      for (const id of k.value.leaseIds) n += text(id);
      return n;
    }
    case "report":
      return 32 + text(k.value.resource) + (k.value.feedback === undefined ? 0 : feedbackBytes);
    default:
      return 32;
  }
}

/** An upper bound of an answer's encoded size inside a batch (with its tag and length), without encoding it. */
export function responseSizeBound(r: SessionResponse): number {
  const k = r.kind;
  switch (k.case) {
    case "granted": {
      const lease = k.value.lease;
      return 144 + (lease === undefined ? 0 : text(lease.leaseId) + text(lease.resource));
    }
    case "released":
    case "failure":
      return 32 + text(k.value.message);
    case "leaseExpired":
      return 32 + text(k.value.leaseId) + text(k.value.resource);
    case "heartbeat": {
      let n = 32;
      for (const s of k.value.leases) n += 40 + text(s.leaseId);
      return n;
    }
    default:
      return 64;
  }
}

/**
 * Cuts `items` into runs of at most maxBatchMessages items and maxBatchBytes
 * by `sizeBound`, in order, and calls `send(start, end)` for each run.
 */
export function forEachBatch<T>(items: readonly T[], sizeBound: (item: T) => number, send: (start: number, end: number) => void): void {
  let start = 0;
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const n = sizeBound(items[i]!);
    if (i > start && (i - start === maxBatchMessages || size + n > maxBatchBytes)) {
      send(start, i);
      start = i;
      size = 0;
    }
    size += n;
  }
  if (start < items.length) send(start, items.length);
}
