// AdminService over grpc-js with promises: resources in the config file's
// shape (admin-shapes.ts converts), their statistics, API keys and namespaces.
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceError } from "@grpc/grpc-js";
import { Connection, type ClientOptions } from "./connection.js";
import { RateQueueError } from "./errors.js";
import {
  AdminService,
  CreateApiKeyRequestSchema,
  CreateNamespaceRequestSchema,
  DeleteNamespaceRequestSchema,
  DeleteResourceRequestSchema,
  GetResourceRequestSchema,
  GetResourceStatsRequestSchema,
  grpcServiceDefinition,
  ListApiKeysRequestSchema,
  ListNamespacesRequestSchema,
  ListResourcesRequestSchema,
  PutResourceRequestSchema,
  PutResourcesRequestSchema,
  ResourceSchema,
  RevokeApiKeyRequestSchema,
  type ApiKey as ApiKeyMessage,
  type Resource as ResourceMessage,
  type ResourceStats as ResourceStatsMessage,
} from "@ratequeue/proto";
import {
  apiKeyFromMessage,
  count,
  resourceFromMessage,
  resourceToMessage,
  roleValues,
  statsFromMessage,
  type ApiKey,
  type ApiKeyRoleName,
  type ResourceConfig,
  type ResourceStats,
  type StoredResource,
} from "./admin-shapes.js";

const methods = grpcServiceDefinition(AdminService);

/**
 * Declares and inspects resources, and manages API keys and namespaces.
 *
 * Resources go in and come out in the config file's shape
 * (`{ name, limits: [{ dimension: "requests", amount: 500, period: "60s" }], lanes: { "user-facing": 3 }, leaseTtl: "30s" }`),
 * statistics and keys as plain objects with numbers and dates. The protobuf
 * messages themselves are under {@link AdminClient.raw}.
 *
 * Every failure is a {@link RateQueueError}. A field this client cannot even
 * encode (an unknown key, a duration it cannot read) fails before any call
 * with `INVALID_ARGUMENT` and a message that starts with the field's name,
 * in the same form as the server's own validation (`resource.limits[0].period: ...`).
 */
export interface AdminClient {
  /** Creates or replaces a resource; returns it as stored (defaults filled in) and whether it is new. */
  putResource(resource: ResourceConfig): Promise<{ resource: StoredResource; created: boolean }>;
  /**
   * Creates or replaces many resources, in order (a parent before its
   * children), each as putResource would, in as few calls as the server
   * takes (PutResources: up to 1000 resources or 512 KiB a call); returns
   * how many were new and how many replaced one. Every resource is encoded
   * before any call. A resource the server refuses stops there, with an
   * error whose message starts with its index (`resources[12]: ...`): those
   * before it stay put.
   */
  putResources(resources: ResourceConfig[]): Promise<{ created: number; replaced: number }>;
  /** One resource as stored; `NOT_FOUND` if there is none by that name. */
  getResource(name: string): Promise<StoredResource>;
  /** Every declared resource of the caller's namespace, ordered by name (keyed children are listed with their parent, below). */
  listResources(): Promise<StoredResource[]>;
  /**
   * A page of resources, ordered by name, and the token of the next page
   * (empty after the last one): pass it as the next call's `pageToken`,
   * with the same `pageSize` and `parent`. With `parent`, the direct
   * children of that resource, keyed ones included.
   */
  listResources(options: ListResourcesOptions): Promise<ResourcePage>;
  /**
   * Every resource listResources(options) pages through, fetched a page at
   * a time as the loop asks for more (`pageSize` default 1000):
   * `for await (const child of admin.iterateResources({ parent: "openai-gpt4" }))`.
   */
  iterateResources(options?: Omit<ListResourcesOptions, "pageToken">): AsyncIterableIterator<StoredResource>;
  /**
   * Deletes a resource: its waiting acquires fail with `NOT_FOUND` and its
   * leases end. A resource with declared children fails with
   * `FAILED_PRECONDITION`: delete the children first.
   */
  deleteResource(name: string): Promise<void>;
  /** A resource's live state and counters, with its busiest children (`childrenLimit`, default 20, at most 1000) and its parent's state. */
  getResourceStats(name: string, options?: ResourceStatsOptions): Promise<ResourceStats>;
  /** Makes an API key; `key` is its secret, shown only here. Default namespace: the caller's. */
  createApiKey(options: { namespace?: string; role: ApiKeyRoleName; description?: string }): Promise<{ key: string; apiKey: ApiKey }>;
  /** Keys without secrets; every namespace the caller may see unless one is named. */
  listApiKeys(namespace?: string): Promise<ApiKey[]>;
  /** Revokes a key by id; it stops working at once. */
  revokeApiKey(id: string): Promise<void>;
  /** Root keys: creates a namespace. */
  createNamespace(name: string): Promise<{ created: boolean }>;
  /** Root keys: every namespace, ordered by name. */
  listNamespaces(): Promise<string[]>;
  /** Root keys: deletes an empty namespace and revokes its keys. */
  deleteNamespace(name: string): Promise<{ revokedKeys: number }>;
  /** The same calls with the protobuf messages of `@ratequeue/proto`, where those differ from the shapes above. */
  readonly raw: RawAdminClient;
  close(): void;
}

