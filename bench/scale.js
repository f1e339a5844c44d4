// How cost grows: the engine alone (in process, simulated clock, one core)
// as each dimension grows from 1 to its largest, one step per child process
// so that each step's memory is its own: resources 1 → 1 M, waiters on one
// resource 1 → 1 M, leases held 1 → 1 M, lanes 1 → 32, tree depth 1 → 4 (a
// leaf under 0..3 ancestors), children with waiters under one parent 1 → 10 k
// and keyed children 1 → 1 M. For each step: the engine's
// decisions per second and the heap it holds (used heap after a forced GC,
// less an empty engine's), and the process RSS.
//
//   npm run build && node bench/scale.js            # every dimension (about ten minutes)
//   node bench/scale.js resources keyed             # some of them
//   node bench/scale.js --quick                     # up to 100 k (a smoke run)
//
// Prints a table per dimension, then one line of JSON with every figure.
// Steps fork `node --expose-gc` on this file; see bench/README.md.
import { fork } from "node:child_process";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { Engine, SimulatedClock } from "../server/dist/core/index.js";

const HUGE = 1e12;
/** The resource every dimension uses: two limits (never in the way), a concurrency cap, one lane unless more are asked for. */
const spec = (name, { concurrency = 1e6, lanes = 1, ...more } = {}) => ({
  name,
  limits: [
    { dimension: "requests", amount: HUGE, periodMs: 1000, burst: HUGE },
    { dimension: "load", amount: HUGE, periodMs: 60_000, burst: HUGE },
  ],
  concurrency,
  lanes: Array.from({ length: lanes }, (_, i) => ({ name: `lane-${i}`, weight: 1 + (i % 4) })),
  defaultLane: "lane-0",
  leaseTtlMs: 30_000,
  maxQueue: 2_000_000,
  ...more,
});

/** Decisions timed in a step: at least this many, so that a small step is not all timer noise. */
const MIN_DECISIONS = 300_000;

function newEngine() {
  return new Engine({ clock: new SimulatedClock(1_700_000_000_000) });
}

/** Used heap after a full GC, in bytes. */
function heap() {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage().heapUsed;
}

/** The best of three timings: the machine's other work only ever slows a run down. */
const RUNS = 3;

/** Acquire+release pairs per second over `reqs`, round robin (best of RUNS), after one pass timed apart (each resource's first acquire makes its state). */
function roundRobin(engine, reqs, minPairs = MIN_DECISIONS) {
  let id = "";
  const onResult = (r) => {
    id = r.grant.lease.id;
  };
  const pass = (n) => {
    for (let i = 0; i < n; i++) {
      engine.acquire(reqs[i % reqs.length], onResult);
      engine.release(id);
    }
  };
  const t0 = performance.now();
  pass(reqs.length);
  const firstUse = reqs.length / ((performance.now() - t0) / 1000);
  const n = Math.max(minPairs, reqs.length);
  let best = 0;
  for (let run = 0; run < RUNS; run++) {
    const t1 = performance.now();
    pass(n);
    best = Math.max(best, n / ((performance.now() - t1) / 1000));
  }
  return { pairsPerSec: best, firstUsePerSec: firstUse };
}

/**
 * `waiters` requests queued on `resource` (concurrency 1; or spread over the leaves `spread`
 * of a tree whose root has concurrency 1) behind one lease, then drained by releases:
 * enqueue and grant rates (the best of RUNS rounds, each of at least MIN_DECISIONS: a small
 * queue is filled and drained again within a round), and the heap while they wait.
 */
