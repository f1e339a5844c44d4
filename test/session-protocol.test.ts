// The Session stream's wire behaviour, driven by a raw grpc-js stream so
// that nothing in our client smooths it over.
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { createAdminClient } from "@ratequeue/client";
import {
  AcquireRequestSchema,
  grpcServiceDefinition,
  RateQueueService,
  ReleaseRequestSchema,
  SessionRequestSchema,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({ config: { resources: { one: { concurrency: 1 } } } });
});
afterAll(async () => {
  await server.stop();
});

const method = grpcServiceDefinition(RateQueueService).session;

function openStream(port: number) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const stream = client.makeBidiStreamRequest<SessionRequest, SessionResponse>(
    method.path,
    method.requestSerialize,
    method.responseDeserialize,
    new grpc.Metadata(),
    {},
  );
  const received: SessionResponse[] = [];
  const waiters: (() => void)[] = [];
  stream.on("data", (r: SessionResponse) => {
    received.push(r);
    waiters.splice(0).forEach((w) => w());
  });
  let ended: grpc.ServiceError | "end" | undefined;
  stream.on("error", (e: grpc.ServiceError) => (ended = e));
  stream.on("end", () => (ended ??= "end"));
  const send = (requestId: number, kind: SessionRequest["kind"]) =>
    stream.write(create(SessionRequestSchema, { requestId: BigInt(requestId), kind }));
  const next = async (n = received.length + 1) => {
    while (received.length < n) await new Promise<void>((r) => waiters.push(r));
    return received[n - 1]!;
  };
  return { client, stream, send, next, received, ended: () => ended };
}

const acquire = (resource: string, timeoutMs?: number) =>
  ({ case: "acquire", value: create(AcquireRequestSchema, { resource, timeout: timeoutMs === undefined ? undefined : durationFromMs(timeoutMs) }) }) as const;

test("answers carry the request id; bad ids fail alone; cancel withdraws a waiter", async () => {
  const s = openStream(server.port);
  s.send(0, acquire("one"));
  const zero = await s.next(1);
  expect(zero.kind.case).toBe("failure");
  expect(zero.kind.case === "failure" && zero.kind.value.message).toMatch(/^request_id/);

  s.send(7, acquire("one"));
  const granted = await s.next(2);
  expect(granted.requestId).toBe(7n);
  expect(granted.kind.case).toBe("granted");
  const leaseId = granted.kind.case === "granted" ? granted.kind.value.lease!.leaseId : "";

  s.send(8, acquire("one")); // waits: concurrency 1
  s.send(8, acquire("one")); // the same id while it waits: refused
  const dup = await s.next(3);
  expect(dup.requestId).toBe(8n);
  expect(dup.kind.case === "failure" && dup.kind.value.code).toBe(grpc.status.INVALID_ARGUMENT);

  s.send(9, { case: "cancel", value: { $typeName: "ratequeue.v1.SessionCancel", acquireRequestId: 8n } });
  const cancelled = await s.next(4);
  expect(cancelled.requestId).toBe(8n);
  expect(cancelled.kind.case === "failure" && cancelled.kind.value.code).toBe(grpc.status.CANCELLED);
  // Cancelling or releasing unknown things is harmless.
  s.send(10, { case: "cancel", value: { $typeName: "ratequeue.v1.SessionCancel", acquireRequestId: 12345n } });
  s.send(11, { case: "release", value: create(ReleaseRequestSchema, { leaseId: "no-such-lease" }) });
  const unknown = await s.next(5);
  expect(unknown.requestId).toBe(11n);
  expect(unknown.kind.case === "released" && unknown.kind.value.message).toMatch(/no such lease/);

  s.send(12, { case: "release", value: create(ReleaseRequestSchema, { leaseId }) });
  expect((await s.next(6)).kind.case).toBe("released");
  s.stream.end();
  s.client.close();
});

test("closing the stream withdraws its waiting acquires at once; its leases stay until released", async () => {
  const admin = createAdminClient({ url: server.url });
  const a = openStream(server.port);
  a.send(1, acquire("one"));
  await a.next(1);
  const b = openStream(server.port);
  b.send(1, acquire("one"));
  b.send(2, acquire("one"));
  await expect.poll(async () => (await admin.getResourceStats("one")).lanes[0]!.queueDepth).toBe(2);
  b.stream.cancel();
  await expect.poll(async () => (await admin.getResourceStats("one")).lanes[0]!.queueDepth).toBe(0);
  a.stream.end();
  await new Promise((r) => setTimeout(r, 200));
  // A's lease outlives its stream (until its TTL): a reconnecting worker can keep it.
  expect((await admin.getResourceStats("one")).leasesInFlight).toBe(1);
  a.client.close();
  b.client.close();
  admin.close();
});

test("SIGTERM: waiters are answered UNAVAILABLE and the server exits cleanly", async () => {
  const own = await startServerProcess({ config: { resources: { one: { concurrency: 1 } } } });
  const s = openStream(own.port);
  s.send(1, acquire("one"));
  await s.next(1);
  s.send(2, acquire("one"));
  await new Promise((r) => setTimeout(r, 200));
  const exit = own.stop("SIGTERM");
  const answer = await s.next(2);
  expect(answer.kind.case === "failure" && answer.kind.value.code).toBe(grpc.status.UNAVAILABLE);
  expect(await exit).toBe(0);
  await expect.poll(() => s.ended()).toBeDefined();
  s.client.close();
});
