// AdminService over grpc-js with promises: declare resources, read stats.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceError } from "@grpc/grpc-js";
import { defaultUrl } from "./address.js";
import { Connection } from "./connection.js";
import { RateQueueError } from "./errors.js";
import {
  AdminService,
  DeleteResourceRequestSchema,
  GetResourceRequestSchema,
  GetResourceStatsRequestSchema,
  grpcServiceDefinition,
  ListResourcesRequestSchema,
  PutResourceRequestSchema,
  type Resource,
  type ResourceSchema,
  type ResourceStats,
} from "./proto.js";
import type { ClientOptions } from "./client.js";

const methods = grpcServiceDefinition(AdminService);

export interface AdminClient {
  /** Creates or replaces a resource; returns it with defaults filled in. */
  putResource(resource: MessageInitShape<typeof ResourceSchema>): Promise<{ resource: Resource; created: boolean }>;
  getResource(name: string): Promise<Resource>;
  listResources(): Promise<Resource[]>;
  deleteResource(name: string): Promise<void>;
  getResourceStats(name: string): Promise<ResourceStats>;
  close(): void;
}

/** Creates an admin client (same options and defaults as createClient). */
export function createAdminClient(options: ClientOptions = {}): AdminClient {
  const connection = new Connection({
    url: options.url ?? process.env.RATEQUEUE_URL ?? defaultUrl,
    apiKey: options.apiKey ?? process.env.RATEQUEUE_API_KEY,
    caFile: options.caFile,
  });

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
    close: () => connection.close(),
  };
}
