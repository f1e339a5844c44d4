// `npm run bench:gubernator`: ratequeue's session path against gubernator
// (github.com/gubernator-io/gubernator/v2, a Go rate limiter), both single
// node on loopback, in the same run, each driven by one grpc-js client
// process at 64 calls in flight:
//   gubernator  V1/GetRateLimits with 1 and with 64 checks per call
//   ratequeue   1 and 64 acquire+release pairs per call through
//               @ratequeue/client's session stream (64 × 64 = 4,096 pairs in flight)
// A decision is one check answered by gubernator, or one acquire granted by
// ratequeue (whose release follows; the pair counts once). gubernator is
// built into .tools/bin once (scripts/tools.sh ensure_gubernator, needs Go
// and the module proxy). BENCH_ROUNDS (default 3) repeats the four runs in
// turn, each printed to stderr; the JSON line on stdout has each run's
// median round. bench/README.md says what every figure means.
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { durationMs, root, startServer } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const inflight = 64;
const batched = 64;
/** gubernator's checks go to this many unique keys in turn, spread over its workers as many tenants' would be. */
const keys = 1000;
const gubernatorBin = join(root, ".tools/bin/gubernator");

process.stderr.write("gubernator: building it into .tools/bin unless it is there (go install, the first time a few minutes)\n");
try {
  execFileSync("bash", ["-c", 'source "$1/scripts/tools.sh" && ensure_gubernator', "bash", root], { stdio: ["ignore", "inherit", "inherit"] });
} catch {
  process.stderr.write("gubernator: `go install github.com/gubernator-io/gubernator/v2/cmd/gubernator@v2.13.0` failed (is Go installed, is the module proxy reachable?)\n");
  process.exit(1);
}

/** A free loopback TCP port (free when asked: a small race, harmless on a bench machine). */
const freePort = () =>
  new Promise((resolve, reject) => {
    const probe = createServer().once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });

/** CPU time (user + system) a process has used so far, ms: fields 14 and 15 of /proc/PID/stat, in ticks of 10 ms. */
function cpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/**
 * Starts gubernator alone: its own peer through member-list on loopback
 * (the default discovery; "none" would leave it without an owner for any
 * key). Span export is off: there is no collector to send to, and gubernator
 * gets its fastest setting. The environment can override any of these.
 * Resolves when HealthCheck counts one peer.
 */
async function startGubernator(logFile) {
  const [grpcPort, httpPort, gossipPort] = [await freePort(), await freePort(), await freePort()];
  const gossip = `127.0.0.1:${gossipPort}`;
  const env = {
    GUBER_GRPC_ADDRESS: `127.0.0.1:${grpcPort}`,
    GUBER_HTTP_ADDRESS: `127.0.0.1:${httpPort}`,
    GUBER_MEMBERLIST_ADDRESS: gossip,
    GUBER_MEMBERLIST_BIND_ADDRESS: gossip,
    GUBER_MEMBERLIST_KNOWN_NODES: gossip,
    OTEL_TRACES_EXPORTER: "none",
    ...process.env,
  };
  const log = openSync(logFile, "w");
  const child = spawn(gubernatorBin, [], { env, stdio: ["ignore", log, log] });
  closeSync(log);
  const exited = new Promise((_, reject) => child.once("exit", (code) => reject(new Error(`gubernator exited with ${code}; its log: ${logFile}`))));
  const { V1 } = loadPackageDefinition(loadSync(join(here, "gubernator-v1.proto"))).pb.gubernator;
  const client = new V1(env.GUBER_GRPC_ADDRESS, credentials.createInsecure());
  const ready = (async () => {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      const health = await new Promise((resolve) => client.HealthCheck({}, (err, res) => resolve(err ? undefined : res)));
      if (health?.status === "healthy" && health.peerCount >= 1) return;
    }
    throw new Error(`gubernator was not healthy after 30 s; its log: ${logFile}`);
  })();
  try {
    await Promise.race([ready, exited]);
  } finally {
    client.close();
  }
  return { child, target: env.GUBER_GRPC_ADDRESS };
}

