// `node bench/serve-config.js [--resources N] [--format json|yaml] [--settle-seconds S]`
// (build first): writes a config file of N resources (default 1,000,000; two
// limits, a concurrency cap, the default lane), starts `ratequeue serve
// --config` on it, and prints one JSON line: seconds to "listening", the
// server's peak RSS while it loaded, and its RSS once it has served idle for
// S seconds (default 60; V8 gives back the pages of the parsed file over the
// first tens of seconds). RSS is read from /proc, so this runs on Linux.
import { readFileSync, writeFileSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "./harness.js";

const { values } = parseArgs({
  options: {
    resources: { type: "string", default: "1000000" },
    format: { type: "string", default: "json" },
    "settle-seconds": { type: "string", default: "60" },
  },
});
const count = Number(values.resources);
const settleSeconds = Number(values["settle-seconds"]);

const file = join(mkdtempSync(join(tmpdir(), "ratequeue-bench-config-")), `config.${values.format}`);
if (values.format === "json") {
  const resources = {};
  for (let k = 0; k < count; k++) {
    resources[`tenant-${k}`] = {
      limits: [
        { dimension: "requests", amount: 500, period: "60s", burst: 20 },
        { dimension: "load", amount: 30000, period: "60s" },
      ],
      concurrency: 8,
    };
  }
  writeFileSync(file, JSON.stringify({ resources }));
} else {
  const lines = ["resources:"];
  for (let k = 0; k < count; k++) {
    lines.push(
      `  tenant-${k}:`,
      "    limits:",
      "      - { dimension: requests, amount: 500, period: 60s, burst: 20 }",
      "      - { dimension: load, amount: 30000, period: 60s }",
      "    concurrency: 8",
    );
  }
  writeFileSync(file, lines.join("\n") + "\n");
}

/** The child's resident set, MB. */
const rssMB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;

const t0 = performance.now();
const pending = startServer(file, "--http-port", "off");
let peakMB = 0;
const sampler = setInterval(() => {
  peakMB = Math.max(peakMB, rssMB(pending.child.pid));
}, 100);
const server = await pending;
const startSeconds = (performance.now() - t0) / 1000;
const pid = server.child.pid;
for (let s = 0; s < settleSeconds; s++) {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  peakMB = Math.max(peakMB, rssMB(pid));
}
clearInterval(sampler);
const settledMB = rssMB(pid);
server.child.kill("SIGTERM");
console.log(
  JSON.stringify({
    node: process.version,
    resources: count,
    format: values.format,
    file_mb: Math.round(statSync(file).size / 1e6),
    seconds_to_listening: Number(startSeconds.toFixed(1)),
    rss_peak_mb: Math.round(peakMB),
    rss_after_idle_mb: Math.round(settledMB),
    idle_seconds: settleSeconds,
  }),
);
