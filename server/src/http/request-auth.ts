// The caller of an HTTP page (/metrics, /status), authenticated like every
// RPC: the bearer key and, for a root key, the ratequeue-namespace header.
import type { IncomingMessage } from "node:http";
import { Metadata, status } from "@grpc/grpc-js";
import type { Authenticator, Principal } from "../auth/index.js";
import { RpcError } from "../errors.js";

/** A refused page request: the HTTP status, and the code and message a Connect error would carry. */
export class HttpRefusal extends Error {
  override name = "HttpRefusal";
  constructor(
    readonly status: 401 | 403 | 404,
    readonly code: "unauthenticated" | "permission_denied" | "not_found",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Authenticates a page's request. Rejects with an HttpRefusal: 401 for a
 * missing, malformed or unknown key, 403 for another namespace than the
 * key's, 404 for a root key naming a namespace that does not exist.
 */
export async function authenticateRequest(auth: Authenticator, req: IncomingMessage): Promise<Principal> {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(req.headers)) if (typeof value === "string") metadata.set(key, value);
  try {
    return await auth.authenticate(metadata, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
  } catch (err) {
    if (!(err instanceof RpcError)) throw err;
    if (err.code === status.PERMISSION_DENIED) throw new HttpRefusal(403, "permission_denied", err.message);
    if (err.code === status.NOT_FOUND) throw new HttpRefusal(404, "not_found", err.message);
    throw new HttpRefusal(401, "unauthenticated", err.message);
  }
}
