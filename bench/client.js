// One bench client process: runs acquire+release round trips for a fixed
// time with `inflight` loops in parallel and prints its count and latencies.
//   mode session: through the TypeScript client's session stream
//   mode unary:   unary Acquire then unary Release with grpc-js
import { create } from "@bufbuild/protobuf";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import { createClient } from "@ratequeue/client";
import { AcquireRequestSchema, grpcServiceDefinition, RateQueueService, ReleaseRequestSchema } from "@ratequeue/client/proto";

const { port, mode, inflight, durationMs, resource } = JSON.parse(process.argv[2]);
const latencies = [];
let stop = false;

let roundTrip;
let close = async () => {};
if (mode === "session") {
  const client = createClient({ url: `127.0.0.1:${port}` });
  roundTrip = async () => (await client.acquire(resource)).release();
  close = () => client.close();
} else {
  const methods = grpcServiceDefinition(RateQueueService);
  const grpc = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const unary = (m, req) =>
    new Promise((resolve, reject) =>
      grpc.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))),
    );
  roundTrip = async () => {
    const res = await unary(methods.acquire, create(AcquireRequestSchema, { resource }));
    await unary(methods.release, create(ReleaseRequestSchema, { leaseId: res.lease.leaseId }));
  };
  close = async () => grpc.close();
}

// Warm up the connection and the JIT before measuring.
const warmEnd = Date.now() + 500;
await Promise.all(Array.from({ length: inflight }, async () => { while (Date.now() < warmEnd) await roundTrip(); }));

setTimeout(() => (stop = true), durationMs);
const started = performance.now();
await Promise.all(
  Array.from({ length: inflight }, async () => {
    while (!stop) {
      const t = performance.now();
      await roundTrip();
      latencies.push(performance.now() - t);
    }
  }),
);
const elapsedMs = performance.now() - started;
await close();
console.log(JSON.stringify({ count: latencies.length, elapsedMs, latencies }));
