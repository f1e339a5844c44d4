// The AdminService over the Connect protocol (JSON or binary, HTTP/1.1 or
// HTTP/2), served by the very handlers of the gRPC port: each Connect call
// becomes the grpc-js call those handlers expect, so validation, errors and
// tenant scoping are the same code. A handler's RpcError comes back as the
// Connect error of the same code (gRPC and Connect number their codes alike).
import { Code, ConnectError, createContextKey, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { AdminService } from "@ratequeue/proto";
import type { ServiceHandlers } from "../rpc/service-handlers.js";

/** The caller's address (host:port), set for each request by the HTTP server. */
export const peerKey = createContextKey("unknown", { description: "the caller's address" });

type UnaryHandler = (call: unknown, callback: (err: ServiceError | null, value?: unknown) => void) => void;

/** Request headers as grpc-js metadata: what the handlers read the API key and namespace from. */
function metadataOf(headers: Headers): Metadata {
  const md = new Metadata();
  headers.forEach((value, key) => {
    if (!key.endsWith("-bin")) md.set(key, value);
  });
  return md;
}

/** Calls a grpc-js unary handler with one Connect request and returns its answer or throws its status. */
function invoke(handler: UnaryHandler, request: unknown, ctx: HandlerContext): Promise<unknown> {
  const call = { request, metadata: metadataOf(ctx.requestHeader), getPeer: () => ctx.values.get(peerKey), cancelled: false };
  return new Promise((resolve, reject) =>
    handler(call, (err, value) => {
      if (err === null) return resolve(value);
      const trailers = new Headers();
      for (const [key, values] of Object.entries(err.metadata?.getMap() ?? {})) trailers.set(key, String(values));
      reject(new ConnectError(err.details ?? err.message, (err.code ?? Code.Unknown) as number as Code, trailers));
    }),
  );
}

/** Routes every AdminService method to its gRPC handler. */
export function connectAdminRoutes(handlers: ServiceHandlers<typeof AdminService>): (router: ConnectRouter) => void {
  const impl: Record<string, (request: unknown, ctx: HandlerContext) => Promise<unknown>> = {};
  for (const method of AdminService.methods) {
    const handler = (handlers as unknown as Record<string, UnaryHandler>)[method.localName]!;
    impl[method.localName] = (request, ctx) => invoke(handler, request, ctx);
  }
  return (router) => router.service(AdminService, impl as never);
}