/** Which page of resources listResources returns. */
export interface ListResourcesOptions {
  /**
   * The most resources in the page, at most 1000. Absent or 0: every
   * declared resource in one page; with `parent`, at most 1000 children.
   */
  pageSize?: number;
  /** The `nextPageToken` of the previous page; absent or empty for the first page. */
  pageToken?: string;
  /** List the direct children of this resource, keyed children included. Absent: the declared resources of the namespace. */
  parent?: string;
}

/** A page of listResources. */
export interface ResourcePage {
  /** Ordered by name. */
  resources: StoredResource[];
  /** Pass as `pageToken` for the next page; empty on the last page. */
  nextPageToken: string;
}

/** What getResourceStats describes besides the resource itself. */
export interface ResourceStatsOptions {
  /** The most children in `children`, the busiest first, at most 1000. Absent or 0: 20. */
  childrenLimit?: number;
}

/** The admin calls whose shapes differ, with the protobuf messages as they are on the wire. */
export interface RawAdminClient {
  putResource(resource: MessageInitShape<typeof ResourceSchema>): Promise<{ resource: ResourceMessage; created: boolean }>;
  /** One PutResources call: at most 10,000 resources, within the server's message size (1 MiB by default). */
  putResources(resources: MessageInitShape<typeof ResourceSchema>[]): Promise<{ created: number; replaced: number }>;
  getResource(name: string): Promise<ResourceMessage>;
  listResources(): Promise<ResourceMessage[]>;
  listResources(options: ListResourcesOptions): Promise<{ resources: ResourceMessage[]; nextPageToken: string }>;
  getResourceStats(name: string, options?: ResourceStatsOptions): Promise<ResourceStatsMessage>;
  createApiKey(options: { namespace?: string; role: ApiKeyRoleName; description?: string }): Promise<{ key: string; apiKey: ApiKeyMessage }>;
  listApiKeys(namespace?: string): Promise<ApiKeyMessage[]>;
}

