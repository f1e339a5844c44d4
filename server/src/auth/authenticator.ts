// Who is calling: the bearer key of every call, checked against the keys in
// memory, and the namespace it acts in. Also the key and namespace changes
// behind the admin RPCs, made durable through a KeyStore first.
import { status, type Metadata } from "@grpc/grpc-js";
import { authorizationMetadataKey, namespaceMetadataKey } from "@ratequeue/proto";
import { RpcError } from "../errors.js";
import type { Logger } from "../log.js";
import { checkNamespace } from "../validate/fields.js";
import type { KeyStore } from "./key-store.js";
import { generateKey, hashKey, keyId, matches, type KeyRecord, type Role } from "./keys.js";
import { defaultNamespace, scopeOf, type Scope } from "./scope.js";
import { FailureThrottle, peerAddress, type ThrottleOptions } from "./throttle.js";

/** Id of the root key given by RATEQUEUE_ROOT_KEY or --root-key-file. */
export const configuredRootId = "root";

/** The caller of one RPC. */
export interface Principal {
  /** The key's id; "anonymous" when authentication is off. */
  keyId: string;
  role: Role;
  /** The namespace this call acts in. */
  namespace: string;
  scope: Scope;
}

export interface AuthenticatorOptions {
  store: KeyStore;
  log: Logger;
  /** A root key given by the operator (RATEQUEUE_ROOT_KEY, --root-key-file). */
  rootKey?: string;
  /** Namespaces that exist from the config file. */
  namespaces?: string[];
  throttle?: ThrottleOptions;
  now?: () => number;
}

const roleRank: Record<Role, number> = { worker: 0, admin: 1, root: 2 };

type RevokeListener = (err: RpcError) => void;

export class Authenticator {
  private readonly keys = new Map<string, KeyRecord>();
  private readonly namespaces = new Set<string>([defaultNamespace]);
  private readonly listeners = new Map<string, Set<RevokeListener>>();
  private readonly throttle: FailureThrottle;
  private readonly now: () => number;
  private rootHash: string | undefined;
  private on = false;
  /** Calls refused for a missing, malformed or unknown key (ratequeue_auth_failures_total). */
  failures = 0;

  constructor(private readonly options: AuthenticatorOptions) {
    this.now = options.now ?? Date.now;
    this.throttle = new FailureThrottle(options.throttle, this.now);
    if (options.rootKey !== undefined) this.rootHash = hashKey(options.rootKey);
  }

  /** True when calls must carry a valid key. */
  get enabled(): boolean {
    return this.on;
  }

  /** Loads keys and namespaces; authentication is on once any root key exists. */
  async start(): Promise<void> {
    await this.reload();
    for (const ns of this.options.namespaces ?? []) {
      if (!this.namespaces.has(ns)) await this.createNamespace(ns);
    }
  }

  /**
   * Replaces the keys and namespaces in memory with the store's (at start,
   * and when this node takes over as leader). Open streams of keys that are
   * gone end with UNAUTHENTICATED.
   */
  async reload(): Promise<void> {
    const { keys, namespaces } = await this.options.store.load();
    const before = [...this.keys.keys()];
    this.keys.clear();
    for (const k of keys) this.keys.set(k.id, k);
    for (const ns of namespaces) this.namespaces.add(ns);
    for (const id of before) if (!this.keys.has(id)) this.revoked(id);
    this.on = this.rootHash !== undefined || [...this.keys.values()].some((k) => k.role === "root");
  }

  /** Makes a root key, stores it and turns authentication on; returns the key (show it once). */
  async bootstrapRootKey(): Promise<string> {
    const { key, record } = generateKey(defaultNamespace, "root", "bootstrap root key, generated at first start", this.now());
    await this.options.store.putKey(record);
    this.keys.set(record.id, record);
    this.on = true;
    return key;
  }

  /**
   * The caller of an RPC. Rejects with UNAUTHENTICATED (a missing, malformed
   * or unknown key; repeated failures from one address are answered late),
   * PERMISSION_DENIED (another namespace than the key's) or NOT_FOUND (a
   * root key naming a namespace that does not exist).
   */
  async authenticate(metadata: Metadata, peer: string): Promise<Principal> {
    const asked = metadata.get(namespaceMetadataKey)[0];
    const requested = typeof asked === "string" && asked !== "" ? asked : undefined;
    if (!this.on) return this.principal("anonymous", "root", requested ?? defaultNamespace);
    const record = this.check(metadata.get(authorizationMetadataKey)[0]);
    if (typeof record === "string") {
      this.failures++;
      const address = peerAddress(peer);
      await this.throttle.delay(address, this.throttle.failed(address));
      throw new RpcError(status.UNAUTHENTICATED, record);
    }
    if (record.role !== "root" && requested !== undefined && requested !== record.namespace) {
      throw new RpcError(status.PERMISSION_DENIED, `this API key acts only in its own namespace, not in '${requested}'`);
    }
    return this.principal(record.id, record.role, requested ?? record.namespace);
  }

