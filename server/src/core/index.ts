// The public surface of the limiter core.
export { Engine } from "./engine.js";
export type { EngineOptions } from "./engine.js";
export { SimulatedClock, systemClock } from "./clock.js";
export { SpecPool } from "./resource.js";
export { waitBucketsMs } from "./stats.js";
export { DEFAULT_COOLDOWN_MS } from "./feedback.js";
export type { CountersSnapshot, EngineSnapshot, ResourceSnapshot, RestoreOptions } from "./snapshot.js";
export type * from "./types.js";
export { DEFAULT_PER_KEY_IDLE_MS, MAX_TREE_DEPTH } from "./types.js";
