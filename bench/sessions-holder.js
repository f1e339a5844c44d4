// One holder process of bench/sessions.js: it opens session streams that
// each hold one lease, as many idle workers would. It reads one JSON line at
// a time on stdin, {"hold": K}, opens streams until it holds K (it never
// holds fewer than it did), and answers {"holding": K, "openMs": …,
// "rssBytes": …, "lost": …, "failed": …} (lost: held leases whose stream
// broke or that the server expired; failed: opens whose acquire failed and
// were tried again, as a worker would; both since the start). It closes
// everything when stdin ends.
//   client:  one @ratequeue/client per stream (createClient, then acquire):
//            each heartbeats its lease as a real worker's client does; grpc-js
//            shares one HTTP/2 connection between the process's clients
//   raw:     raw grpc-js Session streams on one grpc-js client, each sending
//            one acquire, then a heartbeat of its lease every third of the
//            TTL; the same traffic without a client object per stream
import { create } from "@bufbuild/protobuf";
import { durationMs as toMs } from "@bufbuild/protobuf/wkt";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import { createClient } from "@ratequeue/client";
import { AcquireRequestSchema, grpcServiceDefinition, HeartbeatRequestSchema, RateQueueService, SessionRequestSchema } from "@ratequeue/proto";
import { createInterface } from "node:readline";

const { target, mode, resource } = JSON.parse(process.argv[2]);
/** Streams opened at once while growing: enough to keep the connection busy, few enough not to queue thousands of acquires. */
const openingAtOnce = 200;

/** Each mode opens one stream holding one lease and returns how to close it. */
const modes = {
  client() {
    return async () => {
      const client = createClient({ url: target });
      try {
        const lease = await client.acquire(resource);
        lease.signal.addEventListener("abort", () => lost++);
      } catch (err) {
        await client.close();
        throw err;
      }
      return () => client.close();
    };
  },
  raw() {
    const { session } = grpcServiceDefinition(RateQueueService);
    const grpc = new Client(target, credentials.createInsecure());
    return () =>
      new Promise((resolve, reject) => {
        const stream = grpc.makeBidiStreamRequest(session.path, session.requestSerialize, session.responseDeserialize, new Metadata());
        let nextId = 1n;
        let heartbeat;
        stream.on("data", (res) => {
          if (res.kind.case === "granted" && heartbeat === undefined) {
            const { leaseId, ttl } = res.kind.value.lease;
            const every = Math.max(50, Math.floor((ttl === undefined ? 30_000 : toMs(ttl)) / 3));
            const value = create(HeartbeatRequestSchema, { leaseIds: [leaseId] });
            heartbeat = setInterval(() => stream.write(create(SessionRequestSchema, { requestId: nextId++, kind: { case: "heartbeat", value } })), every);
            resolve(() => {
              clearInterval(heartbeat);
              stream.end();
            });
          } else if (res.kind.case === "leaseExpired") {
            lost++;
          } else if (res.kind.case === "failure") {
            stream.cancel();
            reject(new Error(`acquire failed: ${res.kind.value.message}`));
          }
        });
        stream.on("error", (err) => {
          if (heartbeat !== undefined) lost++;
          clearInterval(heartbeat);
          reject(err);
        });
        const acquire = create(AcquireRequestSchema, { resource });
        stream.write(create(SessionRequestSchema, { requestId: nextId++, kind: { case: "acquire", value: acquire } }));
      });
  },
};

const open = modes[mode]();
const closers = [];
let lost = 0;
let failed = 0;

/** Opens streams until `count` are held, `openingAtOnce` at a time; gives up after as many failures as streams asked for. */
async function grow(count) {
  let next = closers.length;
  const giveUpAt = failed + count;
  await Promise.all(
    Array.from({ length: openingAtOnce }, async () => {
      while (next < count) {
        next++;
        for (;;) {
          try {
            closers.push(await open());
            break;
          } catch (err) {
            if (failed++ === 0) process.stderr.write(`sessions-holder: an open failed, trying again (later failures are only counted): ${err.message}\n`);
            if (failed >= giveUpAt) throw err;
          }
        }
      }
    }),
  );
}

const commands = createInterface({ input: process.stdin });
for await (const line of commands) {
  const { hold } = JSON.parse(line);
  const started = performance.now();
  await grow(hold);
  console.log(JSON.stringify({ holding: closers.length, openMs: Math.round(performance.now() - started), rssBytes: process.memoryUsage.rss(), lost, failed }));
}
await Promise.all(closers.map((close) => close()));
process.exit(0);
