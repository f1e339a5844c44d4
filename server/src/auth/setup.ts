// First start: the server is never open without keys by accident. With a
// root key (given, or stored from an earlier start) authentication is on. A
// loopback address may run without keys, and says so loudly; any other
// address without keys needs --insecure, or else a root key is generated,
// stored and printed once.
import { isIP } from "node:net";
import type { Logger } from "../log.js";
import { Authenticator } from "./authenticator.js";
import { MemoryKeyStore, type KeyStore } from "./key-store.js";
import type { ThrottleOptions } from "./throttle.js";

export interface AuthOptions {
  /** The operator's root key (RATEQUEUE_ROOT_KEY or --root-key-file). */
  rootKey?: string;
  /** Where keys and namespaces are durable. Default: memory. */
  store?: KeyStore;
  /** Serve a non-loopback address without keys (--insecure). */
  insecure?: boolean;
  /** Namespaces declared in the config file. */
  namespaces?: string[];
  throttle?: ThrottleOptions;
  /** Keys are shared by a Redis group (store is its RedisKeyStore): a root key is never generated. */
  group?: boolean;
  /** Where a generated root key is shown (once). Default: stderr. */
  showKey?: (line: string) => void;
}

/** The shortest root key the server accepts. */
const minRootKeyLength = 32;

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

export async function setupAuth(host: string, options: AuthOptions, log: Logger): Promise<Authenticator> {
  if (options.rootKey !== undefined && options.rootKey.length < minRootKeyLength) {
    throw new Error(`the root key must be at least ${minRootKeyLength} characters (RATEQUEUE_ROOT_KEY / --root-key-file); generate one with: openssl rand -base64 32`);
  }
  const auth = new Authenticator({
    store: options.store ?? new MemoryKeyStore(),
    log,
    rootKey: options.rootKey,
    namespaces: options.namespaces,
    throttle: options.throttle,
  });
  await auth.start();
  if (auth.enabled) {
    log.info("authentication on", { rootKey: options.rootKey !== undefined ? "configured" : "stored" });
    return auth;
  }
  if (isLoopback(host) || options.insecure === true) {
    log.warn("AUTHENTICATION IS OFF: any client that reaches this port may use and change every resource", {
      host,
      reason: options.insecure === true ? "--insecure" : "loopback address",
      fix: "set RATEQUEUE_ROOT_KEY or --root-key-file to require API keys",
    });
    return auth;
  }
  // In a group no root key is generated: a node is not yet leader at start,
  // so it could not store one, and two nodes starting together would each
  // print a different key. Redis holds no root key here (else auth is on), so
  // the operator gives one, the same on every node.
  if (options.group === true) {
    throw new Error(
      `binding ${host} with --redis and no root key: set RATEQUEUE_ROOT_KEY or --root-key-file (the same key on every node of the group), or pass --insecure; a group never generates a root key`,
    );
  }
  const key = await auth.bootstrapRootKey();
  const show = options.showKey ?? ((line: string) => process.stderr.write(line + "\n"));
  show(`ratequeue: generated a root key; it is shown only this once, store it now:\n\n  RATEQUEUE_ROOT_KEY=${key}\n`);
  log.warn("root key generated and printed once on stderr; authentication on", { host });
  return auth;
}