  /** Throws PERMISSION_DENIED unless the caller's role is at least `role`. */
  require(p: Principal, role: Role, what: string): void {
    if (roleRank[p.role] < roleRank[role]) {
      throw new RpcError(status.PERMISSION_DENIED, `${what} needs ${role === "admin" ? "an" : "a"} ${role} key; this key's role is ${p.role}`);
    }
  }

  /** Calls `fn` when the key is revoked; returns the unsubscribe function. */
  onRevoked(keyId: string, fn: RevokeListener): () => void {
    let set = this.listeners.get(keyId);
    if (set === undefined) this.listeners.set(keyId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.listeners.get(keyId) === set) this.listeners.delete(keyId);
    };
  }

  // ---------------------------------------------------------------- namespaces

  hasNamespace(name: string): boolean {
    return this.namespaces.has(name);
  }

  listNamespaces(): string[] {
    return [...this.namespaces].sort();
  }

  /** Creates a namespace durably; false when it existed. */
  async createNamespace(name: string): Promise<boolean> {
    checkNamespace("name", name);
    if (this.namespaces.has(name)) return false;
    await this.options.store.putNamespace(name);
    this.namespaces.add(name);
    this.options.log.info("namespace created", { namespace: name });
    return true;
  }

  /** Deletes a namespace and revokes its keys; returns how many. */
  async deleteNamespace(name: string): Promise<number> {
    const revoked = [...this.keys.values()].filter((k) => k.namespace === name);
    for (const k of revoked) await this.revokeKey(k.id);
    await this.options.store.deleteNamespace(name);
    this.namespaces.delete(name);
    this.options.log.info("namespace deleted", { namespace: name, revokedKeys: revoked.length });
    return revoked.length;
  }

  // ---------------------------------------------------------------------- keys

  /** Creates and stores a key; the returned key string is never kept. */
  async createKey(namespace: string, role: Role, description: string): Promise<{ key: string; record: KeyRecord }> {
    let made = generateKey(namespace, role, description, this.now());
    while (this.keys.has(made.record.id) || made.record.id === configuredRootId) made = generateKey(namespace, role, description, this.now());
    await this.options.store.putKey(made.record);
    this.keys.set(made.record.id, made.record);
    this.options.log.info("api key created", { id: made.record.id, namespace, role });
    return made;
  }

  getKey(id: string): KeyRecord | undefined {
    return this.keys.get(id);
  }

  /** Keys without secrets, ordered by namespace and id; all namespaces when undefined. */
  listKeys(namespace?: string): KeyRecord[] {
    return [...this.keys.values()]
      .filter((k) => namespace === undefined || k.namespace === namespace)
      .sort((a, b) => (a.namespace === b.namespace ? (a.id < b.id ? -1 : 1) : a.namespace < b.namespace ? -1 : 1));
  }

  /** Revokes a key durably and ends its streams; false when unknown. */
  async revokeKey(id: string): Promise<boolean> {
    if (!this.keys.has(id)) return false;
    await this.options.store.deleteKey(id);
    this.keys.delete(id);
    this.options.log.info("api key revoked", { id });
    this.revoked(id);
    return true;
  }

  private revoked(id: string): void {
    const set = this.listeners.get(id);
    if (set === undefined) return;
    this.listeners.delete(id);
    const err = new RpcError(status.UNAUTHENTICATED, "the API key was revoked");
    for (const fn of set) fn(err);
  }

  /** The key's record, or why the key was refused. */
  private check(header: unknown): KeyRecord | string {
    if (typeof header !== "string" || header === "") {
      return "missing credentials: send metadata 'authorization: Bearer <key>' (RATEQUEUE_API_KEY)";
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m === null) return "malformed authorization metadata: expected 'Bearer <key>'";
    const key = m[1]!;
    if (key.length > 512) return "invalid API key";
    const id = keyId(key);
    const record = id === undefined ? undefined : this.keys.get(id);
    if (record !== undefined && matches(key, record.hash)) return record;
    if (this.rootHash !== undefined && matches(key, this.rootHash)) {
      return { id: configuredRootId, namespace: defaultNamespace, role: "root", hash: this.rootHash, description: "", createdAt: 0 };
    }
    return "invalid API key (unknown or revoked)";
  }

  private principal(keyId: string, role: Role, namespace: string): Principal {
    if (!this.namespaces.has(namespace)) {
      throw new RpcError(status.NOT_FOUND, `namespace '${namespace}' not found`);
    }
    return { keyId, role, namespace, scope: scopeOf(namespace) };
  }
}
