// Which node to talk to, and how: channels per address, credentials, the
// API key, and following a standby's hint to the leader.
import { readFileSync } from "node:fs";
import { Client, credentials, Metadata, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { parseTargets, type Target } from "./address.js";

/** Trailing metadata key with which a standby names the leader. */
export const leaderMetadataKey = "ratequeue-leader";

export interface ConnectionOptions {
  url: string;
  apiKey?: string;
  /** PEM file of the CA that signed the server's certificate (https:// URLs). */
  caFile?: string;
  /** PEM client certificate and key, for servers that require one (https:// URLs). */
  certFile?: string;
  keyFile?: string;
  /** The namespace to act in (root keys; others act in their own). */
  namespace?: string;
}

export class Connection {
  private readonly targets: Target[];
  private current = 0;
  private readonly clients = new Map<string, Client>();
  private readonly tlsCredentials: ChannelCredentials;

  constructor(private readonly options: ConnectionOptions) {
    this.targets = parseTargets(options.url);
    const ca = options.caFile === undefined ? undefined : readFileSync(options.caFile);
    const key = options.keyFile === undefined ? undefined : readFileSync(options.keyFile);
    const cert = options.certFile === undefined ? undefined : readFileSync(options.certFile);
    this.tlsCredentials = credentials.createSsl(ca, key, cert);
  }

  /** The grpc-js client for the node currently believed to lead. */
  client(): Client {
    const target = this.targets[this.current]!;
    let client = this.clients.get(target.hostPort);
    if (client === undefined) {
      const creds = target.tls ? this.tlsCredentials : credentials.createInsecure();
      client = new Client(target.hostPort, creds, {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
      });
      this.clients.set(target.hostPort, client);
    }
    return client;
  }

  /** Metadata for every call: the API key, when there is one. */
  metadata(): Metadata {
    const md = new Metadata();
    if (this.options.apiKey) md.set("authorization", `Bearer ${this.options.apiKey}`);
    if (this.options.namespace) md.set("ratequeue-namespace", this.options.namespace);
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
