// AdminService: declare and inspect resources. Changes go through a
// ResourceStore so that, with Redis, they are acknowledged only once durable.
import { create } from "@bufbuild/protobuf";
import { status, type UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  DeleteResourceResponseSchema,
  GetResourceResponseSchema,
  GetResourceStatsResponseSchema,
  ListResourcesResponseSchema,
  PutResourceResponseSchema,
  type DeleteResourceRequest,
  type GetResourceRequest,
  type GetResourceStatsRequest,
  type PutResourceRequest,
} from "@ratequeue/client/proto";
import type { Engine, ResourceSpec } from "../core/index.js";
import type { Logger } from "../log.js";
import { statsToProto } from "./convert.js";
import type { Gate } from "./gate.js";
import { unary } from "./handler.js";
import { RpcError } from "./rpc-error.js";
import { checkName, resourceFromProto, resourceToProto } from "./validate.js";

/**
 * Where resource definitions are made durable before the engine applies
 * them. The embedded default keeps them in memory only (a no-op store).
 */
export interface ResourceStore {
  /** Resolves once the definition is durable. */
  put(spec: ResourceSpec): Promise<void>;
  /** Resolves once the deletion is durable. */
  delete(name: string): Promise<void>;
}

export const memoryStore: ResourceStore = {
  put: async () => {},
  delete: async () => {},
};

export interface AdminDeps {
  engine: Engine;
  log: Logger;
  gate: Gate;
  store: ResourceStore;
}

export function createAdminService({ engine, log, gate, store }: AdminDeps): UntypedServiceImplementation {
  const guard = (): void => {
    const refusal = gate.refusal();
    if (refusal !== undefined) throw refusal;
  };
  const notFound = (name: string) => new RpcError(status.NOT_FOUND, `resource '${name}' not found`);

  return {
    putResource: unary(log, "PutResource", async (req: PutResourceRequest) => {
      guard();
      const spec = resourceFromProto(req.resource);
      await store.put(spec);
      const { created } = engine.putResource(spec);
      log.info("resource stored", { resource: spec.name, created });
      return create(PutResourceResponseSchema, { resource: resourceToProto(spec), created });
    }),
    getResource: unary(log, "GetResource", (req: GetResourceRequest) => {
      guard();
      const spec = engine.getResource(checkName("name", req.name));
      if (spec === undefined) throw notFound(req.name);
      return create(GetResourceResponseSchema, { resource: resourceToProto(spec) });
    }),
    listResources: unary(log, "ListResources", () => {
      guard();
      return create(ListResourcesResponseSchema, { resources: engine.listResources().map(resourceToProto) });
    }),
    deleteResource: unary(log, "DeleteResource", async (req: DeleteResourceRequest) => {
      guard();
      const name = checkName("name", req.name);
      if (engine.getResource(name) === undefined) throw notFound(name);
      await store.delete(name);
      engine.deleteResource(name);
      log.info("resource deleted", { resource: name });
      return create(DeleteResourceResponseSchema, {});
    }),
    getResourceStats: unary(log, "GetResourceStats", (req: GetResourceStatsRequest) => {
      guard();
      const name = checkName("name", req.name);
      const spec = engine.getResource(name);
      const stats = engine.stats(name);
      if (spec === undefined || stats === undefined) throw notFound(name);
      return create(GetResourceStatsResponseSchema, { stats: statsToProto(stats, spec) });
    }),
  };
}
