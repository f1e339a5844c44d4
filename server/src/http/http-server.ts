// The HTTP port (--http-port, default 7071): what operators and their tools
// reach over plain HTTP. Probes (/healthz, /readyz), the AdminService over
// the Connect protocol (`curl -d '{}' .../ratequeue.v1.AdminService/ListResources`),
// and the pages other modules add (/metrics, the dashboard at /). Same host,
// same TLS files and the same API keys as the gRPC port.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { readTlsFiles, type TlsFiles } from "../auth/index.js";
import type { Logger } from "../log.js";
import { peerKey } from "./connect-admin.js";

/** A page of the HTTP port: its answer to a GET, and any headers besides content-type. */
export type Page = (req: IncomingMessage) => Promise<{ status?: number; type: string; body: string | Buffer; headers?: Record<string, string> }>;

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