/** Creates an admin client (same options and defaults as createClient: RATEQUEUE_URL, RATEQUEUE_API_KEY, RATEQUEUE_CA_FILE). */
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

  const raw: RawAdminClient = {
    async putResource(resource) {
      const r = await call("putResource", create(PutResourceRequestSchema, { resource }));
      return { resource: r.resource!, created: r.created };
    },
    async putResources(resources) {
      const r = await call("putResources", create(PutResourcesRequestSchema, { resources }));
      return { created: r.created, replaced: r.replaced };
    },
    async getResource(name) {
      return (await call("getResource", create(GetResourceRequestSchema, { name }))).resource!;
    },
    listResources: (async (options?: ListResourcesOptions) => {
      const request = create(ListResourcesRequestSchema, {
        pageSize: options?.pageSize === undefined ? 0 : count("pageSize", options.pageSize),
        pageToken: options?.pageToken ?? "",
        parent: options?.parent ?? "",
      });
      const { resources, nextPageToken } = await call("listResources", request);
      return options === undefined ? resources : { resources, nextPageToken };
    }) as RawAdminClient["listResources"],
    async getResourceStats(name, options) {
      const childrenLimit = options?.childrenLimit === undefined ? 0 : count("childrenLimit", options.childrenLimit);
      return (await call("getResourceStats", create(GetResourceStatsRequestSchema, { name, childrenLimit }))).stats!;
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
  };

  return {
    raw,
    async putResource(resource) {
      const put = await raw.putResource(resourceToMessage(resource));
      return { resource: resourceFromMessage(put.resource), created: put.created };
    },
    async putResources(resources) {
      const messages = resources.map((resource, i) => {
        try {
          return create(ResourceSchema, resourceToMessage(resource));
        } catch (err) {
          throw err instanceof RateQueueError ? new RateQueueError(err.code, `resources[${i}]: ${err.message}`) : err;
        }
      });
      let created = 0;
      let replaced = 0;
      for (const [start, end] of putBatches(messages)) {
        try {
          const put = await raw.putResources(messages.slice(start, end));
          created += put.created;
          replaced += put.replaced;
        } catch (err) {
          // The server names the index in its call: name it in the caller's list.
          const at = err instanceof RateQueueError ? /^resources\[(\d+)\]: /.exec(err.message) : null;
          if (at === null) throw err;
          const refused = err as RateQueueError;
          throw new RateQueueError(refused.code, `resources[${start + Number(at[1])}]: ${refused.message.slice(at[0].length)}`);
        }
      }
      return { created, replaced };
    },
    getResource: async (name) => resourceFromMessage(await raw.getResource(name)),
    listResources: (async (options?: ListResourcesOptions) => {
      if (options === undefined) return (await raw.listResources()).map(resourceFromMessage);
      const page = await raw.listResources(options);
      return { resources: page.resources.map(resourceFromMessage), nextPageToken: page.nextPageToken };
    }) as AdminClient["listResources"],
    async *iterateResources(options = {}) {
      let pageToken = "";
      do {
        const page = await raw.listResources({ pageSize: 1000, ...options, pageToken });
        yield* page.resources.map(resourceFromMessage);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },
    async deleteResource(name) {
      await call("deleteResource", create(DeleteResourceRequestSchema, { name }));
    },
    getResourceStats: async (name, options) => statsFromMessage(await raw.getResourceStats(name, options)),
    async createApiKey(options) {
      const { key, apiKey } = await raw.createApiKey(options);
      return { key, apiKey: apiKeyFromMessage(apiKey) };
    },
    listApiKeys: async (namespace) => (await raw.listApiKeys(namespace)).map(apiKeyFromMessage),
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

/** The most resources, and encoded bytes, in one PutResources call: well inside the server's limits (10,000, and 1 MiB a message). */
const putBatchResources = 1000;
const putBatchBytes = 512 * 1024;

/** [start, end) of each PutResources call for `messages`, in order. */
function putBatches(messages: ResourceMessage[]): [number, number][] {
  const batches: [number, number][] = [];
  let start = 0;
  let bytes = 0;
  messages.forEach((m, i) => {
    const size = toBinary(ResourceSchema, m).length;
    if (i > start && (i - start === putBatchResources || bytes + size > putBatchBytes)) {
      batches.push([start, i]);
      start = i;
      bytes = 0;
    }
    bytes += size;
  });
  if (start < messages.length) batches.push([start, messages.length]);
  return batches;
}
