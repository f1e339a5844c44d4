// One client process of bench/gubernator.js: `inflight` loops, each making
// one call after another for a fixed time; a call carries `perCall`
// decisions. Prints {"phase":"start"} and {"phase":"end"} around the
// measured window, then its decisions, calls, per-call latencies, CPU time
// and the answers that were not a yes.
//   gubernator: one unary V1/GetRateLimits with `perCall` checks (hits 1
//               each, keys spread over `keys` unique keys), grpc-js with
//               @grpc/proto-loader as a Node user of gubernator would write
//   ratequeue:  `perCall` acquire+release pairs at once through
//               @ratequeue/client's session stream; a call ends when every
//               pair has been released, a decision is one granted acquire
import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { createClient } from "@ratequeue/client";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const { target, mode, inflight, perCall, durationMs, resource, keys } = JSON.parse(process.argv[2]);

/** Answers that were not a "yes": gubernator's OVER_LIMIT and per-check errors. */
const refused = { overLimit: 0, errors: 0 };

/** Each mode returns one call (resolving when its `perCall` decisions are made) and a way to close. */
const modes = {
  gubernator() {
    const definition = loadSync(join(here, "gubernator-v1.proto"), { longs: Number, enums: Number, defaults: true });
    const { V1 } = loadPackageDefinition(definition).pb.gubernator;
    const client = new V1(target, credentials.createInsecure());
    let nextKey = 0;
    const check = () => ({ name: "bench", uniqueKey: `k${nextKey++ % keys}`, hits: 1, limit: 1e12, duration: 60_000 });
    return {
      call: () =>
        new Promise((resolve, reject) =>
          client.GetRateLimits({ requests: Array.from({ length: perCall }, check) }, (err, res) => {
            if (err) return reject(err);
            for (const r of res.responses) {
              if (r.error) refused.errors++;
              else if (r.status !== 0) refused.overLimit++;
            }
            resolve();
          }),
        ),
      close: async () => client.close(),
    };
  },
  ratequeue() {
    const client = createClient({ url: target });
    const pair = async () => (await client.acquire(resource)).release();
    return {
      call: perCall === 1 ? pair : () => Promise.all(Array.from({ length: perCall }, pair)),
      close: () => client.close(),
    };
  },
};

const { call, close } = modes[mode]();
const latencies = [];
let stop = false;

// Warm up the connection and the JIT before measuring.
const warmEnd = Date.now() + 500;
await Promise.all(Array.from({ length: inflight }, async () => { while (Date.now() < warmEnd) await call(); }));
refused.overLimit = refused.errors = 0;

setTimeout(() => (stop = true), durationMs);
console.log(JSON.stringify({ phase: "start" }));
const cpuAtStart = process.cpuUsage();
const started = performance.now();
await Promise.all(
  Array.from({ length: inflight }, async () => {
    while (!stop) {
      const t = performance.now();
      await call();
      latencies.push(performance.now() - t);
    }
  }),
);
const elapsedMs = performance.now() - started;
const { user, system } = process.cpuUsage(cpuAtStart);
console.log(JSON.stringify({ phase: "end" }));
await close();
const cpuMs = (user + system) / 1000;
console.log(JSON.stringify({ calls: latencies.length, decisions: latencies.length * perCall, elapsedMs, cpuMs, latencies, ...refused }));