function drain(engine, resource, waiters, lanes = 1, keys = undefined, spread = undefined, minDecisions = MIN_DECISIONS) {
  let current = "";
  const onResult = (r) => {
    current = r.grant.lease.id;
  };
  const cycles = Math.max(1, Math.ceil(minDecisions / waiters));
  let enqueuePerSec = 0;
  let grantsPerSec = 0;
  let heapWaiting = 0;
  for (let run = 0; run < RUNS; run++) {
    let enqueueMs = 0;
    let drainMs = 0;
    for (let cycle = 0; cycle < cycles; cycle++) {
      const t0 = performance.now();
      for (let i = 0; i <= waiters; i++) {
        engine.acquire(
          {
            resource: spread === undefined ? resource : spread[i % spread.length],
            load: 1,
            priority: i % 4,
            lane: lanes === 1 ? "" : `lane-${i % lanes}`,
            owner: "w",
            ...(keys && { key: `k${i % keys}` }),
          },
          onResult,
        );
      }
      const t1 = performance.now();
      if (run === 0 && cycle === 0) heapWaiting = heap();
      const t2 = performance.now();
      for (let i = 0; i <= waiters; i++) engine.release(current);
      const t3 = performance.now();
      enqueueMs += t1 - t0;
      drainMs += t3 - t2;
      if (engine.waiterCount() !== 0 || engine.leaseCount() !== 0) throw new Error("drain lost requests");
    }
    enqueuePerSec = Math.max(enqueuePerSec, (cycles * waiters) / (enqueueMs / 1000));
    grantsPerSec = Math.max(grantsPerSec, (cycles * waiters) / (drainMs / 1000));
  }
  return { enqueuePerSec, grantsPerSec, heapWaiting };
}

