import { status } from "@grpc/grpc-js";

/** A gRPC status name, e.g. "DEADLINE_EXCEEDED". */
export type StatusName = keyof typeof status;

/**
 * Every failure the client reports: the gRPC status (`code`, by name) and
 * the server's message, which says what to fix.
 */
export class RateQueueError extends Error {
  override name = "RateQueueError";
  /** The numeric gRPC status code. */
  readonly grpcCode: number;

  constructor(
    readonly code: StatusName,
    message: string,
  ) {
    super(message);
    this.grpcCode = status[code];
  }

  /** The error for a numeric gRPC status code. */
  static fromCode(grpcCode: number, message: string): RateQueueError {
    const name = (status[grpcCode] as StatusName | undefined) ?? "UNKNOWN";
    return new RateQueueError(name, message);
  }
}
