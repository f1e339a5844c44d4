/**
 * The ratequeue.v1 contract for TypeScript: the generated messages and
 * services, the metadata names of the session protocol, and the adapter that
 * turns a protobuf-es service descriptor into a grpc-js service definition.
 * The server and the TypeScript client both depend on this package, so one
 * code generator (protoc-gen-es) serves both ends and neither owns the contract.
 */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { SessionRequestSchema, SessionResponseSchema } from "./gen/ratequeue/v1/ratequeue_pb.js";
import { decodeSessionRequest, decodeSessionResponse, encodeSessionRequest, encodeSessionResponse } from "./session-codec.js";

export * from "./gen/ratequeue/v1/ratequeue_pb.js";
export * from "./gen/ratequeue/v1/admin_pb.js";
export { decodeSessionRequest, decodeSessionResponse, encodeSessionRequest, encodeSessionResponse, sessionCodecFallbacks } from "./session-codec.js";
export { forEachBatch, maxBatchBytes, maxBatchMessages, requestSizeBound, responseSizeBound } from "./session-batch.js";

// Metadata names of the protocol (proto/ratequeue/v1/ratequeue.proto, "Session protocol").

/** Request metadata carrying the API key as `Bearer <key>`. */
export const authorizationMetadataKey = "authorization";
/** Request metadata with which a root key picks the namespace to act in. */
export const namespaceMetadataKey = "ratequeue-namespace";
/** Trailing metadata with which a node that cannot serve (a standby) names the leader's host:port. */
export const leaderMetadataKey = "ratequeue-leader";

/** The grpc-js definition of one protobuf-es service, keyed by method local name. */
export type GrpcServiceDefinition<S extends GenServiceMethods> = {
  [K in keyof S]: MethodDefinition<MessageShape<S[K]["input"]>, MessageShape<S[K]["output"]>>;
};

/**
 * Builds a grpc-js service definition from a protobuf-es service, with binary
 * protobuf (de)serialisation: protobuf-es's, except for the Session stream's
 * messages, which go through the hand-written codec that gives the same
 * bytes and messages faster (session-codec.ts). Method keys are the lowerCamel local names
 * (`acquire`, `session`), paths are the wire paths (`/ratequeue.v1.RateQueueService/Acquire`).
 */
export function grpcServiceDefinition<S extends GenServiceMethods>(
  service: GenService<S>,
): GrpcServiceDefinition<S> & ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition as GrpcServiceDefinition<S> & ServiceDefinition;
}

/** The codecs that stand in for protobuf-es, by message type. */
const fastCodecs = new Map<DescMessage, { encode(value: never): Buffer; decode(bytes: Buffer): unknown }>([
  [SessionRequestSchema, { encode: encodeSessionRequest, decode: decodeSessionRequest }],
  [SessionResponseSchema, { encode: encodeSessionResponse, decode: decodeSessionResponse }],
]);

function serializer(schema: DescMessage): (value: unknown) => Buffer {
  const fast = fastCodecs.get(schema);
  if (fast !== undefined) return fast.encode as (value: unknown) => Buffer;
  return (value) => {
    const bytes = toBinary(schema, value as MessageShape<DescMessage>);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (bytes: Buffer) => unknown {
  const fast = fastCodecs.get(schema);
  if (fast !== undefined) return fast.decode;
  return (bytes) => fromBinary(schema, bytes);
}