/** One step of one dimension, in this process: its figures. */
function step(dimension, n) {
  const base = heap();
  const engine = newEngine();
  const perUnit = (bytes) => Math.round((bytes - base) / n);
  switch (dimension) {
    case "resources": {
      const t0 = performance.now();
      for (let k = 0; k < n; k++) engine.putResource(spec(`tenant-${k}`, { concurrency: 8 }));
      const putsPerSec = n / ((performance.now() - t0) / 1000);
      const declared = heap();
      const rssDeclaredMB = process.memoryUsage().rss / 1e6;
      const reqs = Array.from({ length: n }, (_, k) => ({ resource: `tenant-${k}`, load: 1, priority: 0, lane: "", owner: "w" }));
      const rr = roundRobin(engine, reqs);
      const used = heap();
      return {
        decisionsPerSec: rr.pairsPerSec,
        firstUsePerSec: rr.firstUsePerSec,
        putsPerSec,
        bytesPerUnit: perUnit(declared),
        bytesPerUnitUsed: perUnit(used),
        heapMB: (declared - base) / 1e6,
        heapUsedMB: (used - base) / 1e6,
        rssDeclaredMB,
      };
    }
    case "waiters": {
      engine.putResource(spec("queue", { concurrency: 1 }));
      const d = drain(engine, "queue", n);
      return { decisionsPerSec: d.grantsPerSec, enqueuePerSec: d.enqueuePerSec, bytesPerUnit: perUnit(d.heapWaiting), heapMB: (d.heapWaiting - base) / 1e6 };
    }
    case "lanes": {
      engine.putResource(spec("laned", { concurrency: 1, lanes: n }));
      const d = drain(engine, "laned", 100_000, n);
      return { decisionsPerSec: d.grantsPerSec, enqueuePerSec: d.enqueuePerSec, heapMB: (d.heapWaiting - base) / 1e6 };
    }
    case "depth": {
      // 1,000 leaves, each under n - 1 ancestors: fan-out 1000 below the root at depth 2, 10 x 100 at 3, 10 x 10 x 10 at 4.
      // The root holds one lease at a time (concurrency 1); at depth 1 the leaves are roots themselves.
      const fanout = { 1: [1000], 2: [1000], 3: [10, 100], 4: [10, 10, 10] }[n];
      const leaves = [];
      const build = (parent, level, prefix) => {
        if (level === fanout.length) return leaves.push(prefix);
        for (let i = 0; i < fanout[level]; i++) {
          const name = `${prefix}.${i}`;
          engine.putResource(spec(name, { ...(parent !== undefined && { parent, share: 1 + (i % 3) }), concurrency: parent === undefined ? 1 : 1e6 }));
          build(name, level + 1, name);
        }
      };
      if (n === 1) build(undefined, 0, "leaf");
      else {
        engine.putResource(spec("root", { concurrency: 1 }));
        build("root", 0, "root");
      }
      // Round robin over the leaves: every grant is checked and charged at every level.
      const reqs = leaves.map((resource) => ({ resource, load: 1, priority: 0, lane: "", owner: "w" }));
      const rr = roundRobin(engine, reqs);
      // 100,000 waiters spread over 10 leaves, drained by releases: each level on the way chooses among its children
      // with waiters. (At depth 1 the leaves are roots with one lease each: the waiters go to one leaf.)
      const d = drain(engine, n === 1 ? "leaf.0" : undefined, 100_000, 1, undefined, n === 1 ? undefined : leaves.slice(0, 10));
      return { decisionsPerSec: rr.pairsPerSec, grantsPerSec: d.grantsPerSec, enqueuePerSec: d.enqueuePerSec, heapMB: (d.heapWaiting - base) / 1e6 };
    }
    case "held": {
      // n leases held over 10,000 resources; each new acquire replaces the oldest lease (released), a window of n.
      const resources = Math.min(10_000, n);
      for (let k = 0; k < resources; k++) engine.putResource(spec(`tenant-${k}`, { concurrency: 1e6 }));
      const reqs = Array.from({ length: resources }, (_, k) => ({ resource: `tenant-${k}`, load: 1, priority: 0, lane: "", owner: "w" }));
      const held = new Array(n);
      let last = "";
      const onResult = (r) => {
        last = r.grant.lease.id;
      };
      for (let i = 0; i < n; i++) {
        engine.acquire(reqs[i % resources], onResult);
        held[i] = last;
      }
      const holding = heap();
      let oldest = 0;
      let best = 0;
      const pairs = Math.max(MIN_DECISIONS, n);
      for (let run = 0; run < RUNS; run++) {
        const t0 = performance.now();
        for (let i = 0; i < pairs; i++) {
          engine.acquire(reqs[i % resources], onResult);
          engine.release(held[oldest]);
          held[oldest] = last;
          oldest = oldest + 1 === n ? 0 : oldest + 1;
        }
        best = Math.max(best, pairs / ((performance.now() - t0) / 1000));
      }
      if (engine.leaseCount() !== n) throw new Error("held leases lost");
      // Less the bench's own array of n ids.
      return { decisionsPerSec: best, bytesPerUnit: perUnit(holding), heapMB: (holding - base) / 1e6 };
    }
    case "busy": {
      // n children of one parent (concurrency 1) with waiters at once (two each): each grant weighs every child with waiters.
      engine.putResource(spec("parent", { concurrency: 1 }));
      const children = Array.from({ length: n }, (_, i) => `parent/c${i}`);
      for (const name of children) engine.putResource(spec(name, { parent: "parent" }));
      const d = drain(engine, undefined, Math.max(1000, 2 * n), 1, undefined, children, 20_000);
      return { decisionsPerSec: d.grantsPerSec, enqueuePerSec: d.enqueuePerSec, heapMB: (d.heapWaiting - base) / 1e6 };
    }
    case "keyed": {
      // Each key's first acquire makes its child; every child is kept (they would be forgotten after 10 idle minutes).
      engine.putResource(
        spec("tenants", {
          perKey: {
            limits: [
              { dimension: "requests", amount: HUGE, periodMs: 1000, burst: HUGE },
              { dimension: "load", amount: HUGE, periodMs: 60_000, burst: HUGE },
            ],
            concurrency: 8,
            share: 1,
          },
        }),
      );
      const reqs = Array.from({ length: n }, (_, k) => ({ resource: "tenants", key: `tenant-${k}`, load: 1, priority: 0, lane: "", owner: "w" }));
      const rr = roundRobin(engine, reqs);
      const held = heap();
      if (engine.resourceCount() !== n + 1) throw new Error(`expected ${n} keyed children, found ${engine.resourceCount() - 1}`);
      return { decisionsPerSec: rr.pairsPerSec, firstUsePerSec: rr.firstUsePerSec, bytesPerUnit: perUnit(held), heapMB: (held - base) / 1e6 };
    }
    default:
      throw new Error(`unknown dimension ${dimension}`);
  }
}

