// The Session stream's wire behaviour, driven by a raw grpc-js stream so
// that nothing in our client smooths it over.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { createAdminClient } from "@ratequeue/client";
import {
  AcquireRequestSchema,
  ReleaseRequestSchema,
  SessionCancelSchema,
  SessionRequestBatchSchema,
  SessionRequestSchema,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { RawClient } from "./support/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({ config: { resources: { one: { concurrency: 1 }, solo: { concurrency: 1 }, open: {} } } });
});
afterAll(async () => {
  await server.stop();
});

function openStream(port: number) {
  const client = new RawClient(`127.0.0.1:${port}`);
  const session = client.session();
  const send = (requestId: number, kind: SessionRequest["kind"]) => session.send({ requestId: BigInt(requestId), kind });
  return { client, session, send };
}

const acquire = (resource: string, timeoutMs?: number) =>
  ({ case: "acquire", value: create(AcquireRequestSchema, { resource, timeout: timeoutMs === undefined ? undefined : durationFromMs(timeoutMs) }) }) as const;

test("answers carry the request id; bad ids fail alone; cancel withdraws a waiter", async () => {
  const s = openStream(server.port);
  s.send(0, acquire("one"));
  const zero = await s.session.nth(1);
  expect(zero.kind.case).toBe("failure");
  expect(zero.kind.case === "failure" && zero.kind.value.message).toMatch(/^request_id/);

  s.send(7, acquire("one"));
  const granted = await s.session.nth(2);
  expect(granted.requestId).toBe(7n);
  expect(granted.kind.case).toBe("granted");
  const leaseId = granted.kind.case === "granted" ? granted.kind.value.lease!.leaseId : "";

  s.send(8, acquire("one")); // waits: concurrency 1
  s.send(8, acquire("one")); // the same id while it waits: refused
  const dup = await s.session.nth(3);
  expect(dup.requestId).toBe(8n);
  expect(dup.kind.case === "failure" && dup.kind.value.code).toBe(grpc.status.INVALID_ARGUMENT);

  s.send(9, { case: "cancel", value: create(SessionCancelSchema, { acquireRequestId: 8n }) });
  const cancelled = await s.session.nth(4);
  expect(cancelled.requestId).toBe(8n);
  expect(cancelled.kind.case === "failure" && cancelled.kind.value.code).toBe(grpc.status.CANCELLED);
  // Cancelling or releasing unknown things is harmless.
  s.send(10, { case: "cancel", value: create(SessionCancelSchema, { acquireRequestId: 12345n }) });
  s.send(11, { case: "release", value: create(ReleaseRequestSchema, { leaseId: "no-such-lease" }) });
  const unknown = await s.session.nth(5);
  expect(unknown.requestId).toBe(11n);
  expect(unknown.kind.case === "released" && unknown.kind.value.message).toMatch(/no such lease/);

  s.send(12, { case: "release", value: create(ReleaseRequestSchema, { leaseId }) });
  expect((await s.session.nth(6)).kind.case).toBe("released");
  s.session.end();
  expect((await s.session.ended()).code).toBe(grpc.status.OK);
  s.client.close();
});

test("closing the stream withdraws its waiting acquires at once; its leases stay until released", async () => {
  const admin = createAdminClient({ url: server.url });
  const a = openStream(server.port);
  a.send(1, acquire("one"));
  await a.session.nth(1);
  const b = openStream(server.port);
  b.send(1, acquire("one"));
  b.send(2, acquire("one"));
  await expect.poll(async () => (await admin.getResourceStats("one")).lanes[0]!.queueDepth).toBe(2);
  b.session.stream.cancel();
  await expect.poll(async () => (await admin.getResourceStats("one")).lanes[0]!.queueDepth).toBe(0);
  a.session.end();
  // The server has closed A's stream (it answers the end with OK)...
  expect((await a.session.ended()).code).toBe(grpc.status.OK);
  // ...and A's lease outlives it (until its TTL): a reconnecting worker can keep it.
  expect((await admin.getResourceStats("one")).leasesInFlight).toBe(1);
  a.client.close();
  b.client.close();
  admin.close();
});

test("SIGTERM: waiters are answered UNAVAILABLE and the server exits cleanly", async () => {
  const own = await startServerProcess({ config: { resources: { one: { concurrency: 1 } } } });
  const s = openStream(own.port);
  s.send(1, acquire("one"));
  await s.session.nth(1);
  s.send(2, acquire("one"));
  const admin = createAdminClient({ url: own.url });
  await expect.poll(async () => (await admin.getResourceStats("one")).lanes[0]!.queueDepth).toBe(1);
  admin.close();
  const exit = own.stop("SIGTERM");
  const answer = await s.session.nth(2);
  expect(answer.kind.case === "failure" && answer.kind.value.code).toBe(grpc.status.UNAVAILABLE);
  // The server ends the stream itself, with UNAVAILABLE, so the client retries elsewhere.
  expect((await s.session.ended()).code).toBe(grpc.status.UNAVAILABLE);
  expect(await exit).toBe(0);
  s.client.close();
});

