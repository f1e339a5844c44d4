// Which node to talk to, and how: channels per address, credentials, the
// API key, and following a standby's hint to the leader.
import { readFileSync } from "node:fs";
import { Client, credentials, Metadata, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { parseTargets, type Target } from "./address.js";
import {
  authorizationMetadataKey,
  defaultUrl,
  keepaliveTimeMs,
  keepaliveTimeoutMs,
  leaderMetadataKey,
  namespaceMetadataKey,
} from "./protocol.js";

/** How to reach ratequeue; shared by createClient and createAdminClient. */
export interface ClientOptions {
  /**
   * Server address: `http://host:7070`, `https://host:7070`, `host:port`, or
   * a comma-separated list of a group's nodes. Default: RATEQUEUE_URL, else
   * http://127.0.0.1:7070.
   */
  url?: string;
  /** API key sent as a bearer token. Default: RATEQUEUE_API_KEY. */
  apiKey?: string;
  /** CA certificate (PEM file) for https:// URLs signed by a private CA. Default: RATEQUEUE_CA_FILE. */
  caFile?: string;
  /** Client certificate and its key (PEM files), for servers that require client certificates. */
  certFile?: string;
  keyFile?: string;
  /** The namespace to act in; only root keys choose (others act in their key's namespace). */
  namespace?: string;
  /**
   * How long a waiting acquire survives without a working connection to any
   * server before it fails with UNAVAILABLE, ms. Default 30 000.
   */
  reconnectTimeoutMs?: number;
}

export class Connection {
  private readonly targets: Target[];
  private current = 0;
  private readonly clients = new Map<string, Client>();
  /** Made on first use: building a TLS context costs about 20 ms (it loads the system's roots). */
  private tlsCredentials: ChannelCredentials | undefined;
  private readonly tlsFiles: { ca?: Buffer; key?: Buffer; cert?: Buffer };

  private readonly apiKey: string | undefined;

  constructor(private readonly options: ClientOptions) {
    this.targets = parseTargets(options.url ?? process.env.RATEQUEUE_URL ?? defaultUrl);
    this.apiKey = options.apiKey ?? process.env.RATEQUEUE_API_KEY;
    // The files are read now, so that a missing one fails here, not at the first call.
    // An empty RATEQUEUE_CA_FILE means unset, as in the other clients: trust the system roots.
    const caFile = options.caFile ?? (process.env.RATEQUEUE_CA_FILE || undefined);
    this.tlsFiles = {
      ca: caFile === undefined ? undefined : readFileSync(caFile),
      key: options.keyFile === undefined ? undefined : readFileSync(options.keyFile),
      cert: options.certFile === undefined ? undefined : readFileSync(options.certFile),
    };
  }

  /** The grpc-js client for the node currently believed to lead. */
  client(): Client {
    const target = this.targets[this.current]!;
    let client = this.clients.get(target.hostPort);
    if (client === undefined) {
      const { ca, key, cert } = this.tlsFiles;
      const creds = target.tls ? (this.tlsCredentials ??= credentials.createSsl(ca, key, cert)) : credentials.createInsecure();
      client = new Client(target.hostPort, creds, {
        "grpc.keepalive_time_ms": keepaliveTimeMs,
        "grpc.keepalive_timeout_ms": keepaliveTimeoutMs,
        "grpc.keepalive_permit_without_calls": 1,
      });
      this.clients.set(target.hostPort, client);
    }
    return client;
  }

  /** Metadata for every call: the API key, when there is one. */
  metadata(): Metadata {
    const md = new Metadata();
    if (this.apiKey) md.set(authorizationMetadataKey, `Bearer ${this.apiKey}`);
    if (this.options.namespace) md.set(namespaceMetadataKey, this.options.namespace);
    return md;
  }

  /**
   * Moves on after a failed call: to the leader a standby named, or else to
   * the next address of the list.
   */
  moveOn(err?: Partial<ServiceError>): void {
    const hint = err?.metadata?.get(leaderMetadataKey)[0];
    if (typeof hint === "string" && hint !== "") {
      const tls = this.targets[this.current]!.tls;
      let index = this.targets.findIndex((t) => t.hostPort === hint);
      if (index < 0) index = this.targets.push({ hostPort: hint, tls }) - 1;
      this.current = index;
      return;
    }
    this.current = (this.current + 1) % this.targets.length;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
