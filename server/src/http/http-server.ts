// The HTTP port (--http-port, default 7071): what operators and their tools
// reach over plain HTTP. Probes (/healthz, /readyz), the AdminService over
// the Connect protocol (`curl -d '{}' .../ratequeue.v1.AdminService/ListResources`),
// and the pages and JSON calls other modules add (/metrics, the dashboard at /).
// Same host, same TLS files and the same API keys as the gRPC port.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { readTlsFiles, type TlsFiles } from "../auth/index.js";
import type { Logger } from "../log.js";
import { peerKey } from "./connect-admin.js";

/** A page of the HTTP port: its answer to a GET, and any headers besides content-type. */
export type Page = (req: IncomingMessage) => Promise<{ status?: number; type: string; body: string | Buffer; headers?: Record<string, string> }>;

/** A JSON call of the HTTP port (POST): the answer to a parsed body. Throws HttpError to refuse it. */
export type JsonAction = (body: unknown) => unknown;

/** A refused JSON call, answered like a Connect error: `{ code, message }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Bodies of JSON calls are small (one resource's definition); a larger one is refused and its bytes dropped. */
const maxJsonBody = 1 << 20;

export interface HttpOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  tls?: TlsFiles;
  log: Logger;
  /** Connect services (connect-admin.ts). */
  routes: (router: ConnectRouter) => void;
  /** True while this node can take work or is a ready standby: /readyz answers 200, else 503. */
  ready(): boolean;
  /** GET pages by path. */
  pages?: Record<string, Page>;
  /** POST JSON calls by path. */
  actions?: Record<string, JsonAction>;
}

export interface RunningHttp {
  port: number;
  close(): Promise<void>;
}

/** Serves the HTTP port until closed. */
export async function startHttpServer(options: HttpOptions): Promise<RunningHttp> {
  const { log } = options;
  const pages: Record<string, Page> = {
    "/healthz": async () => ({ type: "text/plain", body: "ok\n" }),
    "/readyz": async () => (options.ready() ? { type: "text/plain", body: "ready\n" } : { status: 503, type: "text/plain", body: "not ready\n" }),
    ...options.pages,
  };
  const fallback = (req: IncomingMessage, res: ServerResponse): void => {
    // (Connect's adapter types both HTTP/1.1 and HTTP/2 requests; this port serves HTTP/1.1.)
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const action = options.actions?.[path];
    if (action !== undefined) return answerJson(req, res, action, log);
    const page = pages[path];
    if (page === undefined || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(page === undefined ? 404 : 405, { "content-type": "text/plain" });
      res.end(page === undefined ? `no page at ${path}\n` : `${req.method} is not allowed here; use GET\n`);
      return;
    }
    page(req).then(
      ({ status = 200, type, body, headers }) => {
        res.writeHead(status, { ...headers, "content-type": type, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        log.error("page failed", { path, error: String(err), stack: (err as Error)?.stack });
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("internal error; the server logged the details\n");
      },
    );
  };
  const handler = connectNodeAdapter({
    routes: options.routes,
    fallback: fallback as unknown as Parameters<typeof connectNodeAdapter>[0]["fallback"],
    contextValues: (req) => createContextValues().set(peerKey, `${req.socket.remoteAddress}:${req.socket.remotePort}`),
  });
  let server: Server;
  if (options.tls === undefined) server = createHttpServer(handler);
  else {
    const { cert, key, ca } = readTlsFiles(options.tls);
    server = createHttpsServer({ cert, key, ca, requestCert: ca !== undefined, rejectUnauthorized: ca !== undefined }, handler);
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve((server.address() as { port: number }).port);
    });
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function answerJson(req: IncomingMessage, res: ServerResponse, action: JsonAction, log: Logger): void {
  const reply = (status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(body));
  };
  const refuse = (err: HttpError): void => reply(err.status, { code: err.code, message: err.message });
  if (req.method !== "POST") {
    res.setHeader("allow", "POST");
    return refuse(new HttpError(405, "unimplemented", `${req.method} is not allowed here; POST a JSON body`));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size <= maxJsonBody) chunks.push(chunk);
  });
  req.on("end", () => {
    if (size > maxJsonBody) return refuse(new HttpError(413, "resource_exhausted", `the body has ${size} bytes; at most ${maxJsonBody} are read`));
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (err) {
      return refuse(new HttpError(400, "invalid_argument", `the body is not JSON: ${(err as Error).message}`));
    }
    try {
      reply(200, action(body));
    } catch (err) {
      if (err instanceof HttpError) return refuse(err);
      log.error("JSON call failed", { path: req.url, error: String(err), stack: (err as Error)?.stack });
      refuse(new HttpError(500, "internal", "internal error; the server logged the details"));
    }
  });
}
