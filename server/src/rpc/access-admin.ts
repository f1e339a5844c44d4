// The AdminService RPCs that manage namespaces (root keys) and API keys
// (admin keys in their namespace, root keys anywhere).
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status, type Metadata } from "@grpc/grpc-js";
import {
  ApiKeyRole,
  ApiKeySchema,
  CreateApiKeyResponseSchema,
  CreateNamespaceResponseSchema,
  DeleteNamespaceResponseSchema,
  ListApiKeysResponseSchema,
  ListNamespacesResponseSchema,
  NamespaceSchema,
  RevokeApiKeyResponseSchema,
  type AdminService,
  type ApiKey,
} from "@ratequeue/proto";
import { configuredRootId, defaultNamespace, scopeOf, type Authenticator, type KeyRecord, type Principal, type Role } from "../auth/index.js";
import type { Engine } from "../core/index.js";
import { invalidField, RpcError } from "../errors.js";
import type { Logger } from "../log.js";
import { checkDescription, checkNamespace } from "../validate/fields.js";
import { unary } from "./handler.js";
import type { ServiceHandlers } from "./service-handlers.js";

export interface AccessAdminDeps {
  engine: Engine;
  log: Logger;
  auth: Authenticator;
  /** Authenticates the call and checks the gate. */
  caller(call: { metadata: Metadata; getPeer(): string }): Promise<Principal>;
}

const roleFromProto: Record<number, Role> = { [ApiKeyRole.WORKER]: "worker", [ApiKeyRole.ADMIN]: "admin", [ApiKeyRole.ROOT]: "root" };
const roleToProto: Record<Role, ApiKeyRole> = { worker: ApiKeyRole.WORKER, admin: ApiKeyRole.ADMIN, root: ApiKeyRole.ROOT };

export function keyToProto(k: KeyRecord): ApiKey {
  return create(ApiKeySchema, {
    id: k.id,
    namespace: k.namespace,
    role: roleToProto[k.role],
    description: k.description,
    createTime: timestampFromMs(k.createdAt),
  });
}

/** The AdminService RPCs of namespaces and API keys. */
export type AccessAdminHandlers = Pick<
  ServiceHandlers<typeof AdminService>,
  "createNamespace" | "listNamespaces" | "deleteNamespace" | "createApiKey" | "listApiKeys" | "revokeApiKey"
>;

export function createAccessAdmin({ engine, log, auth, caller }: AccessAdminDeps): AccessAdminHandlers {
  const authOn = (): void => {
    if (!auth.enabled) {
      throw new RpcError(status.FAILED_PRECONDITION, "authentication is off (no root key is configured), so API keys would not be checked; start the server with RATEQUEUE_ROOT_KEY or --root-key-file");
    }
  };
  const keyNotFound = (id: string) => new RpcError(status.NOT_FOUND, `API key '${id}' not found`);

  return {
    createNamespace: unary(log, "CreateNamespace", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "root", "CreateNamespace");
      const name = checkNamespace("name", req.name);
      const created = await auth.createNamespace(name);
      return create(CreateNamespaceResponseSchema, { namespace: create(NamespaceSchema, { name }), created });
    }),
    listNamespaces: unary(log, "ListNamespaces", async (_req, call) => {
      const p = await caller(call);
      auth.require(p, "root", "ListNamespaces");
      return create(ListNamespacesResponseSchema, { namespaces: auth.listNamespaces().map((name) => create(NamespaceSchema, { name })) });
    }),
    deleteNamespace: unary(log, "DeleteNamespace", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "root", "DeleteNamespace");
      const name = checkNamespace("name", req.name);
      if (name === defaultNamespace) throw invalidField("name", "the default namespace cannot be deleted");
      if (!auth.hasNamespace(name)) throw new RpcError(status.NOT_FOUND, `namespace '${name}' not found`);
      const scope = scopeOf(name);
      const held = engine.listResources().filter((r) => scope.owns(r.name)).length;
      if (held > 0) throw new RpcError(status.FAILED_PRECONDITION, `namespace '${name}' still holds ${held} resources; delete them first`);
      const revokedKeys = await auth.deleteNamespace(name);
      return create(DeleteNamespaceResponseSchema, { revokedKeys });
    }),
    createApiKey: unary(log, "CreateApiKey", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "CreateApiKey");
      authOn();
      const namespace = req.namespace === "" ? p.namespace : checkNamespace("namespace", req.namespace);
      const role = roleFromProto[req.role];
      if (role === undefined) throw invalidField("role", "must be API_KEY_ROLE_WORKER, API_KEY_ROLE_ADMIN or API_KEY_ROLE_ROOT");
      const description = checkDescription("description", req.description);
      if (p.role !== "root") {
        if (namespace !== p.namespace) throw new RpcError(status.PERMISSION_DENIED, "an admin key creates keys of its own namespace only");
        if (role === "root") throw new RpcError(status.PERMISSION_DENIED, "only a root key creates root keys");
      } else if (!auth.hasNamespace(namespace)) {
        await auth.createNamespace(namespace);
      }
      const { key, record } = await auth.createKey(role === "root" ? defaultNamespace : namespace, role, description);
      return create(CreateApiKeyResponseSchema, { apiKey: keyToProto(record), key });
    }),
    listApiKeys: unary(log, "ListApiKeys", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "ListApiKeys");
      const asked = req.namespace === "" ? undefined : checkNamespace("namespace", req.namespace);
      if (p.role !== "root" && asked !== undefined && asked !== p.namespace) {
        throw new RpcError(status.PERMISSION_DENIED, "an admin key lists keys of its own namespace only");
      }
      const namespace = p.role === "root" ? asked : p.namespace;
      const visible = auth.listKeys(namespace).filter((k) => p.role === "root" || k.role !== "root");
      return create(ListApiKeysResponseSchema, { apiKeys: visible.map(keyToProto) });
    }),
    revokeApiKey: unary(log, "RevokeApiKey", async (req, call) => {
      const p = await caller(call);
      auth.require(p, "admin", "RevokeApiKey");
      if (req.id === "") throw invalidField("id", "must not be empty");
      if (!/^[0-9a-z]{1,64}$/.test(req.id)) throw invalidField("id", "must be a key id: lowercase letters and digits");
      if (req.id === configuredRootId) {
        throw new RpcError(status.FAILED_PRECONDITION, "the root key from RATEQUEUE_ROOT_KEY or --root-key-file is revoked by changing it and restarting");
      }
      const record = auth.getKey(req.id);
      // Another namespace's key is as unknown as a key that does not exist.
      if (record === undefined || (p.role !== "root" && (record.namespace !== p.namespace || record.role === "root"))) throw keyNotFound(req.id);
      await auth.revokeKey(req.id);
      return create(RevokeApiKeyResponseSchema, {});
    }),
  };
}
