// `npm run bench:sessions`: one ratequeue server (a leader alone), and
// session streams held open by several holder processes
// (sessions-holder.js), each stream holding one lease and heartbeating it,
// at 1, 1,000, 10,000 and 50,000 streams in turn. At each step it reads the
// server's RSS and measures one more client's acquire latency
// (sessions-probe.js, paced) while the streams are open. Ends with one JSON
// line; bench/README.md says what each figure means. A holder's streams
// share one HTTP/2 connection (grpc-js pools it across the process's
// clients), so 50,000 streams take one socket per holder process: neither
// `ulimit -n` nor the loopback port range is reached.
//   BENCH_SESSIONS          the steps, ascending (default 1,1000,10000,50000)
//   BENCH_HOLDER_PROCESSES  holder processes sharing the streams (default 5)
//   BENCH_HOLDER_MODE       client (default): one @ratequeue/client per stream;
//                           raw: raw grpc-js streams, no client object per stream
//   BENCH_DURATION_MS       the probe's length at each step (default 10000:
//                           every held lease heartbeats once in it)
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startServer } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const steps = (process.env.BENCH_SESSIONS ?? "1,1000,10000,50000").split(",").map(Number).sort((a, b) => a - b);
const holderProcesses = Number(process.env.BENCH_HOLDER_PROCESSES ?? 5);
const holderMode = process.env.BENCH_HOLDER_MODE ?? "client";
const probeMs = Number(process.env.BENCH_DURATION_MS ?? 10_000);
const probeRate = 200;
/** After a step's streams are open: let their first heartbeats and the GC run before reading the RSS. */
const settleMs = 3000;
const targetSessions = 50_000;
const targetRssMb = 1024;

const mb = (bytes) => Math.round(bytes / 2 ** 20);
/** A field of /proc/PID/status in bytes (VmRSS: resident now; VmHWM: the most resident so far). */
const procStatus = (pid, field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
/** CPU time (user + system) a process has used so far, ms: fields 14 and 15 of /proc/PID/stat, in ticks of 10 ms. */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
/** Established TCP connections to a loopback port, counted from the clients' side (/proc/net/tcp). */
function connectionsTo(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .filter((line) => {
      const [, , remote, state] = line.trim().split(/\s+/);
      return remote?.endsWith(`:${hex}`) && state === "01";
    }).length;
}

/** A child process that answers one JSON line per line it is sent. */
function startHolder(options) {
  const child = spawn(process.execPath, [join(here, "sessions-holder.js"), JSON.stringify(options)], { stdio: ["pipe", "pipe", "inherit"] });
  const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise((_, reject) => child.once("exit", (code) => reject(new Error(`a holder process exited with ${code}`))));
  exited.catch(() => {}); // Awaited through hold(); closing ends the process too.
  return {
    child,
    async hold(count) {
      child.stdin.write(JSON.stringify({ hold: count }) + "\n");
      const next = await Promise.race([answers.next(), exited]);
      if (next.done) throw new Error("a holder process ended without answering");
      return JSON.parse(next.value);
    },
    close: () => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : (child.once("exit", resolve), child.stdin.end()))),
  };
}

function runProbe(target) {
  const child = spawn(process.execPath, [join(here, "sessions-probe.js"), JSON.stringify({ target, resource: "probe", durationMs: probeMs, ratePerSec: probeRate })], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => child.once("close", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the probe exited with ${code}`)))));
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

const config = join(mkdtempSync(join(tmpdir(), "ratequeue-bench-sessions-")), "sessions.json");
// No limits: every stream's acquire is granted and held; the probe has its own resource.
writeFileSync(config, JSON.stringify({ resources: { held: { max_queue: 100000 }, probe: { max_queue: 1000 } } }));
// No API key: every stream counts against one key's session limit, raised past the largest step.
const server = await startServer(config, "--http-port", "off", "--max-sessions-per-key", String(10 * steps.at(-1)));
const target = `127.0.0.1:${server.port}`;
const pid = server.child.pid;
const baselineRss = procStatus(pid, "VmRSS");
process.stderr.write(`sessions: server RSS at start ${mb(baselineRss)} MB; ${holderProcesses} holder processes (${holderMode})\n`);

const holders = Array.from({ length: holderProcesses }, () => startHolder({ target, mode: holderMode, resource: "held" }));
const results = [];
try {
  for (const sessions of steps) {
    // Spread over the holders: the first ones take one more when it does not divide.
    const started = performance.now();
    const answers = await Promise.all(
      holders.map((h, i) => h.hold(Math.floor(sessions / holderProcesses) + (i < sessions % holderProcesses ? 1 : 0))),
    );
    const openMs = Math.round(performance.now() - started);
    await new Promise((r) => setTimeout(r, settleMs));
    const cpuBefore = cpuMs(pid);
    const probe = await runProbe(target);
    const serverCpu = Number(((cpuMs(pid) - cpuBefore) / probe.elapsedMs).toFixed(2));
    const rss = procStatus(pid, "VmRSS");
    const sorted = probe.latencies.sort((a, b) => a - b);
    const step = {
      sessions: answers.reduce((n, a) => n + a.holding, 0),
      connections: connectionsTo(server.port),
      openMs,
      serverRssMb: mb(rss),
      serverPeakRssMb: mb(procStatus(pid, "VmHWM")),
      // What each stream added since the first step (which paid for the first connection and the JIT's warm-up).
      serverKbPerSession: results.length === 0 ? undefined : Math.round((rss - results[0].rssBytes) / 1024 / (sessions - results[0].sessions)),
      serverCpu,
      acquire: {
        count: sorted.length,
        p50Ms: Number(percentile(sorted, 50).toFixed(3)),
        p99Ms: Number(percentile(sorted, 99).toFixed(3)),
        maxMs: Number(sorted.at(-1).toFixed(3)),
      },
      holdersRssMb: mb(answers.reduce((n, a) => n + a.rssBytes, 0)),
      lost: answers.reduce((n, a) => n + a.lost, 0),
      failedOpens: answers.reduce((n, a) => n + a.failed, 0),
    };
    results.push(step);
    Object.defineProperty(step, "rssBytes", { value: rss }); // kept for the next steps, not printed
    process.stderr.write(`sessions: ${JSON.stringify(step)}\n`);
  }
} finally {
  await Promise.all(holders.map((h) => h.close()));
  server.child.kill("SIGTERM");
}

const top = results.find((s) => s.sessions === targetSessions);
console.log(
  JSON.stringify({
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    holderMode,
    holderProcesses,
    probe: { ratePerSec: probeRate, durationMs: probeMs },
    baselineRssMb: mb(baselineRss),
    steps: results,
    ...(top && { target: { sessions: targetSessions, serverRssMb: top.serverRssMb, withinMb: targetRssMb, met: top.serverRssMb <= targetRssMb } }),
  }),
);
