// Authentication, tenants and per-client limits.
export { Authenticator, configuredRootId } from "./authenticator.js";
export type { AuthenticatorOptions, Principal } from "./authenticator.js";
export { MemoryKeyStore } from "./key-store.js";
export type { KeyStore } from "./key-store.js";
export { generateKey, hashKey, keyId, keyPrefix, roles } from "./keys.js";
export type { KeyRecord, Role } from "./keys.js";
export { Counter, defaultSessionLimits } from "./quotas.js";
export type { SessionLimits } from "./quotas.js";
export { defaultNamespace, namespaceOf, Scope, scopeOf, separator } from "./scope.js";
export { FailureThrottle, peerAddress } from "./throttle.js";
export { isLoopback, minRootKeyLength, setupAuth } from "./setup.js";
export type { AuthOptions } from "./setup.js";
export { serverCredentials } from "./tls.js";
export type { TlsFiles } from "./tls.js";
