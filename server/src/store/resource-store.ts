import type { ResourceSpec } from "../core/index.js";

/**
 * Where resource definitions are made durable before the engine applies
 * them.
 *
 * Callers: AdminService's PutResource(s) and DeleteResource (after validation
 * and authorisation), one call per RPC. They change the engine only once the
 * promise resolves, so an acknowledged change survives a restart or a
 * failover; on a rejection the RPC fails with it (an RpcError, typically
 * UNAVAILABLE) and the engine is left unchanged.
 *
 * An implementation must resolve only once the change is durable; write
 * only while this node may serve (a group: only the leader, through the same
 * fenced write as snapshots, so a deposed leader's change cannot land);
 * treat the deletion of an absent name as success; and never touch the
 * engine itself. Implementations: {@link memoryResourceStore} (a lone node:
 * the engine is the only copy) and RedisGroup (group.ts).
 */
export interface ResourceStore {
  /** Resolves once the definitions are durable (all of them, or the promise rejects). */
  put(specs: ResourceSpec[]): Promise<void>;
  /** Resolves once the deletion is durable. */
  delete(name: string): Promise<void>;
}

/** The embedded default: definitions live in the engine only, so there is nothing to wait for. */
export const memoryResourceStore: ResourceStore = {
  put: async () => {},
  delete: async () => {},
};
