// AdminService over grpc-js with promises: declare resources, read stats.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceError } from "@grpc/grpc-js";
import { Connection, type ClientOptions } from "./connection.js";
import { RateQueueError } from "./errors.js";
import {
  AdminService,
  ApiKeyRole,
  CreateApiKeyRequestSchema,
  CreateNamespaceRequestSchema,
  DeleteNamespaceRequestSchema,
  ListApiKeysRequestSchema,
  ListNamespacesRequestSchema,
  RevokeApiKeyRequestSchema,
  type ApiKey,
  DeleteResourceRequestSchema,
  GetResourceRequestSchema,
  GetResourceStatsRequestSchema,
  grpcServiceDefinition,
  ListResourcesRequestSchema,
  PutResourceRequestSchema,
  type Resource,
  type ResourceSchema,
  type ResourceStats,
} from "@ratequeue/proto";

const methods = grpcServiceDefinition(AdminService);

export interface AdminClient {
  /** Creates or replaces a resource; returns it with defaults filled in. */
  putResource(resource: MessageInitShape<typeof ResourceSchema>): Promise<{ resource: Resource; created: boolean }>;
  getResource(name: string): Promise<Resource>;
  listResources(): Promise<Resource[]>;
  deleteResource(name: string): Promise<void>;
  getResourceStats(name: string): Promise<ResourceStats>;
  /** Makes an API key; `key` is its secret, shown only here. Default namespace: the caller's. */
  createApiKey(options: { namespace?: string; role: ApiKeyRoleName; description?: string }): Promise<{ key: string; apiKey: ApiKey }>;
  /** Keys without secrets; every namespace the caller may see unless one is named. */
  listApiKeys(namespace?: string): Promise<ApiKey[]>;
  /** Revokes a key by id; it stops working at once. */
  revokeApiKey(id: string): Promise<void>;
  /** Root keys: namespaces. */
  createNamespace(name: string): Promise<{ created: boolean }>;
  listNamespaces(): Promise<string[]>;
  deleteNamespace(name: string): Promise<{ revokedKeys: number }>;
  close(): void;
}

/** An API key's role by name. */
export type ApiKeyRoleName = "worker" | "admin" | "root";

const roleValues: Record<ApiKeyRoleName, ApiKeyRole> = { worker: ApiKeyRole.WORKER, admin: ApiKeyRole.ADMIN, root: ApiKeyRole.ROOT };

/** The name of an ApiKeyRole value. */
export function roleName(role: ApiKeyRole): ApiKeyRoleName | "unspecified" {
  return role === ApiKeyRole.WORKER ? "worker" : role === ApiKeyRole.ADMIN ? "admin" : role === ApiKeyRole.ROOT ? "root" : "unspecified";
}

/** Creates an admin client (same options and defaults as createClient). */
export function createAdminClient(options: ClientOptions = {}): AdminClient {
  const connection = new Connection(options);

  function call<K extends keyof typeof methods>(method: K, request: unknown): Promise<ReturnType<(typeof methods)[K]["responseDeserialize"]>> {
    const m = methods[method]!;
    return new Promise((resolve, reject) => {
      connection
        .client()
        .makeUnaryRequest(m.path, m.requestSerialize as (v: unknown) => Buffer, m.responseDeserialize, request, connection.metadata(), (err, response) => {
          if (err) {
            const e = err as ServiceError;
            if (e.code === 14) connection.moveOn(e);
            reject(RateQueueError.fromCode(e.code, e.details));
          } else {
            resolve(response as ReturnType<(typeof methods)[K]["responseDeserialize"]>);
          }
        });
    });
  }

  return {
    async putResource(resource) {
      const r = await call("putResource", create(PutResourceRequestSchema, { resource }));
      return { resource: r.resource!, created: r.created };
    },
    async getResource(name) {
      return (await call("getResource", create(GetResourceRequestSchema, { name }))).resource!;
    },
    async listResources() {
      return (await call("listResources", create(ListResourcesRequestSchema, {}))).resources;
    },
    async deleteResource(name) {
      await call("deleteResource", create(DeleteResourceRequestSchema, { name }));
    },
    async getResourceStats(name) {
      return (await call("getResourceStats", create(GetResourceStatsRequestSchema, { name }))).stats!;
    },
    async createApiKey({ namespace, role, description }) {
      const value = roleValues[role];
      if (value === undefined) throw new RateQueueError("INVALID_ARGUMENT", `role: must be worker, admin or root, got '${role}'`);
      const r = await call("createApiKey", create(CreateApiKeyRequestSchema, { namespace: namespace ?? "", role: value, description: description ?? "" }));
      return { key: r.key, apiKey: r.apiKey! };
    },
    async listApiKeys(namespace) {
      return (await call("listApiKeys", create(ListApiKeysRequestSchema, { namespace: namespace ?? "" }))).apiKeys;
    },
    async revokeApiKey(id) {
      await call("revokeApiKey", create(RevokeApiKeyRequestSchema, { id }));
    },
    async createNamespace(name) {
      return { created: (await call("createNamespace", create(CreateNamespaceRequestSchema, { name }))).created };
    },
    async listNamespaces() {
      return (await call("listNamespaces", create(ListNamespacesRequestSchema, {}))).namespaces.map((n) => n.name);
    },
    async deleteNamespace(name) {
      return { revokedKeys: (await call("deleteNamespace", create(DeleteNamespaceRequestSchema, { name }))).revokedKeys };
    },
    close: () => connection.close(),
  };
}
