// AdminService: declare and inspect resources. Changes go through a
// ResourceStore so that, with Redis, they are acknowledged only once durable.
import { create } from "@bufbuild/protobuf";
import { status, type Metadata } from "@grpc/grpc-js";
import {
  DeleteResourceResponseSchema,
  GetResourceResponseSchema,
  GetResourceStatsResponseSchema,
  ListResourcesResponseSchema,
  PutResourceResponseSchema,
  type AdminService,
} from "@ratequeue/proto";
import type { Authenticator, Principal } from "../auth/index.js";
import type { Engine, ResourceSpec } from "../core/index.js";
import { RpcError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Gate, ResourceStore } from "../store/index.js";
import { checkName } from "../validate/fields.js";
import { resourceFromProto } from "../validate/requests.js";
import { createAccessAdmin } from "./access-admin.js";
import { resourceToProto, statsToProto } from "./convert.js";
import { unary } from "./handler.js";
import type { ServiceHandlers } from "./service-handlers.js";

export interface AdminDeps {
  engine: Engine;
  log: Logger;
  gate: Gate;
  store: ResourceStore;
  auth: Authenticator;
}

export function createAdminService(deps: AdminDeps): ServiceHandlers<typeof AdminService> {
  const { engine, log, gate, store, auth } = deps;
  const guard = (): void => {
    const refusal = gate.refusal();
    if (refusal !== undefined) throw refusal;
  };
  const notFound = (name: string) => new RpcError(status.NOT_FOUND, `resource '${name}' not found`);
  /** The caller, once authenticated; then the gate. */
  const caller = async (call: { metadata: Metadata; getPeer(): string }): Promise<Principal> => {
    const principal = await auth.authenticate(call.metadata, call.getPeer());
    guard();
    return principal;
  };
  /** A resource's spec in the caller's namespace, by its public name. */
  const specIn = (p: Principal, name: string): ResourceSpec | undefined => engine.getResource(p.scope.engineName(name));

  return {
    putResource: unary(log, "PutResource", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "PutResource");
      const publicSpec = resourceFromProto(req.resource);
      const spec = { ...publicSpec, name: p.scope.engineName(publicSpec.name) };
      await store.put(spec);
      const { created } = engine.putResource(spec);
      log.info("resource stored", { resource: spec.name, created });
      return create(PutResourceResponseSchema, { resource: resourceToProto(publicSpec), created });
    }),
    getResource: unary(log, "GetResource", async (req, call) => {
      const p = await caller(call);
      const spec = specIn(p, checkName("name", req.name));
      if (spec === undefined) throw notFound(req.name);
      return create(GetResourceResponseSchema, { resource: resourceToProto({ ...spec, name: req.name }) });
    }),
    listResources: unary(log, "ListResources", async (_req, call) => {
      const { scope } = await caller(call);
      const resources = engine
        .listResources()
        .filter((spec) => scope.owns(spec.name))
        .map((spec) => resourceToProto({ ...spec, name: scope.publicName(spec.name) }));
      return create(ListResourcesResponseSchema, { resources });
    }),
    deleteResource: unary(log, "DeleteResource", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "DeleteResource");
      const name = p.scope.engineName(checkName("name", req.name));
      if (engine.getResource(name) === undefined) throw notFound(req.name);
      await store.delete(name);
      engine.deleteResource(name);
      log.info("resource deleted", { resource: name });
      return create(DeleteResourceResponseSchema, {});
    }),
    getResourceStats: unary(log, "GetResourceStats", async (req, call) => {
      const p = await caller(call);
      const name = p.scope.engineName(checkName("name", req.name));
      const spec = engine.getResource(name);
      const stats = engine.stats(name);
      if (spec === undefined || stats === undefined) throw notFound(req.name);
      return create(GetResourceStatsResponseSchema, { stats: statsToProto(stats, spec, p.scope) });
    }),
    ...createAccessAdmin({ engine, log, auth, caller }),
  };
}
