// The session path against its two ceilings, in the same run, one client
// process with 64 messages in flight (bench/README.md):
//   raw        a grpc-js bidi echo with identity serialization (raw-echo-server.js)
//   protobufEs the same with SessionRequest/SessionResponse encoded and
//              decoded by protobuf-es on both ends (echo-server.js --protobuf-es, no engine)
//   session    acquire+release through @ratequeue/client against a real server
// Messages/s counts the messages sent one way (an acquire+release round trip
// is two); `ratio` is session ÷ raw. `node bench/session-path.js` (build
// first) runs it alone: BENCH_ROUNDS (default 3) repeats the three in turn,
// each round printed to stderr, and the JSON line on stdout has the round
// with the median ratio. `npm run bench` runs one round (bench/run.js).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { measure, startProcess, startServer } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
export const sessionPathInflight = 64;

/** Starts the raw echo server (raw-echo-server.js). */
export const startRawEcho = () => startProcess([join(here, "raw-echo-server.js")]);
/** Starts the echo server that encodes and decodes with protobuf-es alone. */
export const startProtobufEsEcho = () => startProcess([join(here, "echo-server.js"), "--protobuf-es"]);

/**
 * Measures raw, protobufEs and session `rounds` times in turn against the
 * three running servers; resolves with the round of the median ratio.
 */
export async function measureSessionPath({ server, protobufEsEcho, rawEcho }, rounds = 1) {
  const results = [];
  for (let i = 0; i < rounds; i++) {
    const raw = await measure(rawEcho.port, "raw", 1, sessionPathInflight, { server: rawEcho.child });
    const protobufEs = await measure(protobufEsEcho.port, "proto", 1, sessionPathInflight, { server: protobufEsEcho.child });
    const session = await measure(server.port, "session", 1, sessionPathInflight, { server: server.child });
    const round = { raw, protobufEs, session, ratio: Number((session.messagesPerSec / raw.messagesPerSec).toFixed(3)) };
    results.push(round);
    const brief = (f) => `${f.messagesPerSec} msg/s (CPU µs/msg client ${f.clientUsPerMessage}, server ${f.serverUsPerMessage})`;
    process.stderr.write(`session path ${i + 1}/${rounds}: raw ${brief(raw)}, protobuf-es ${brief(protobufEs)}, session ${brief(session)}, session/raw ${round.ratio}\n`);
  }
  results.sort((a, b) => a.ratio - b.ratio);
  return results[Math.floor((results.length - 1) / 2)];
}

/** A config of one resource `bench` with no limits: the bench measures the path of an uncontended acquire. */
export function benchConfig() {
  const config = join(mkdtempSync(join(tmpdir(), "ratequeue-bench-")), "bench.json");
  writeFileSync(config, JSON.stringify({ resources: { bench: { max_queue: 100000 } } }));
  return config;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const server = await startServer(benchConfig(), "--http-port", "off");
  const protobufEsEcho = await startProtobufEsEcho();
  const rawEcho = await startRawEcho();
  try {
    console.log(JSON.stringify({ inflight: sessionPathInflight, rounds, ...(await measureSessionPath({ server, protobufEsEcho, rawEcho }, rounds)) }));
  } finally {
    for (const p of [server, protobufEsEcho, rawEcho]) p.child.kill("SIGTERM");
  }
}
