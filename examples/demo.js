// `npm run demo`: ten workers share one provider limit of 50 requests/s.
// Through ratequeue the fleet sends what the provider allows; with a
// per-process limiter in each worker (each set to the same 50/s, as with an
// in-memory limiter) the fleet sends ten times that. Both columns are
// measured: the right one runs the same engine, one instance per worker.
import { createClient } from "@ratequeue/client";
import { Engine, systemClock } from "../server/dist/core/index.js";
import { silentLogger } from "../server/dist/log.js";
import { startServer } from "../server/dist/server.js";

const workers = 10;
const seconds = 5;
const limit = { dimension: "requests", amount: 50, periodMs: 1000, burst: 5 };
const spec = { name: "provider", limits: [limit], concurrency: 0, lanes: [{ name: "default", weight: 1 }], defaultLane: "default", leaseTtlMs: 30_000, maxQueue: 10_000 };

const server = await startServer({ host: "127.0.0.1", port: 0, resources: [spec], log: silentLogger });
const url = `127.0.0.1:${server.port}`;
const start = Date.now() + 500;
const end = start + seconds * 1000;
const shared = new Array(seconds).fill(0);
const local = new Array(seconds).fill(0);
const bucket = (t) => Math.floor((t - start) / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function sharedWorker() {
  const client = createClient({ url });
  await sleep(start - Date.now());
  while (Date.now() < end) {
    const lease = await client.acquire("provider", { timeoutMs: end - Date.now() }).catch(() => undefined);
    if (lease === undefined) break;
    const b = bucket(lease.grantedAt);
    if (b >= 0 && b < seconds) shared[b]++;
    await lease.release();
  }
  await client.close();
}

async function perProcessWorker() {
  const engine = new Engine({ clock: systemClock });
  engine.putResource(spec);
  await sleep(start - Date.now());
  while (Date.now() < end) {
    const grant = await new Promise((resolve) =>
      engine.acquire({ resource: "provider", load: 1, priority: 10, lane: "", deadline: end, owner: "worker" }, resolve),
    );
    if (!grant.ok) break;
    const b = bucket(grant.grant.lease.grantedAt);
    if (b >= 0 && b < seconds) local[b]++;
    engine.release(grant.grant.lease.id);
  }
}

console.log(`${workers} workers, one provider limit of ${limit.amount} requests/s (burst ${limit.burst}), ${seconds} s:\n`);
await Promise.all([...Array.from({ length: workers }, sharedWorker), ...Array.from({ length: workers }, perProcessWorker)]);
const pad = (v, n) => String(v).padStart(n);
console.log(`second   through ratequeue   ${workers} per-process limiters   provider allows`);
for (let i = 0; i < seconds; i++) {
  const allows = i === 0 ? limit.burst + limit.amount : limit.amount;
  console.log(`${pad(i + 1, 6)}   ${pad(shared[i], 17)}   ${pad(local[i], 24)}   ${pad(allows, 15)}`);
}
const total = (xs) => xs.reduce((a, b) => a + b, 0);
const allowed = limit.burst + seconds * limit.amount;
console.log(`${pad("total", 6)}   ${pad(total(shared), 17)}   ${pad(total(local), 24)}   ${pad(allowed, 15)}`);
console.log(`\nPer-process limiters sent ${(total(local) / allowed).toFixed(1)}x what the provider allows: the rest would have been 429s.`);
await server.shutdown();