/** One gubernator-client.js process; the server's CPU share over the client's measured window. */
function runClient(server, options) {
  const child = spawn(process.execPath, [join(here, "gubernator-client.js"), JSON.stringify({ durationMs, inflight, keys, resource: "bench", ...options })], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let result;
  let serverCpu;
  createInterface({ input: child.stdout }).on("line", (line) => {
    const entry = JSON.parse(line);
    if (entry.phase === "start") serverCpu = { ms: cpuMs(server.pid), at: performance.now() };
    else if (entry.phase === "end") serverCpu = { ms: cpuMs(server.pid) - serverCpu.ms, over: performance.now() - serverCpu.at };
    else result = entry;
  });
  return new Promise((resolve, reject) =>
    child.once("close", (code) => (code === 0 && result !== undefined ? resolve({ ...result, serverCpu }) : reject(new Error(`bench client exited with ${code}`)))),
  );
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const round2 = (x) => Number(x.toFixed(2));

/** Decisions/s, calls/s, call latency and both processes' CPU for one run. */
async function measure(server, mode, target, perCall) {
  const r = await runClient(server.child, { mode, target, perCall });
  const seconds = r.elapsedMs / 1000;
  const sorted = r.latencies.sort((a, b) => a - b);
  return {
    decisionsPerSec: Math.round(r.decisions / seconds),
    callsPerSec: Math.round(r.calls / seconds),
    p50Ms: Number(percentile(sorted, 50).toFixed(3)),
    p99Ms: Number(percentile(sorted, 99).toFixed(3)),
    // CPU seconds per wall second over the measured window (1 is one core busy).
    clientCpu: round2(r.cpuMs / r.elapsedMs),
    serverCpu: round2(r.serverCpu.ms / r.serverCpu.over),
    ...(mode === "gubernator" && { overLimit: r.overLimit, errors: r.errors }),
  };
}

const dir = mkdtempSync(join(tmpdir(), "ratequeue-bench-gubernator-"));
// A limit and a cap that never bind: every acquire is a granted decision
// that still counts against a window and takes a slot, as each gubernator
// check counts against its bucket.
const config = join(dir, "bench.json");
writeFileSync(config, JSON.stringify({ resources: { bench: { max_queue: 100000, concurrency: 100000, limits: [{ dimension: "requests", amount: 1e9, period: "60s" }] } } }));

const gubernator = await startGubernator(join(dir, "gubernator.log"));
const ratequeue = await startServer(config, "--http-port", "off");
const runs = {
  gubernator: { perCall1: [], [`perCall${batched}`]: [] },
  ratequeue: { perCall1: [], [`perCall${batched}`]: [] },
};
try {
  for (let i = 1; i <= rounds; i++) {
    for (const perCall of [1, batched]) {
      const g = await measure(gubernator, "gubernator", gubernator.target, perCall);
      const q = await measure(ratequeue, "ratequeue", `127.0.0.1:${ratequeue.port}`, perCall);
      runs.gubernator[`perCall${perCall}`].push(g);
      runs.ratequeue[`perCall${perCall}`].push(q);
      const brief = (f) => `${f.decisionsPerSec}/s p50 ${f.p50Ms} ms p99 ${f.p99Ms} ms (CPU client ${f.clientCpu}, server ${f.serverCpu})`;
      process.stderr.write(`round ${i}/${rounds}, ${perCall} per call: gubernator ${brief(g)}; ratequeue ${brief(q)}\n`);
    }
  }
} finally {
  gubernator.child.kill("SIGTERM");
  ratequeue.child.kill("SIGTERM");
}

/** The run with the median decisions/s of each kind. */
const median = (list) => [...list].sort((a, b) => a.decisionsPerSec - b.decisionsPerSec)[Math.floor((list.length - 1) / 2)];
const figures = {};
for (const [peer, byCall] of Object.entries(runs)) {
  figures[peer] = Object.fromEntries(Object.entries(byCall).map(([k, list]) => [k, median(list)]));
}
const ratio = (a, b) => Number((a.decisionsPerSec / b.decisionsPerSec).toFixed(3));
const goVersion = execFileSync("go", ["env", "GOVERSION"], { encoding: "utf8" }).trim();
const gubernatorVersion = /gubernator\/v2\s+(\S+)/.exec(execFileSync("go", ["version", "-m", gubernatorBin], { encoding: "utf8" }))?.[1];

console.log(
  JSON.stringify({
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, go: goVersion },
    gubernatorVersion,
    durationMs,
    rounds,
    inflight,
    gubernatorKeys: keys,
    ...figures,
    ratio: {
      // The target: ratequeue's session path, one acquire per call, ≥ gubernator's batched figure.
      sessionToBatched: ratio(figures.ratequeue.perCall1, figures.gubernator[`perCall${batched}`]),
      perCall1: ratio(figures.ratequeue.perCall1, figures.gubernator.perCall1),
      [`perCall${batched}`]: ratio(figures.ratequeue[`perCall${batched}`], figures.gubernator[`perCall${batched}`]),
    },
  }),
);
