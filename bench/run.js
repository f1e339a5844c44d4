// `npm run bench`: starts a ratequeue server, an echo server (the same
// grpc-js stack and codecs with no engine), one that encodes with protobuf-es
// alone and a raw echo server (grpc-js with Buffers only); measures the
// session path against both ceilings (session-path.js), drives the real
// server and the echo server with the same client processes,
// runs the engine bench, and ends with one JSON line. Figures are documented
// in bench/README.md.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { durationMs, measure, startProcess, startServer } from "./harness.js";
import { benchConfig, measureSessionPath, startProtobufEsEcho, startRawEcho } from "./session-path.js";

const here = dirname(fileURLToPath(import.meta.url));
const totalInflight = 64;

const config = benchConfig();
const server = await startServer(config, "--http-port", "off");
// The same server with its HTTP port, scraped every second as a Prometheus would (1,000 resources).
const withMetricsConfig = join(dirname(config), "metrics.json");
const thousand = Object.fromEntries(Array.from({ length: 999 }, (_, i) => [`r${i}`, { limits: [{ dimension: "requests", amount: 10, period: "1s" }] }]));
writeFileSync(withMetricsConfig, JSON.stringify({ resources: { bench: { max_queue: 100000 }, ...thousand } }));
const scraped = await startServer(withMetricsConfig);
const echo = await startProcess([join(here, "echo-server.js")]);
const connectEcho = await startProcess([join(here, "connect-echo-server.js")]);
const rawEcho = await startRawEcho();
const protobufEsEcho = await startProtobufEsEcho();
const figures = {};
try {
  // The session path against its ceilings, first, on a fresh server.
  figures.sessionPath = await measureSessionPath({ server, protobufEsEcho, rawEcho });
  for (const mode of ["session", "unary"]) {
    for (const processes of [1, 8]) {
      const real = await measure(server.port, mode, processes, totalInflight, { server: server.child });
      const empty = await measure(echo.port, mode, processes, totalInflight, { server: echo.child });
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
  rawEcho.child.kill("SIGTERM");
  protobufEsEcho.child.kill("SIGTERM");
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
