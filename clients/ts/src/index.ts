// The public surface of @ratequeue/client. The generated contract is the
// package @ratequeue/proto.
export { createClient } from "./client.js";
export type { AcquireOptions, ClientOptions, Lease, RateQueueClient, ReleaseResult } from "./client.js";
export { createAdminClient, roleName } from "./admin.js";
export type { AdminClient, ApiKeyRoleName } from "./admin.js";
export { RateQueueError } from "./errors.js";
export type { StatusName } from "./errors.js";
export { parseTargets } from "./address.js";
export type { Target } from "./address.js";