const dimensions = {
  resources: { unit: "resource", units: "resources", steps: [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000] },
  waiters: { unit: "waiter", units: "waiters", steps: [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000] },
  held: { unit: "lease", units: "leases held", steps: [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000] },
  lanes: { unit: "lane", units: "lanes", steps: [1, 2, 4, 8, 16, 32] },
  depth: { unit: "level", units: "levels", steps: [1, 2, 3, 4] },
  busy: { unit: "child", units: "children with waiters", steps: [1, 10, 100, 1_000, 10_000] },
  keyed: { unit: "keyed child", units: "keyed children", steps: [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000] },
};

/** What each dimension's rate counts, for the table's header. */
const measures = {
  resources: "acquire+release pairs/s, round robin",
  waiters: "grants/s draining the queue",
  held: "acquire+release pairs/s over 10,000 resources, each new lease replacing the oldest held (heap: includes the bench's array of ids)",
  lanes: "grants/s draining 100 k waiters over the lanes",
  depth: "acquire+release pairs/s over 1,000 leaves",
  busy: "grants/s draining waiters spread over the children with waiters of one parent",
  keyed: "acquire+release pairs/s, round robin over the keys",
};

function runChild(dimension, n) {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ["--child", dimension, String(n)], {
      execArgv: ["--expose-gc", "--max-old-space-size=8192"],
      stdio: ["ignore", "pipe", "inherit", "ipc"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`${dimension} ${n}: exit ${code}`));
      resolve(JSON.parse(out.trim().split("\n").pop()));
    });
  });
}

const fmt = (x, digits = 0) => (x === undefined ? "" : Number(x).toLocaleString("en-US", { maximumFractionDigits: digits }));

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === "--child") {
    const [, dimension, n] = args;
    const result = step(dimension, Number(n));
    result.rssMB = process.memoryUsage().rss / 1e6;
    console.log(JSON.stringify(result));
    return;
  }
  const quick = args.includes("--quick");
  const chosen = args.filter((a) => !a.startsWith("--"));
  const out = { machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version }, quick };
  for (const [dimension, { unit, units, steps }] of Object.entries(dimensions)) {
    if (chosen.length > 0 && !chosen.includes(dimension)) continue;
    const rows = [];
    for (const n of steps.filter((s) => !quick || s <= 100_000)) {
      process.stderr.write(`${dimension} ${n}...\n`);
      rows.push({ n, ...(await runChild(dimension, n)) });
    }
    out[dimension] = rows;
    console.log(`\n${dimension}: ${measures[dimension]}; heap held (after GC, less an empty engine's)`);
    if (dimension === "resources") {
      console.log(`| resources | decisions/s | first acquires/s | puts/s | heap MB declared | bytes each | RSS MB | heap MB all used once | bytes each | RSS MB |`);
      console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
      for (const r of rows) {
        const each = (b) => (r.n >= 1000 ? fmt(b) : "");
        console.log(
          `| ${fmt(r.n)} | ${fmt(r.decisionsPerSec)} | ${fmt(r.firstUsePerSec)} | ${fmt(r.putsPerSec)} | ${fmt(r.heapMB, 1)} | ${each(r.bytesPerUnit)} | ${fmt(r.rssDeclaredMB)} | ${fmt(r.heapUsedMB, 1)} | ${each(r.bytesPerUnitUsed)} | ${fmt(r.rssMB)} |`,
        );
      }
      continue;
    }
    console.log(`| ${units} | decisions/s | other rate | heap MB | bytes per ${unit} | RSS MB |`);
    console.log("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const r of rows) {
      const other =
        r.grantsPerSec !== undefined
          ? `${fmt(r.grantsPerSec)} grants/s draining`
          : r.firstUsePerSec !== undefined
            ? `${fmt(r.firstUsePerSec)} first acquires/s`
            : r.enqueuePerSec !== undefined
              ? `${fmt(r.enqueuePerSec)} enqueued/s`
              : "";
      const each = r.bytesPerUnit !== undefined && r.n >= 1000 ? fmt(r.bytesPerUnit) : "";
      console.log(`| ${fmt(r.n)} | ${fmt(r.decisionsPerSec)} | ${other} | ${fmt(r.heapMB, 1)} | ${each} | ${fmt(r.rssMB)} |`);
    }
  }
  console.log(JSON.stringify(out));
}

await main();
