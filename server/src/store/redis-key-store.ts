// API keys and namespaces in Redis, exactly as durable as resources: the
// same Redis, prefix and fenced scripts (redis-store.ts), written through the
// group's one write path, so only the current leader's writes land and a
// deposed leader cannot resurrect a revoked key. See auth/key-store.ts for
// the contract.
import type { KeyRecord, KeyStore } from "../auth/index.js";
import type { Logger } from "../log.js";
import type { RedisStore, Term } from "./redis-store.js";

/** The group's fenced write: runs `fn` with the current term, or rejects (UNAVAILABLE) on a non-leader. */
export type FencedWrite = (fn: (term: Term) => Promise<void>) => Promise<void>;

export class RedisKeyStore implements KeyStore {
  constructor(
    private readonly store: RedisStore,
    private readonly write: FencedWrite,
    private readonly log: Logger,
  ) {}

  /**
   * Waits for the Redis connection first: at start the node must know
   * whether Redis holds keys (a stored root key turns authentication on)
   * before it decides anything, and commands fail at once while disconnected.
   */
  async load(): Promise<{ keys: KeyRecord[]; namespaces: string[] }> {
    const { redis } = this.store;
    if (redis.status !== "ready") {
      this.log.info("waiting for Redis to load API keys and namespaces");
      await new Promise<void>((resolve) => redis.once("ready", () => resolve()));
    }
    return this.store.loadKeys();
  }

  putKey(record: KeyRecord): Promise<void> {
    return this.write((term) => this.store.putKey(term, record));
  }

  deleteKey(id: string): Promise<void> {
    return this.write((term) => this.store.deleteKey(term, id));
  }

  putNamespace(name: string): Promise<void> {
    return this.write((term) => this.store.putNamespaces(term, [name]));
  }

  deleteNamespace(name: string): Promise<void> {
    return this.write((term) => this.store.deleteNamespace(term, name));
  }
}
