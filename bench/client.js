// One bench client process: runs acquire+release round trips for a fixed
// time with `inflight` loops in parallel and prints its count and latencies.
// With `ratePerSec` the loops together start that many round trips a second
// (paced, each loop on its own schedule); `apiKey` authenticates the session.
//   session:          the TypeScript client's session stream (grpc-js)
//   unary:            unary Acquire then unary Release with grpc-js
//   connect-session:  one bidi Session stream with a connect-node client
//   connect-unary:    unary Acquire then Release with a connect-node client
import { create } from "@bufbuild/protobuf";
import { createClient as createConnectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import { createClient } from "@ratequeue/client";
import {
  AcquireRequestSchema,
  grpcServiceDefinition,
  RateQueueService,
  ReleaseRequestSchema,
  SessionRequestSchema,
} from "@ratequeue/proto";

const { port, mode, inflight, durationMs, resource, apiKey, ratePerSec } = JSON.parse(process.argv[2]);
const acquireRequest = create(AcquireRequestSchema, { resource });
const releaseRequest = (leaseId) => create(ReleaseRequestSchema, { leaseId });

/** Each mode returns one acquire+release round trip and a way to close. */
const modes = {
  session() {
    const client = createClient({ url: `127.0.0.1:${port}`, apiKey });
    return { roundTrip: async () => (await client.acquire(resource)).release(), close: () => client.close() };
  },
  unary() {
    const methods = grpcServiceDefinition(RateQueueService);
    const grpc = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const unary = (m, req) =>
      new Promise((resolve, reject) =>
        grpc.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))),
      );
    return {
      roundTrip: async () => {
        const res = await unary(methods.acquire, acquireRequest);
        await unary(methods.release, releaseRequest(res.lease.leaseId));
      },
      close: async () => grpc.close(),
    };
  },
  "connect-unary"() {
    const client = createConnectClient(RateQueueService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    return {
      roundTrip: async () => {
        const res = await client.acquire(acquireRequest);
        await client.release(releaseRequest(res.lease.leaseId));
      },
      close: async () => {},
    };
  },
  "connect-session"() {
    const client = createConnectClient(RateQueueService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    // An async iterable fed by send(); answers are matched by request id.
    const queue = [];
    let wake;
    let closed = false;
    async function* requests() {
      while (!closed) {
        while (queue.length > 0) yield queue.shift();
        await new Promise((r) => (wake = r));
      }
    }
    const pending = new Map();
    let nextId = 1n;
    const send = (kind) =>
      new Promise((resolve) => {
        const requestId = nextId++;
        pending.set(requestId, resolve);
        queue.push(create(SessionRequestSchema, { requestId, kind }));
        wake?.();
      });
    const reader = (async () => {
      for await (const res of client.session(requests())) {
        pending.get(res.requestId)?.(res);
        pending.delete(res.requestId);
      }
    })();
    return {
      roundTrip: async () => {
        const granted = await send({ case: "acquire", value: acquireRequest });
        await send({ case: "release", value: releaseRequest(granted.kind.value.lease.leaseId) });
      },
      close: async () => {
        closed = true;
        wake?.();
        await reader;
      },
    };
  },
};

const { roundTrip, close } = modes[mode]();
const latencies = [];
let stop = false;

// Warm up the connection and the JIT before measuring.
const warmEnd = Date.now() + 500;
await Promise.all(Array.from({ length: inflight }, async () => { while (Date.now() < warmEnd) await roundTrip(); }));

setTimeout(() => (stop = true), durationMs);
const started = performance.now();
// Paced: each loop starts a round trip every `every` ms, skipping none it fell behind on.
const every = ratePerSec === undefined ? 0 : (1000 * inflight) / ratePerSec;
await Promise.all(
  Array.from({ length: inflight }, async (_, i) => {
    let next = started + (every * i) / inflight;
    while (!stop) {
      if (every > 0) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        next += every;
        if (stop) break;
      }
      const t = performance.now();
      await roundTrip();
      latencies.push(performance.now() - t);
    }
  }),
);
const elapsedMs = performance.now() - started;
await close();
console.log(JSON.stringify({ count: latencies.length, elapsedMs, latencies }));
