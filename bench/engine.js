// Engine benchmark: decisions per second of the pure limiter core, on a
// simulated clock (no I/O, one core). Prints one line of JSON. How each
// figure grows with resources, waiters, lanes, trees and keys: bench/scale.js.
// Build first: npx tsc -b server (or any build that emits server/dist/core).
import { Engine, SimulatedClock } from "../server/dist/core/index.js";

const HUGE = 1e12;
const spec = (name, concurrency = 0) => ({
  name,
  limits: [
    { dimension: "requests", amount: HUGE, periodMs: 1000, burst: HUGE },
    { dimension: "load", amount: HUGE, periodMs: 60_000, burst: HUGE },
  ],
  concurrency,
  lanes: [{ name: "default", weight: 1 }],
  defaultLane: "default",
  leaseTtlMs: 30_000,
  maxQueue: 1_000_000,
});

function fresh() {
  const clock = new SimulatedClock(1_700_000_000_000);
  return { clock, engine: new Engine({ clock }) };
}

/** (a) one resource, acquire then release, never contended. */
function single(n) {
  const { engine } = fresh();
  engine.putResource(spec("one"));
  const req = { resource: "one", load: 1, priority: 10, lane: "", owner: "w" };
  let id = "";
  const onResult = (r) => {
    id = r.grant.lease.id;
  };
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    engine.acquire(req, onResult);
    engine.release(id);
  }
  return n / ((performance.now() - t0) / 1000);
}

/**
 * (b) 100 000 resources, acquire+release round robin: `n` pairs from just
 * declared (each resource's first acquire makes its lanes and windows: the
 * first `keys` pairs, also timed apart), then `n` more once every resource
 * has been used.
 */
function manyKeys(keys, n) {
  const { engine } = fresh();
  const reqs = [];
  for (let k = 0; k < keys; k++) {
    engine.putResource(spec(`key-${k}`));
    reqs.push({ resource: `key-${k}`, load: 1, priority: 10, lane: "", owner: "w" });
  }
  let id = "";
  const onResult = (r) => {
    id = r.grant.lease.id;
  };
  const pairs = (from, to) => {
    for (let i = from; i < to; i++) {
      engine.acquire(reqs[i % keys], onResult);
      engine.release(id);
    }
  };
  const t0 = performance.now();
  pairs(0, keys);
  const t1 = performance.now();
  pairs(keys, n);
  const t2 = performance.now();
  pairs(0, n);
  const t3 = performance.now();
  return { cold: n / ((t2 - t0) / 1000), firstUse: keys / ((t1 - t0) / 1000), warm: n / ((t3 - t2) / 1000) };
}

/** (c) `waiters` queued on one resource (concurrency 1), drained by releases. */
function drain(waiters) {
  const { engine } = fresh();
  engine.putResource(spec("q", 1));
  // Only the lease held now is kept, as a server keeps none: holding every
  // id in an array would time the collector copying the bench's own array.
  let id = "";
  let granted = 0;
  const onResult = (r) => {
    id = r.grant.lease.id;
    granted++;
  };
  const t0 = performance.now();
  for (let i = 0; i <= waiters; i++) {
    engine.acquire({ resource: "q", load: 1, priority: i % 4, lane: "", owner: "w" }, onResult);
  }
  const t1 = performance.now();
  for (let i = 0; i <= waiters; i++) engine.release(id);
  const t2 = performance.now();
  if (granted !== waiters + 1 || engine.leaseCount() !== 0 || engine.waiterCount() !== 0) {
    throw new Error("drain benchmark lost requests");
  }
  return { enqueue: waiters / ((t1 - t0) / 1000), grants: waiters / ((t2 - t1) / 1000) };
}

const best = (f, runs = 3) => Math.max(...Array.from({ length: runs }, f));
const round = (x) => Math.round(x);

single(200_000); // warm-up
const a = best(() => single(1_000_000));
const runs = Array.from({ length: 2 }, () => manyKeys(100_000, 1_000_000));
const b = Math.max(...runs.map((r) => r.cold));
const bWarm = Math.max(...runs.map((r) => r.warm));
const bFirst = Math.max(...runs.map((r) => r.firstUse));
drain(100_000); // warm-up, as for (a)
const c = Array.from({ length: 3 }, () => drain(100_000)).reduce((x, y) => (y.grants > x.grants ? y : x));
console.log(
  JSON.stringify({
    node: process.version,
    single_resource_acquire_release_per_s: round(a),
    keys_100k_acquire_release_per_s: round(b),
    keys_100k_warm_acquire_release_per_s: round(bWarm),
    keys_100k_first_acquire_per_s: round(bFirst),
    waiters_100k_drain_grants_per_s: round(c.grants),
    waiters_100k_enqueue_per_s: round(c.enqueue),
  }),
);
