// The public surface of @ratequeue/client. The generated contract is the
// package @ratequeue/proto.
export { createClient } from "./client.js";
export type { AcquireOptions, ClientOptions, Lease, RateQueueClient, ReleaseResult } from "./client.js";
export { parseRateLimitHeaders } from "./feedback.js";
export type { DimensionFeedback, HeadersInput, ProviderFeedback } from "./feedback.js";
export { estimateTokens, wrapFetch } from "./wrap-fetch.js";
export type { FetchFunction, WrapFetchOptions } from "./wrap-fetch.js";
export { createAdminClient } from "./admin.js";
export type { AdminClient, ListResourcesOptions, RawAdminClient, ResourcePage, ResourceStatsOptions } from "./admin.js";
export { roleName } from "./admin-shapes.js";
export type {
  ApiKey,
  ApiKeyRoleName,
  ChildStats,
  DurationInput,
  KeyedChildConfig,
  LaneStats,
  LimitConfig,
  LimitStats,
  ParentStats,
  ResourceConfig,
  ResourceStats,
  StoredKeyedChild,
  StoredLimit,
  StoredResource,
} from "./admin-shapes.js";
export { RateQueueError } from "./errors.js";
export type { StatusName } from "./errors.js";
export { parseTargets } from "./address.js";
export type { Target } from "./address.js";
