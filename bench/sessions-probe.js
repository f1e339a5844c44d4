// The probe of bench/sessions.js: one more @ratequeue/client, opened while
// the holders' streams are open, acquires and releases `resource` at
// `ratePerSec` for `durationMs` (paced, so it measures latency, not
// throughput) and prints each acquire's latency: from the call to the grant.
import { createClient } from "@ratequeue/client";

const { target, resource, durationMs, ratePerSec } = JSON.parse(process.argv[2]);
const client = createClient({ url: target });
// The stream opens with the first acquire: not measured.
await (await client.acquire(resource)).release();

const latencies = [];
const every = 1000 / ratePerSec;
const started = performance.now();
for (let next = started; next < started + durationMs; next += every) {
  const wait = next - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const t = performance.now();
  const lease = await client.acquire(resource);
  latencies.push(performance.now() - t);
  await lease.release();
}
const elapsedMs = performance.now() - started;
await client.close();
console.log(JSON.stringify({ elapsedMs, latencies }));
