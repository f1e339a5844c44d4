// What the bench scripts share: starting a server process and reading its
// port, running bench client processes (client.js) and summing their figures.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, "..");
export const durationMs = Number(process.env.BENCH_DURATION_MS ?? 3000);

/**
 * Starts a node script that prints `{"msg":"listening","port":…}`; resolves
 * with the child and its ports. The promise carries the child as `child`,
 * for a caller that watches the process while it starts.
 */
export function startProcess(args) {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const started = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === "listening") resolve({ child, port: entry.port, httpPort: entry.httpPort });
      } catch {}
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
  started.child = child;
  return started;
}

/** Starts a ratequeue server (server/dist/main.js serve) with a config file and extra flags. */
export const startServer = (config, ...flags) =>
  startProcess([join(root, "server/dist/main.js"), "serve", "--port", "0", "--config", config, ...flags]);

/** One client.js process; `onPhase("start" | "end")` as its measured window opens and closes. */
function runClient(options, onPhase) {
  const child = spawn(process.execPath, [join(here, "client.js"), JSON.stringify(options)], { stdio: ["ignore", "pipe", "inherit"] });
  let result;
  createInterface({ input: child.stdout }).on("line", (line) => {
    const entry = JSON.parse(line);
    if (entry.phase !== undefined) onPhase(entry.phase);
    else result = entry;
  });
  return new Promise((resolve, reject) =>
    child.once("close", (code) => (code === 0 && result !== undefined ? resolve(result) : reject(new Error(`bench client exited with ${code}`)))),
  );
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** CPU time (user + system) a process has used so far, ms; undefined where /proc is not there. */
function cpuMs(pid) {
  try {
    // Fields 14 and 15 of /proc/PID/stat (after the command name in parentheses), in clock ticks (100 a second).
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * Runs `processes` client processes with `inflight` loops in total against
 * `port` in `mode` (client.js); round trips/s, messages/s (each direction),
 * latency of a round trip, and the CPU share of the client processes and of
 * `server` (a child process) while they ran.
 */
export async function measure(port, mode, processes, inflight, { server, resource = "bench" } = {}) {
  const per = Math.max(1, Math.round(inflight / processes));
  // The server's CPU from the first client's start of measuring to the last one's end.
  let serverCpu;
  let measuring = 0;
  const onPhase = (phase) => {
    if (server === undefined) return;
    if (phase === "start" && measuring++ === 0) serverCpu = { ms: cpuMs(server.pid), at: performance.now() };
    if (phase === "end" && --measuring === 0 && serverCpu?.ms !== undefined) {
      serverCpu = { ms: cpuMs(server.pid) - serverCpu.ms, over: performance.now() - serverCpu.at };
    }
  };
  const results = await Promise.all(Array.from({ length: processes }, () => runClient({ port, mode, inflight: per, durationMs, resource, phases: true }, onPhase)));
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const seconds = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
  const sum = (key) => results.reduce((n, r) => n + r[key], 0);
  const share = (ms, over) => Number((ms / over).toFixed(2));
  return {
    roundTripsPerSec: Math.round(sum("count") / seconds),
    messagesPerSec: Math.round(sum("messages") / seconds),
    p50Ms: Number(percentile(latencies, 50).toFixed(3)),
    p99Ms: Number(percentile(latencies, 99).toFixed(3)),
    // CPU seconds per wall second over the measured window (1 is one core
    // busy), and CPU µs per message: on a shared machine the cost per message
    // moves less than the rate does.
    clientCpu: share(sum("cpuMs"), seconds * 1000),
    clientUsPerMessage: share(sum("cpuMs") * 1000, sum("messages")),
    ...(serverCpu?.over !== undefined &&
      !Number.isNaN(serverCpu.ms) && {
        serverCpu: share(serverCpu.ms, serverCpu.over),
        serverUsPerMessage: share(serverCpu.ms * 1000, (sum("messages") * serverCpu.over) / (seconds * 1000)),
      }),
  };
}