describe("batches", () => {
  const batch = (requests: MessageInitShape<typeof SessionRequestSchema>[]) =>
    ({ case: "batch", value: create(SessionRequestBatchSchema, { requests: requests.map((r) => create(SessionRequestSchema, r)) }) }) as const;
  const answers = (r: SessionResponse) => (r.kind.case === "batch" ? r.kind.value.responses : [r]);

  test("a batch is handled in order, as if each message came alone; its answers come back batched, grants and failures mixed", async () => {
    const s = openStream(server.port);
    s.send(0, batch([
      { requestId: 1n, kind: acquire("solo") },
      { requestId: 2n, kind: acquire("missing") },
      { requestId: 3n, kind: acquire("solo", 0) }, // one slot, taken by 1: no wait allowed
      { requestId: 0n, kind: acquire("solo") }, // a bad id fails alone
      { requestId: 4n, kind: { case: "release", value: create(ReleaseRequestSchema, { leaseId: "no-such-lease" }) } },
    ]));
    const first = await s.session.nth(1);
    expect(first.requestId).toBe(0n);
    expect(first.kind.case).toBe("batch");
    const got = answers(first).map((r) => [r.requestId, r.kind.case, r.kind.case === "failure" ? grpc.status[r.kind.value.code] : undefined]);
    expect(got).toEqual([
      [1n, "granted", undefined],
      [2n, "failure", "NOT_FOUND"],
      [3n, "failure", "DEADLINE_EXCEEDED"],
      [0n, "failure", "INVALID_ARGUMENT"],
      [4n, "released", undefined],
    ]);
    // Once the client batches, a lone answer still goes alone.
    const granted = answers(first)[0]!;
    const leaseId = granted.kind.case === "granted" ? granted.kind.value.lease!.leaseId : "";
    s.send(5, { case: "release", value: create(ReleaseRequestSchema, { leaseId }) });
    const released = await s.session.nth(2);
    expect([released.requestId, released.kind.case]).toEqual([5n, "released"]);
    s.session.end();
    expect((await s.session.ended()).code).toBe(grpc.status.OK);
    s.client.close();
  });

  test("1000 acquires in one batch are all granted, in one or a few batches of answers", async () => {
    const s = openStream(server.port);
    s.send(0, batch(Array.from({ length: 1000 }, (_, i) => ({ requestId: BigInt(i + 1), kind: acquire("open") }))));
    const got: SessionResponse[] = [];
    for (let n = 1; got.length < 1000; n++) {
      const message = answers(await s.session.nth(n));
      expect(message.length).toBeLessThanOrEqual(1000);
      got.push(...message);
    }
    expect(got.map((r) => r.requestId)).toEqual(Array.from({ length: 1000 }, (_, i) => BigInt(i + 1)));
    expect(got.every((r) => r.kind.case === "granted")).toBe(true);
    expect(new Set(got.map((r) => (r.kind.case === "granted" ? r.kind.value.lease!.leaseId : ""))).size).toBe(1000);
    s.session.end();
    s.client.close();
  });

  test.each([
    ["more than 1000 messages", () => batch(Array.from({ length: 1001 }, (_, i) => ({ requestId: BigInt(i + 1), kind: acquire("open") }))), /at most 1000/],
    ["a batch inside", () => batch([{ requestId: 0n, kind: batch([{ requestId: 1n, kind: acquire("open") }]) }]), /must not hold a batch/],
  ])("a batch with %s ends the stream INVALID_ARGUMENT, and nothing in it is done", async (_what, make, message) => {
    const admin = createAdminClient({ url: server.url });
    const before = (await admin.getResourceStats("open")).leasesInFlight;
    const s = openStream(server.port);
    s.send(0, make());
    const end = await s.session.ended();
    expect(end.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(end.message).toMatch(message);
    expect(s.session.responses).toEqual([]);
    expect((await admin.getResourceStats("open")).leasesInFlight).toBe(before);
    s.client.close();
    admin.close();
  });

  test("a batch's own request id must be 0", async () => {
    const s = openStream(server.port);
    s.send(9, batch([{ requestId: 1n, kind: acquire("open") }]));
    const end = await s.session.ended();
    expect(end.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(end.message).toMatch(/request_id: must be 0 on a batch/);
    s.client.close();
  });
});
