// A service's handlers typed from its protobuf-es descriptor, and the one way
// the server mounts them: a handler missing, misnamed or of the wrong kind or
// message types is a compile error, not an UNIMPLEMENTED at run time.
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Server,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { grpcServiceDefinition } from "@ratequeue/proto";
import { tolerantDefinition } from "./malformed.js";

type Method = GenServiceMethods[string];
type In<M extends Method> = MessageShape<M["input"] & DescMessage>;
type Out<M extends Method> = MessageShape<M["output"] & DescMessage>;

/** The grpc-js handler of one method: its call shape by method kind, with the method's own messages. */
type HandlerOf<M extends Method> = M["methodKind"] extends "unary"
  ? handleUnaryCall<In<M>, Out<M>>
  : M["methodKind"] extends "server_streaming"
    ? handleServerStreamingCall<In<M>, Out<M>>
    : M["methodKind"] extends "client_streaming"
      ? handleClientStreamingCall<In<M>, Out<M>>
      : handleBidiStreamingCall<In<M>, Out<M>>;

/**
 * The handlers of a service (`typeof RateQueueService`), keyed by each
 * method's local name (`acquire`, `session`), the keys of
 * grpcServiceDefinition.
 */
export type ServiceHandlers<T> = T extends GenService<infer S> ? { [K in keyof S]: HandlerOf<S[K]> } : never;

/** Serves `service` on `server` with `handlers`; a request body that does not decode is answered INVALID_ARGUMENT (malformed.ts). */
export function addService<S extends GenServiceMethods>(server: Server, service: GenService<S>, handlers: ServiceHandlers<GenService<S>>): void {
  server.addService(tolerantDefinition(grpcServiceDefinition(service)), handlers as UntypedServiceImplementation);
}
