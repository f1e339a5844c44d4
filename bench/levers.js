// `node bench/levers.js`: what each lever of the session path bought, one
// by one, in the same run. It builds the current tree several times into a
// temporary directory, each time with the session path's own files (the
// TypeScript client's session and client, the Session codec and batching of
// @ratequeue/proto, the server's session and answers) as they were after
// one more lever, so every build runs the same engine and bench scripts:
//   before      the files before issue 14's work on them
//   timers      + one timer for all the client's give-ups, not one per request
//   batching    + the client batches each turn's messages, the server answers in batches
//   codec       + the hand-written codec of the hot Session messages
//   allocations + answers and requests as literals, shared time values, lazy AbortControllers
//   promises    + one promise per request (the answer becomes the caller's value as it comes)
// Then it measures, round after round with the order reversed every other
// round, the raw grpc-js echo (the ceiling) and each build's session path
// (one client process, 64 in flight): messages/s and CPU µs per message of
// client and server. BENCH_ROUNDS (default 6), BENCH_DURATION_MS (default
// 3000) and BENCH_MODE (default session; session-timeout gives every acquire
// a timeout) set the run. Needs git; prints one JSON line of medians.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const rounds = Number(process.env.BENCH_ROUNDS ?? 6);
const mode = process.env.BENCH_MODE ?? "session";

/** Each lever's commit: the session path's files as they were right after it. */
const levers = [
  ["before", "d0a9343"],
  ["timers", "cea7b2e"],
  ["batching", "135335e"],
  ["codec", "b2548fd"],
  ["allocations", "36605b1"],
  ["promises", "3f89610"],
];
/** The files the levers changed. */
const files = [
  "clients/ts/src/client.ts",
  "clients/ts/src/session.ts",
  "clients/ts/src/protocol.ts",
  "clients/ts/src/deadlines.ts",
  "proto/ts/src/index.ts",
  "proto/ts/src/session-codec.ts",
  "proto/ts/src/session-batch.ts",
  "server/src/rpc/session.ts",
  "server/src/rpc/convert.ts",
];

const git = (...args) => execFileSync("git", ["-C", root, ...args], { maxBuffer: 1 << 30 });
const work = mkdtempSync(join(tmpdir(), "ratequeue-levers-"));
const tree = git("archive", "HEAD");

/** The current tree with the lever files of `commit`, built; returns its directory. */
function build(name, commit) {
  const dir = join(work, name);
  mkdirSync(dir);
  execFileSync("tar", ["-x", "-C", dir], { input: tree });
  for (const f of files) {
    rmSync(join(dir, f), { force: true });
    try {
      writeFileSync(join(dir, f), git("show", `${commit}:${f}`));
    } catch {
      // Not there yet at that commit.
    }
  }
  // Tests are not built, and later tests would not compile against earlier files.
  for (const d of ["clients/ts/src", "server/src/rpc"]) {
    for (const f of readdirSync(join(dir, d))) if (f.endsWith(".test.ts")) rmSync(join(dir, d, f));
  }
  // The dependencies are the repository's; the workspaces are this tree's own.
  mkdirSync(join(dir, "node_modules/@ratequeue"), { recursive: true });
  for (const dep of readdirSync(join(root, "node_modules"))) {
    if (dep !== "@ratequeue") symlinkSync(join(root, "node_modules", dep), join(dir, "node_modules", dep));
  }
  for (const [pkg, path] of [["client", "clients/ts"], ["proto", "proto/ts"], ["server", "server"]]) {
    symlinkSync(join("../..", path), join(dir, "node_modules/@ratequeue", pkg));
  }
  execFileSync(join(root, "node_modules/.bin/tsc"), ["-b"], { cwd: dir, stdio: "inherit" });
  process.stderr.write(`levers: built ${name} (${commit})\n`);
  return dir;
}

const builds = levers.map(([name, commit]) => ({ name, dir: build(name, commit) }));
for (const b of builds) b.harness = await import(join(b.dir, "bench/harness.js"));
const { benchConfig, startRawEcho } = await import(join(builds[0].dir, "bench/session-path.js"));
const config = benchConfig();
for (const b of builds) b.server = await b.harness.startServer(config, "--http-port", "off");
const rawEcho = await startRawEcho();
const results = { raw: [], ...Object.fromEntries(builds.map((b) => [b.name, []])) };
try {
  for (let r = 0; r < rounds; r++) {
    const raw = await builds[0].harness.measure(rawEcho.port, "raw", 1, 64, { server: rawEcho.child });
    results.raw.push(raw);
    let line = `levers ${r + 1}/${rounds}: raw ${raw.messagesPerSec} msg/s`;
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
      const f = await b.harness.measure(b.server.port, mode, 1, 64, { server: b.server.child });
      results[b.name].push(f);
      line += ` | ${b.name} ${f.messagesPerSec} msg/s (µs/msg client ${f.clientUsPerMessage}, server ${f.serverUsPerMessage})`;
    }
    process.stderr.write(line + "\n");
  }
} finally {
  for (const b of builds) b.server.child.kill("SIGTERM");
  rawEcho.child.kill("SIGTERM");
}
rmSync(work, { recursive: true, force: true });

const median = (xs) => {
  const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const summary = Object.fromEntries(
  Object.entries(results).map(([name, runs]) => [
    name,
    {
      messagesPerSec: median(runs.map((f) => f.messagesPerSec)),
      clientUsPerMessage: median(runs.map((f) => f.clientUsPerMessage)),
      serverUsPerMessage: median(runs.map((f) => f.serverUsPerMessage)),
      all: runs.map((f) => f.messagesPerSec),
    },
  ]),
);
console.log(JSON.stringify({ mode, rounds, durationMs: Number(process.env.BENCH_DURATION_MS ?? 3000), ...summary }));
