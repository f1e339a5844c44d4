// The one error type every layer outside the core throws when a call must
// fail: it carries the gRPC status a client sees. The RPC handlers turn it
// into the call's status (rpc/handler.ts); auth, validation and the group
// throw it without knowing about handlers.
import { status } from "@grpc/grpc-js";

/** An error that becomes a gRPC status with a message that says what to fix. */
export class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
    /** Trailing metadata to send with the status (e.g. the leader's address). */
    readonly trailers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "RpcError";
  }
}

/** INVALID_ARGUMENT naming the field and the rule it broke. */
export function invalidField(field: string, rule: string): RpcError {
  return new RpcError(status.INVALID_ARGUMENT, `${field}: ${rule}`);
}

/**
 * Turns anything thrown by a handler into an RpcError. Unexpected errors
 * become INTERNAL with a generic message; their details go to the log only.
 */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  return new RpcError(status.INTERNAL, "internal error; the server logged the details");
}
