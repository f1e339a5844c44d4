// `npm run bench:flood`: one tenant floods (ten times the message rate of
// another), and the other tenant's acquire latency is measured before and
// during the flood. Ends with one JSON line (bench/README.md says what the
// fields mean). BENCH_DURATION_MS sets each measurement's length (default 5000).
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createAdminClient } from "@ratequeue/client";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const durationMs = Number(process.env.BENCH_DURATION_MS ?? 5000);
const calmRate = 200; // acquire+release round trips per second of the calm tenant
const floodRate = 10 * calmRate;
const rootKey = "bench-root-key-0123456789abcdefghijklmnop";

const dir = mkdtempSync(join(tmpdir(), "ratequeue-bench-flood-"));
writeFileSync(join(dir, "root.key"), rootKey + "\n");
writeFileSync(join(dir, "config.json"), JSON.stringify({ namespaces: { calm: { resources: { api: {} } }, flood: { resources: { api: {} } } } }));

const server = spawn(process.execPath, [join(root, "server/dist/main.js"), "serve", "--port", "0", "--config", join(dir, "config.json"), "--root-key-file", join(dir, "root.key")], {
  stdio: ["ignore", "pipe", "inherit"],
});
const port = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).on("line", (line) => {
    try {
      const entry = JSON.parse(line);
      if (entry.msg === "listening") resolve(entry.port);
    } catch {}
  });
  server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
});

const admin = createAdminClient({ url: `127.0.0.1:${port}`, apiKey: rootKey });
const keys = {};
for (const namespace of ["calm", "flood"]) keys[namespace] = (await admin.createApiKey({ namespace, role: "worker" })).key;
admin.close();

function runClient(options) {
  const child = spawn(process.execPath, [join(here, "client.js"), JSON.stringify({ port, mode: "session", resource: "api", durationMs, ...options })], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => child.once("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client exited with ${code}`)))));
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const figures = (r) => {
  const sorted = [...r.latencies].sort((a, b) => a - b);
  return { roundTripsPerSec: Math.round(r.count / (r.elapsedMs / 1000)), p50Ms: Number(percentile(sorted, 50).toFixed(3)), p99Ms: Number(percentile(sorted, 99).toFixed(3)) };
};

const calm = { apiKey: keys.calm, inflight: 1, ratePerSec: calmRate };
process.stderr.write(`tenant flood: calm tenant alone, ${calmRate}/s for ${durationMs} ms\n`);
const alone = figures(await runClient(calm));
process.stderr.write(`tenant flood: calm tenant during a flood of ${floodRate}/s\n`);
const [during, flood] = await Promise.all([runClient(calm), runClient({ apiKey: keys.flood, inflight: 16, ratePerSec: floodRate, durationMs: durationMs + 1500 })]);
server.kill("SIGTERM");
const result = {
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
  durationMs,
  calmAlone: alone,
  calmDuringFlood: figures(during),
  flood: figures(flood),
  p99Ratio: Number((figures(during).p99Ms / alone.p99Ms).toFixed(2)),
};
console.log(JSON.stringify(result));
