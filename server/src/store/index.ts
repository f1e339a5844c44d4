// Durability and leader election on Redis (optional: without --redis a node
// runs alone with its state in memory). See group.ts for the design.
export { RedisGroup } from "./group.js";
export type { GroupDeps, GroupOptions, GroupServer, GroupStatus, RedisLoss } from "./group.js";
export { RedisKeyStore } from "./redis-key-store.js";
export type { FencedWrite } from "./redis-key-store.js";
export { FencedError, RedisStore } from "./redis-store.js";
export type { LeaderInfo, Reservation, StoredSnapshot, StoredState, Term } from "./redis-store.js";
