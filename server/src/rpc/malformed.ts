// Request bodies that are not valid protobuf. grpc-js answers a request its
// deserializer throws on with INTERNAL; a client's bad bytes are bad input,
// so the server's definitions decode them into a marker instead, and the
// handlers answer INVALID_ARGUMENT (a unary call) or end the stream with it.
import type { ServiceDefinition } from "@grpc/grpc-js";
import { RpcError, invalidField } from "../errors.js";

const malformed = Symbol("malformed");

interface Malformed {
  [malformed]: string;
}

/** A copy of a service definition whose request decoding never throws. */
export function tolerantDefinition<D extends ServiceDefinition>(definition: D): D {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    const typeName = method.path.split("/").pop() ?? "";
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (err) {
          return { [malformed]: `${typeName}: not a valid protobuf message (${(err as Error).message})` } satisfies Malformed;
        }
      },
    };
  }
  return out as D;
}

/** The INVALID_ARGUMENT error for a request that did not decode, or undefined. */
export function malformedError(request: unknown): RpcError | undefined {
  if (typeof request !== "object" || request === null || !(malformed in request)) return undefined;
  return invalidField("request", (request as Malformed)[malformed].slice(0, 300));
}
