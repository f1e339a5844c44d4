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
  PutResourcesResponseSchema,
  type AdminService,
} from "@ratequeue/proto";
import type { Authenticator, Principal } from "../auth/index.js";
import type { Engine, ResourceSpec } from "../core/index.js";
import { invalidField, RpcError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Gate, ResourceStore } from "../store/index.js";
import { checkName, checkNumber, limits } from "../validate/fields.js";
import { resourceFromProto } from "../validate/requests.js";
import { createAccessAdmin } from "./access-admin.js";
import { resourceToProto, statsToProto, statusOf } from "./convert.js";
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

  /** Refuses a put that the tree cannot take, in the caller's words. */
  const checkTree = (p: Principal, spec: ResourceSpec): void => {
    if (spec.parent !== undefined && !p.scope.owns(spec.parent)) {
      // A parent of another namespace takes children only from the namespaces it names.
      const parent = engine.getResource(spec.parent);
      if (parent === undefined || !(parent.childrenFrom ?? []).includes(p.namespace)) {
        throw new RpcError(
          parent === undefined ? status.NOT_FOUND : status.PERMISSION_DENIED,
          parent === undefined
            ? `parent '${p.scope.publicRef(spec.parent)}' not found`
            : `resource '${p.scope.publicRef(spec.parent)}' does not take children from namespace '${p.namespace}' (its children_from)`,
        );
      }
    }
    const problem = engine.treeProblem(spec);
    if (problem !== undefined) throw new RpcError(statusOf(problem.code), p.scope.publicMessage(problem.message));
  };
  /** The children of `parentRef` the caller may list: all of its own resource's, only its own of another namespace's parent. */
  const childrenIn = (p: Principal, parentRef: string): string[] => {
    const ref = p.scope.engineRef(parentRef.includes("@") ? parentRef : checkName("parent", parentRef));
    const own = p.scope.owns(ref);
    const parent = engine.getResource(ref);
    if (parent === undefined || (!own && !(parent.childrenFrom ?? []).includes(p.namespace))) throw notFound(parentRef);
    const names = engine.listChildren(ref) ?? [];
    return own ? names : names.filter((n) => p.scope.owns(n));
  };

  return {
    putResource: unary(log, "PutResource", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "PutResource");
      const spec = p.scope.engineSpec(resourceFromProto(req.resource));
      checkTree(p, spec);
      await store.put([spec]);
      const { created } = engine.putResource(spec);
      log.info("resource stored", { resource: spec.name, created });
      return create(PutResourceResponseSchema, { resource: resourceToProto(p.scope.publicSpec(spec)), created });
    }),
    putResources: unary(log, "PutResources", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "PutResources");
      if (req.resources.length > limits.maxResourcesPerPut) {
        throw invalidField("resources", `must hold at most ${limits.maxResourcesPerPut} resources, got ${req.resources.length}`);
      }
      const specs = req.resources.map((r, i) => {
        try {
          return p.scope.engineSpec(resourceFromProto(r));
        } catch (err) {
          if (err instanceof RpcError) throw new RpcError(err.code, `resources[${i}]: ${err.message}`);
          throw err;
        }
      });
      // In order: a resource's parent may come earlier in the same call.
      let done = 0;
      let created = 0;
      try {
        for (; done < specs.length; done++) {
          checkTree(p, specs[done]!);
          // One durable write for each run of resources that fit the tree as it stands.
          let end = done + 1;
          while (end < specs.length && specs[end]!.parent === undefined && engine.treeProblem(specs[end]!) === undefined) end++;
          const run = specs.slice(done, end);
          await store.put(run);
          for (const spec of run) if (engine.putResource(spec).created) created++;
          done = end - 1;
        }
      } catch (err) {
        if (err instanceof RpcError) throw new RpcError(err.code, `resources[${done}]: ${err.message}`);
        throw err;
      }
      log.info("resources stored", { count: specs.length, created });
      return create(PutResourcesResponseSchema, { created, replaced: specs.length - created });
    }),
    getResource: unary(log, "GetResource", async (req, call) => {
      const p = await caller(call);
      const spec = specIn(p, checkName("name", req.name));
      if (spec === undefined) throw notFound(req.name);
      return create(GetResourceResponseSchema, { resource: resourceToProto(p.scope.publicSpec(spec)) });
    }),
    listResources: unary(log, "ListResources", async (req, call) => {
      const p = await caller(call);
      const pageSize = checkNumber("page_size", req.pageSize, 0, limits.maxPageSize, "an integer");
      const after = req.pageToken === "" ? undefined : pageTokenName(req.pageToken);
      if (req.parent === "") {
        // The namespace's declared resources, a page at a time, copying only the page.
        const size = pageSize > 0 ? pageSize : Infinity;
        const specs = engine.listResources({
          ...(after !== undefined && { after }),
          ...(size !== Infinity && { limit: size + 1 }),
          include: (name) => p.scope.owns(name),
        });
        const page = specs.slice(0, size);
        return create(ListResourcesResponseSchema, {
          resources: page.map((spec) => resourceToProto(p.scope.publicSpec(spec))),
          nextPageToken: specs.length > size ? pageTokenOf(page[page.length - 1]!.name) : "",
        });
      }
      // Children are never all sent at once: a resource may have a million keyed ones.
      const names = childrenIn(p, req.parent);
      const size = pageSize > 0 ? pageSize : limits.maxPageSize;
      const start = after === undefined ? 0 : firstAfter(names, after);
      const page = names.slice(start, start + size);
      const resources = page.flatMap((name) => {
        const spec = engine.getResource(name);
        return spec === undefined ? [] : [resourceToProto(p.scope.publicSpec(spec))];
      });
      const more = start + size < names.length;
      return create(ListResourcesResponseSchema, { resources, nextPageToken: more ? pageTokenOf(page[page.length - 1]!) : "" });
    }),
    deleteResource: unary(log, "DeleteResource", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "DeleteResource");
      const name = p.scope.engineName(checkName("name", req.name));
      if (engine.getResource(name) === undefined) throw notFound(req.name);
      const problem = engine.deleteProblem(name);
      if (problem !== undefined) throw new RpcError(statusOf(problem.code), p.scope.publicMessage(problem.message));
      await store.delete(name);
      engine.deleteResource(name);
      log.info("resource deleted", { resource: name });
      return create(DeleteResourceResponseSchema, {});
    }),
    getResourceStats: unary(log, "GetResourceStats", async (req, call) => {
      const p = await caller(call);
      const name = p.scope.engineName(checkName("name", req.name));
      const childrenLimit = req.childrenLimit === 0 ? 20 : checkNumber("children_limit", req.childrenLimit, 1, limits.maxPageSize, "an integer");
      const stats = engine.stats(name, { limit: childrenLimit });
      if (stats === undefined) throw notFound(req.name);
      return create(GetResourceStatsResponseSchema, { stats: statsToProto(stats, p.scope) });
    }),
    ...createAccessAdmin({ engine, log, auth, caller }),
  };
}

/** A page token: the last name of the previous page, opaque to clients. */
function pageTokenOf(name: string): string {
  return Buffer.from(name, "utf8").toString("base64url");
}

function pageTokenName(token: string): string {
  const name = Buffer.from(token, "base64url").toString("utf8");
  if (name === "" || pageTokenOf(name) !== token) throw invalidField("page_token", "is not a token this server gave; pass next_page_token as it came");
  return name;
}

/** The index of the first name after `after` in sorted `names`. */
function firstAfter(names: string[], after: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (names[mid]! <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
