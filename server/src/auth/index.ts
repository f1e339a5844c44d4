// Authentication, tenants and per-client limits: what the RPC handlers, the
// CLI and the storage layer use of auth/.
export { Authenticator, configuredRootId } from "./authenticator.js";
export type { Principal } from "./authenticator.js";
export type { KeyStore } from "./key-store.js";
export type { KeyRecord, Role } from "./keys.js";
export { Counter, defaultSessionLimits } from "./quotas.js";
export type { SessionLimits } from "./quotas.js";
export { defaultNamespace, namespaceOf, scopeOf } from "./scope.js";
export type { Scope } from "./scope.js";
export { setupAuth } from "./setup.js";
export type { AuthOptions } from "./setup.js";
export { readTlsFiles, serverCredentials } from "./tls.js";
export type { TlsFiles } from "./tls.js";
