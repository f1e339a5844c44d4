import type { KeyRecord } from "./keys.js";

/**
 * Where API keys and namespaces are made durable. The Authenticator keeps
 * the authoritative working copy in memory and checks every call against it
 * synchronously; it calls the store only when keys or namespaces change (and
 * acknowledges the change only once the store has resolved), and at start or
 * takeover to load everything.
 *
 * Callers: Authenticator.start() and Authenticator.reload() call load();
 * the key and namespace RPCs call the writers, one at a time per key or
 * namespace. The store never sees a secret: a KeyRecord holds only the key's
 * SHA-256; a store must never log, index or otherwise expose the hash either.
 *
 * A Redis implementation must:
 * - keep keys in one hash (e.g. `ratequeue:keys`, field = record id, value =
 *   the record as JSON) and namespaces in one set (e.g.
 *   `ratequeue:namespaces`), under the same key prefix and on the same Redis
 *   as resources, so that keys are exactly as durable as resources;
 * - resolve putKey/deleteKey/putNamespace/deleteNamespace only once the
 *   write is acknowledged with the same durability as resource writes (the
 *   same WAIT/replica policy); reject if it is not, so the RPC fails instead
 *   of reporting a key created or revoked that a failover would undo;
 * - write only while this node is the leader (the same fencing as resources),
 *   so that a deposed leader cannot resurrect a revoked key;
 * - return from load() every stored record and namespace, exactly as
 *   written; a node that becomes leader calls Authenticator.reload(), which
 *   calls load() and ends the open streams of keys that vanished;
 * - treat deleteKey/deleteNamespace of an absent id/name as success.
 */
export interface KeyStore {
  /** Every stored key and namespace. */
  load(): Promise<{ keys: KeyRecord[]; namespaces: string[] }>;
  /** Resolves once the key is durable. */
  putKey(record: KeyRecord): Promise<void>;
  /** Resolves once the key's removal (its revocation) is durable. */
  deleteKey(id: string): Promise<void>;
  /** Resolves once the namespace is durable. */
  putNamespace(name: string): Promise<void>;
  /** Resolves once the namespace's removal is durable. */
  deleteNamespace(name: string): Promise<void>;
}

/** A KeyStore in memory: keys live as long as the process (the embedded default). */
export class MemoryKeyStore implements KeyStore {
  readonly keys = new Map<string, KeyRecord>();
  readonly namespaces = new Set<string>();

  async load(): Promise<{ keys: KeyRecord[]; namespaces: string[] }> {
    return { keys: [...this.keys.values()].map((k) => ({ ...k })), namespaces: [...this.namespaces] };
  }
  async putKey(record: KeyRecord): Promise<void> {
    this.keys.set(record.id, { ...record });
  }
  async deleteKey(id: string): Promise<void> {
    this.keys.delete(id);
  }
  async putNamespace(name: string): Promise<void> {
    this.namespaces.add(name);
  }
  async deleteNamespace(name: string): Promise<void> {
    this.namespaces.delete(name);
  }
}
