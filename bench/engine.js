// Engine benchmark: decisions per second of the pure limiter core, on a
// simulated clock (no I/O, one core). Prints one line of JSON.
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

/** (b) 100 000 resources, acquire+release round robin. */
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
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    engine.acquire(reqs[i % keys], onResult);
    engine.release(id);
  }
  return n / ((performance.now() - t0) / 1000);
}

/** (c) `waiters` queued on one resource (concurrency 1), drained by releases. */
function drain(waiters) {
  const { engine } = fresh();
  engine.putResource(spec("q", 1));
  const ids = [];
  const onResult = (r) => ids.push(r.grant.lease.id);
  const t0 = performance.now();
  for (let i = 0; i <= waiters; i++) {
    engine.acquire({ resource: "q", load: 1, priority: i % 4, lane: "", owner: "w" }, onResult);
  }
  const t1 = performance.now();
  for (let i = 0; i <= waiters; i++) engine.release(ids[i]);
  const t2 = performance.now();
  if (ids.length !== waiters + 1 || engine.leaseCount() !== 0 || engine.waiterCount() !== 0) {
    throw new Error("drain benchmark lost requests");
  }
  return { enqueue: waiters / ((t1 - t0) / 1000), grants: waiters / ((t2 - t1) / 1000) };
}

const best = (f, runs = 3) => Math.max(...Array.from({ length: runs }, f));
const round = (x) => Math.round(x);

single(200_000); // warm-up
const a = best(() => single(1_000_000));
const b = best(() => manyKeys(100_000, 1_000_000), 2);
const c = Array.from({ length: 3 }, () => drain(100_000)).reduce((x, y) => (y.grants > x.grants ? y : x));
console.log(
  JSON.stringify({
    node: process.version,
    single_resource_acquire_release_per_s: round(a),
    keys_100k_acquire_release_per_s: round(b),
    waiters_100k_drain_grants_per_s: round(c.grants),
    waiters_100k_enqueue_per_s: round(c.enqueue),
  }),
);
