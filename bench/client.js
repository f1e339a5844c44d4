// One bench client process: runs round trips for a fixed time with
// `inflight` loops in parallel and prints its count, messages, CPU time and
// latencies (with `phases`, also `{"phase":"start"}` and `{"phase":"end"}`
// lines around the measured window, for harness.js). With `ratePerSec` the loops together start that many
// round trips a second (paced, each loop on its own schedule); `apiKey`
// authenticates the session.
//   raw:              one message written to a raw echo stream (raw-echo-server.js) and read back: Buffers, no protobuf
//   proto:            acquire then release as SessionRequests on a bare grpc-js Session stream, encoded and decoded by protobuf-es
//   session:          acquire+release through the TypeScript client's session stream (grpc-js)
//   session-timeout:  the same, each acquire with a timeout (30 s, never reached)
//   unary:            unary Acquire then unary Release with grpc-js
//   connect-session:  one bidi Session stream with a connect-node client
//   connect-unary:    unary Acquire then Release with a connect-node client
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
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
  SessionResponseSchema,
} from "@ratequeue/proto";

const { port, mode, inflight, durationMs, resource, apiKey, ratePerSec, phases } = JSON.parse(process.argv[2]);
const acquireRequest = create(AcquireRequestSchema, { resource });
const releaseRequest = (leaseId) => create(ReleaseRequestSchema, { leaseId });

/** The raw echo server's one method (raw-echo-server.js). */
const rawEchoPath = "/bench.RawEcho/Echo";
const identity = (b) => b;

/** Each mode returns one round trip, how many messages it sends (each answered by one), and a way to close. */
const modes = {
  raw() {
    const grpc = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const stream = grpc.makeBidiStreamRequest(rawEchoPath, identity, identity, new Metadata());
    // The echo keeps the order: the n-th answer is the n-th message's.
    const waiting = [];
    stream.on("data", () => waiting.shift()());
    // The bytes of an acquire, as the session would send them.
    const bytes = Buffer.from(toBinary(SessionRequestSchema, create(SessionRequestSchema, { requestId: 1n, kind: { case: "acquire", value: acquireRequest } })));
    return {
      roundTrip: () => new Promise((resolve) => (waiting.push(resolve), stream.write(bytes))),
      messages: 1,
      close: async () => (stream.end(), grpc.close()),
    };
  },
  proto() {
    const grpc = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const { path } = grpcServiceDefinition(RateQueueService).session;
    const stream = grpc.makeBidiStreamRequest(
      path,
      (m) => Buffer.from(toBinary(SessionRequestSchema, m)),
      (b) => fromBinary(SessionResponseSchema, b),
      new Metadata(),
    );
    const pending = new Map();
    let nextId = 1n;
    stream.on("data", (res) => {
      pending.get(res.requestId)(res);
      pending.delete(res.requestId);
    });
    const send = (kind) =>
      new Promise((resolve) => {
        const requestId = nextId++;
        pending.set(requestId, resolve);
        stream.write(create(SessionRequestSchema, { requestId, kind }));
      });
    return {
      roundTrip: async () => {
        const granted = await send({ case: "acquire", value: acquireRequest });
        await send({ case: "release", value: releaseRequest(granted.kind.value.lease.leaseId) });
      },
      messages: 2,
      close: async () => (stream.end(), grpc.close()),
    };
  },
  session() {
    const client = createClient({ url: `127.0.0.1:${port}`, apiKey });
    return { roundTrip: async () => (await client.acquire(resource)).release(), messages: 2, close: () => client.close() };
  },
  "session-timeout"() {
    const client = createClient({ url: `127.0.0.1:${port}`, apiKey });
    return { roundTrip: async () => (await client.acquire(resource, { timeoutMs: 30_000 })).release(), messages: 2, close: () => client.close() };
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
      messages: 2,
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
      messages: 2,
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
      messages: 2,
      close: async () => {
        closed = true;
        wake?.();
        await reader;
      },
    };
  },
};

const { roundTrip, messages, close } = modes[mode]();
const latencies = [];
let stop = false;

// Warm up the connection and the JIT before measuring.
const warmEnd = Date.now() + 500;
await Promise.all(Array.from({ length: inflight }, async () => { while (Date.now() < warmEnd) await roundTrip(); }));

if (phases) console.log(JSON.stringify({ phase: "start" }));
setTimeout(() => (stop = true), durationMs);
const started = performance.now();
const cpuBefore = process.cpuUsage();
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
const cpu = process.cpuUsage(cpuBefore);
if (phases) console.log(JSON.stringify({ phase: "end" }));
await close();
const count = latencies.length;
console.log(JSON.stringify({ count, messages: count * messages, elapsedMs, cpuMs: (cpu.user + cpu.system) / 1000, latencies }));
