// The numbers of the session protocol this client keeps, defined once
// (proto/ratequeue/v1/ratequeue.proto, "Session protocol"; docs/protocol.md).
// Every client defines the same values; the conformance suite compares them.
import { status } from "@grpc/grpc-js";

export { authorizationMetadataKey, leaderMetadataKey, namespaceMetadataKey } from "@ratequeue/proto";

/** The server address when neither an option nor RATEQUEUE_URL says (the server's default bind). */
export const defaultUrl = "http://127.0.0.1:7070";
/** A keepalive ping this often, also without calls in flight... */
export const keepaliveTimeMs = 30_000;
/** ...that fails the connection when unanswered this long. */
export const keepaliveTimeoutMs = 10_000;
/** How long a waiting acquire survives without a working stream (ClientOptions.reconnectTimeoutMs). */
export const reconnectTimeoutMs = 30_000;
/** The first pause between reconnect attempts; it doubles up to maxBackoffMs, jittered to 0.5 to 1 times. */
export const initialBackoffMs = 50;
/** The longest pause: a node taking over is found within about a second. */
export const maxBackoffMs = 1000;
/** How long past an acquire's timeout the client waits for the server's own answer. */
export const timeoutSlackMs = 2000;
/** How long a node that answered UNAVAILABLE may take to end the stream itself (its status may name the leader). */
export const departureGraceMs = 250;
/** The most lease ids one HeartbeatRequest may name. */
export const maxLeaseIdsPerHeartbeat = 1000;
/** What one SessionRequestBatch may hold at most: messages, and their bytes (@ratequeue/proto's session-batch.ts). */
export { maxBatchBytes, maxBatchMessages } from "@ratequeue/proto";

/** A stream that ends with one of these is reconnected; what waits is sent again. */
const retriedCodes = new Set<number>([
  status.UNAVAILABLE,
  status.CANCELLED,
  status.DEADLINE_EXCEEDED,
  status.ABORTED,
  status.INTERNAL,
  status.UNKNOWN,
  status.OK,
]);

/** How a stream's end status is handled. */
export type StreamEnd = "retry" | "refused" | "final";

/**
 * "retry": reconnect and send again; "refused": the key is refused, so what
 * waits fails and held leases are lost; "final": what waits fails, held
 * leases are kept and heartbeated after reconnecting.
 */
export function streamEnd(grpcCode: number): StreamEnd {
  if (retriedCodes.has(grpcCode)) return "retry";
  if (grpcCode === status.UNAUTHENTICATED || grpcCode === status.PERMISSION_DENIED) return "refused";
  return "final";
}

/** The pause before reconnect attempt `attempt` (0, 1, ...). */
export function backoffMs(attempt: number): number {
  return Math.min(maxBackoffMs, initialBackoffMs * 2 ** attempt) * (0.5 + Math.random() / 2);
}
