// `npm run bench`: starts a ratequeue server and an echo server (the same
// grpc-js + protobuf-es stack with no engine), drives both with the same
// client processes, runs the engine bench, and ends with one JSON line.
// Figures are documented in bench/README.md.
import { spawn } from "node:child_process";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const durationMs = Number(process.env.BENCH_DURATION_MS ?? 3000);
const totalInflight = 64;

function startProcess(args) {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === "listening") resolve({ child, port: entry.port, httpPort: entry.httpPort });
      } catch {}
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

function runClient(options) {
  const child = spawn(process.execPath, [join(here, "client.js"), JSON.stringify(options)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  return new Promise((resolve, reject) =>
    child.once("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`bench client exited with ${code}`)))),
  );
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** N client processes, `inflight` loops in total; round trips/s and latency. */
async function measure(port, mode, processes, inflight) {
  const per = Math.max(1, Math.round(inflight / processes));
  const results = await Promise.all(
    Array.from({ length: processes }, () => runClient({ port, mode, inflight: per, durationMs, resource: "bench" })),
  );
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const seconds = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
  const roundTrips = results.reduce((n, r) => n + r.count, 0) / seconds;
  return {
    roundTripsPerSec: Math.round(roundTrips),
    p50Ms: Number(percentile(latencies, 50).toFixed(3)),
    p99Ms: Number(percentile(latencies, 99).toFixed(3)),
  };
}

const configDir = mkdtempSync(join(tmpdir(), "ratequeue-bench-"));
const config = join(configDir, "bench.json");
// No limits: the bench measures the path of an uncontended acquire.
writeFileSync(config, JSON.stringify({ resources: { bench: { max_queue: 100000 } } }));

const server = await startProcess([join(root, "server/dist/main.js"), "serve", "--port", "0", "--config", config, "--http-port", "off"]);
// The same server with its HTTP port, scraped every second as a Prometheus would (1,000 resources).
const withMetricsConfig = join(configDir, "metrics.json");
const thousand = Object.fromEntries(Array.from({ length: 999 }, (_, i) => [`r${i}`, { limits: [{ dimension: "requests", amount: 10, period: "1s" }] }]));
writeFileSync(withMetricsConfig, JSON.stringify({ resources: { bench: { max_queue: 100000 }, ...thousand } }));
const scraped = await startProcess([join(root, "server/dist/main.js"), "serve", "--port", "0", "--config", withMetricsConfig]);
const echo = await startProcess([join(here, "echo-server.js")]);
const connectEcho = await startProcess([join(here, "connect-echo-server.js")]);
const figures = {};
try {
  for (const mode of ["session", "unary"]) {
    for (const processes of [1, 8]) {
      const real = await measure(server.port, mode, processes, totalInflight);
      const empty = await measure(echo.port, mode, processes, totalInflight);
      const key = `${mode}_${processes}p`;
      figures[key] = { ratequeue: real, transport: empty, ratio: Number((real.roundTripsPerSec / empty.roundTripsPerSec).toFixed(3)) };
      console.error(`${key}: ${JSON.stringify(figures[key])}`);
    }
    const single = await measure(server.port, mode, 1, 1);
    figures[`${mode}_uncontended`] = single;
    console.error(`${mode}_uncontended: ${JSON.stringify(single)}`);
  }
  // Metrics cost nothing on the acquire path: the session run again while /metrics is scraped every second.
  let scrapes = 0;
  const scraper = setInterval(() => {
    fetch(`http://127.0.0.1:${scraped.httpPort}/metrics`)
      .then((r) => r.text())
      .then(() => scrapes++, () => {});
  }, 1000);
  const withoutMetrics = await measure(server.port, "session", 1, totalInflight);
  const withMetrics = await measure(scraped.port, "session", 1, totalInflight);
  clearInterval(scraper);
  figures.metrics = {
    off: withoutMetrics.roundTripsPerSec,
    scrapedEverySecond: withMetrics.roundTripsPerSec,
    scrapes,
    ratio: Number((withMetrics.roundTripsPerSec / withoutMetrics.roundTripsPerSec).toFixed(3)),
  };
  console.error(`metrics: ${JSON.stringify(figures.metrics)}`);
  // The library choice: the same echo service on grpc-js and on connect-node,
  // each driven by its own library's client, one process.
  figures.library = {};
  for (const mode of ["session", "unary"]) {
    const grpcJs = await measure(echo.port, mode, 1, totalInflight);
    const connect = await measure(connectEcho.port, `connect-${mode}`, 1, totalInflight);
    figures.library[mode] = { grpcJs: grpcJs.roundTripsPerSec, connectNode: connect.roundTripsPerSec };
    console.error(`library ${mode}: ${JSON.stringify(figures.library[mode])}`);
  }
} finally {
  server.child.kill("SIGTERM");
  scraped.child.kill("SIGTERM");
  echo.child.kill("SIGTERM");
  connectEcho.child.kill("SIGTERM");
}

const engine = await new Promise((resolve, reject) => {
  const child = spawn(process.execPath, [join(here, "engine.js")], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.once("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").pop())) : reject(new Error("engine bench failed"))));
});

console.log(
  JSON.stringify({
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    durationMs,
    inflight: totalInflight,
    ...figures,
    engine,
  }),
);
