// `npm run demo:feedback`: a provider whose real limit (10 requests/s) is half
// of what the resource was configured with (20/s). Three fleets of four
// workers each call their own copy of that provider at once:
//   - per-process limiters, each set to the configured 20/s (in-memory, as
//     most libraries do): the provider answers 429 every second;
//   - ratequeue without feedback: the fleet keeps to 20/s, still twice too much;
//   - ratequeue with feedback (wrapFetch): the provider's headers teach the
//     resource its real limit, a 429 pauses the whole fleet, and the 429s stop
//     while the calls that succeed reach the provider's limit.
// Every figure is counted from the providers' own answers.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { createClient, wrapFetch } from "@ratequeue/client";
import { Engine, systemClock } from "../server/dist/core/index.js";
import { silentLogger } from "../server/dist/log.js";
import { startServer } from "../server/dist/server.js";

const seconds = 12;
const workers = 4;
const callsInFlight = 4; // per worker
const providerRpm = 600;
const configured = { dimension: "requests", amount: 20, periodMs: 1000, burst: 5 };
const spec = (name) => ({ name, limits: [configured], concurrency: 0, lanes: [{ name: "default", weight: 1 }], defaultLane: "default", leaseTtlMs: 30_000, maxQueue: 10_000 });

/** Starts a fake provider process (test/fixtures/fake-provider.mjs); resolves with its URL and a stop function. */
async function startProvider() {
  const child = spawn(process.execPath, [new URL("../test/fixtures/fake-provider.mjs", import.meta.url).pathname, "--rpm", String(providerRpm), "--latency-ms", "40"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the fake provider exited with ${code}`)));
  });
  return { url: JSON.parse(line).url, stop: () => child.kill("SIGTERM") };
}

const server = await startServer({ host: "127.0.0.1", port: 0, resources: [spec("without-feedback"), spec("with-feedback")], log: silentLogger });
const providers = await Promise.all([startProvider(), startProvider(), startProvider()]);
const start = Date.now() + 500;
const end = start + seconds * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello." }] });

/** Counts per second of each fleet: calls that succeeded, and 429s. */
const columns = ["per-process", "without-feedback", "with-feedback"].map(() => ({ ok: new Array(seconds).fill(0), refused: new Array(seconds).fill(0) }));

/** One call loop: wait for the limiter, call the provider, count its answer by the second it came in. */
async function callLoop(column, providerUrl, limiter, fetchFn) {
  await sleep(start - Date.now());
  while (Date.now() < end) {
    if (!(await limiter())) break;
    const res = await fetchFn(`${providerUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body }).catch(() => undefined);
    if (res === undefined) continue;
    await res.arrayBuffer();
    const second = Math.floor((Date.now() - start) / 1000);
    if (second < 0 || second >= seconds) continue;
    if (res.status === 429) column.refused[second]++;
    else if (res.ok) column.ok[second]++;
  }
}

/** A worker with its own in-memory limiter at the configured rate. */
function perProcessWorker() {
  const engine = new Engine({ clock: systemClock });
  engine.putResource(spec("provider"));
  const limiter = () =>
    new Promise((resolve) =>
      engine.acquire({ resource: "provider", load: 1, priority: 10, lane: "", deadline: end, owner: "worker" }, (r) => {
        if (r.ok) engine.release(r.grant.lease.id);
        resolve(r.ok);
      }),
    );
  return Array.from({ length: callsInFlight }, () => callLoop(columns[0], providers[0].url, limiter, fetch));
}

/** A worker whose every provider call goes through ratequeue: wrapFetch acquires, and reports unless feedback is off. */
function ratequeueWorker(column, providerUrl, resource, feedback) {
  const client = createClient({ url: `127.0.0.1:${server.port}` });
  const fetchFn = wrapFetch(client, { resource, feedback });
  const loops = Array.from({ length: callsInFlight }, () => callLoop(column, providerUrl, async () => true, fetchFn));
  return [Promise.all(loops).then(() => client.close())];
}

console.log(`A provider that allows ${providerRpm / 60} requests/s; the resource says ${configured.amount}/s (burst ${configured.burst}).`);
console.log(`Three fleets of ${workers} workers × ${callsInFlight} calls in flight, ${seconds} s, each on its own copy of the provider:\n`);
await Promise.all(
  Array.from({ length: workers }, () => [
    ...perProcessWorker(),
    ...ratequeueWorker(columns[1], providers[1].url, "without-feedback", false),
    ...ratequeueWorker(columns[2], providers[2].url, "with-feedback", true),
  ]).flat(),
);

const pad = (v, n) => String(v).padStart(n);
const cell = (c, i) => `${pad(c.ok[i], 4)} ok ${pad(c.refused[i], 4)} × 429`;
console.log(`second   ${"per-process limiters".padStart(20)}   ${"ratequeue, no feedback".padStart(22)}   ${"ratequeue + feedback".padStart(20)}`);
for (let i = 0; i < seconds; i++) console.log(`${pad(i + 1, 6)}   ${pad(cell(columns[0], i), 20)}   ${pad(cell(columns[1], i), 22)}   ${pad(cell(columns[2], i), 20)}`);
const total = (xs, from = 1) => xs.slice(from).reduce((a, b) => a + b, 0);
const allowed = (providerRpm / 60) * (seconds - 1);
console.log(`\nafter the first second, of the ${allowed} calls the provider allows:`);
for (const [name, c] of [
  ["per-process limiters", columns[0]],
  ["ratequeue, no feedback", columns[1]],
  ["ratequeue + feedback", columns[2]],
]) {
  const ok = total(c.ok);
  const refused = total(c.refused);
  console.log(`  ${name.padEnd(24)} ${pad(ok, 4)} succeeded (${Math.round((100 * ok) / allowed)} %), ${pad(refused, 4)} refused (${Math.round((100 * refused) / Math.max(1, ok + refused))} % of answers)`);
}
for (const p of providers) p.stop();
await server.shutdown();
