// Durability and leadership. A lone node serves through an OpenGate and keeps
// its resources in memory (memoryResourceStore); with --redis it joins a
// group (group.ts has the design), whose LeaderGate is open only on the
// leader and whose fenced writes make resources and keys durable.
export { OpenGate } from "./gate.js";
export type { Gate } from "./gate.js";
export { memoryResourceStore } from "./resource-store.js";
export type { ResourceStore } from "./resource-store.js";
export { RedisGroup } from "./group.js";
export type { GroupDeps, GroupOptions, GroupServer, GroupStatus, RedisLoss } from "./group.js";
export { RedisKeyStore } from "./redis-key-store.js";
export type { FencedWrite } from "./redis-key-store.js";
export { FencedError, RedisStore } from "./redis-store.js";
export type { LeaderInfo, Reservation, StoredSnapshot, StoredState, Term } from "./redis-store.js";
