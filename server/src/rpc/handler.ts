// grpc-js plumbing shared by the services: a unary handler runs a typed
// function and maps whatever it throws to a gRPC status.
import { Metadata, type sendUnaryData, type ServerErrorResponse, type ServerUnaryCall } from "@grpc/grpc-js";
import { RpcError, toRpcError } from "../errors.js";
import type { Logger } from "../log.js";
import { malformedError } from "./malformed.js";

/** The grpc-js error object for an RpcError, with its trailers. */
export function serviceError(err: RpcError): ServerErrorResponse {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(err.trailers)) metadata.set(key, value);
  return Object.assign(new Error(err.message), { code: err.code, details: err.message, metadata });
}

/** Logs an unexpected error and returns the RpcError a client may see. */
export function reportError(log: Logger, method: string, err: unknown): RpcError {
  if (!(err instanceof RpcError)) log.error("handler failed", { method, error: String(err), stack: (err as Error)?.stack });
  return toRpcError(err);
}

/**
 * Wraps a synchronous or async function of the request as a grpc-js unary
 * handler.
 */
export function unary<I, O>(log: Logger, method: string, fn: (request: I, call: ServerUnaryCall<I, O>) => O | Promise<O>) {
  return (call: ServerUnaryCall<I, O>, callback: sendUnaryData<O>): void => {
    let result: O | Promise<O>;
    try {
      const bad = malformedError(call.request);
      if (bad !== undefined) throw bad;
      result = fn(call.request, call);
    } catch (err) {
      callback(serviceError(reportError(log, method, err)));
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value) => callback(null, value),
        (err: unknown) => callback(serviceError(reportError(log, method, err))),
      );
    } else {
      callback(null, result);
    }
  };
}
