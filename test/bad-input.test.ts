// Table-driven bad input: every field of every RPC outside its documented
// range fails with INVALID_ARGUMENT and a message that names the field, on
// unary calls and on the Session stream alike, before it reaches the engine.
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import {
  AcquireRequestSchema,
  DeleteResourceRequestSchema,
  Dimension,
  GetResourceRequestSchema,
  GetResourceStatsRequestSchema,
  HeartbeatRequestSchema,
  PutResourceRequestSchema,
  ReleaseRequestSchema,
  type AcquireRequest,
  type Resource,
} from "@ratequeue/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { adminMethods, RawClient, rqMethods } from "./support/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

let server: ServerProcess;
let raw: RawClient;

beforeAll(async () => {
  server = await startServerProcess({
    config: { resources: { r: { concurrency: 5, lanes: { a: 1, b: 2 }, limits: [{ dimension: "load", amount: 100, period: "1s" }] } } },
  });
  raw = new RawClient(`127.0.0.1:${server.port}`);
});
afterAll(async () => {
  raw.close();
  await server.stop();
});

const long = (n: number) => "x".repeat(n);
const dur = (seconds: bigint, nanos: number) => ({ $typeName: "google.protobuf.Duration" as const, seconds, nanos });

// [field, acquire overrides]
const acquireCases: [string, Partial<AcquireRequest>][] = [
  ["resource", { resource: "" }],
  ["resource", { resource: long(129) }],
  ["resource", { resource: "-starts-with-dash" }],
  ["resource", { resource: "has space" }],
  ["resource", { resource: "ns@r" }],
  ["resource", { resource: "é" }],
  ["load", { load: -1 }],
  ["load", { load: Number.NaN }],
  ["load", { load: Number.POSITIVE_INFINITY }],
  ["load", { load: 1e13 }],
  ["load", { load: 101 }], // larger than the resource's burst: can never be granted
  ["priority", { priority: 1_000_001 }],
  ["priority", { priority: -1_000_001 }],
  ["lane", { lane: "c" }], // not a lane of the resource
  ["lane", { lane: "bad lane" }],
  ["lane", { lane: long(65) }],
  ["timeout", { timeout: durationFromMs(-5) }],
  ["timeout", { timeout: durationFromMs(25 * 3600_000) }],
  ["timeout", { timeout: dur(1n, -5) }],
  ["timeout", { timeout: dur(0n, 2_000_000_000) }],
];

function acquire(overrides: Partial<AcquireRequest>): AcquireRequest {
  return { ...create(AcquireRequestSchema, { resource: "r", timeout: durationFromMs(0) }), ...overrides };
}

function expectNamed(outcome: { code: number; message: string }, field: string): void {
  expect(outcome.code, outcome.message).toBe(status.INVALID_ARGUMENT);
  expect(outcome.message.startsWith(field), `'${outcome.message}' should name ${field}`).toBe(true);
}

describe("Acquire (unary)", () => {
  test.each(acquireCases)("%s (case %#)", async (field, overrides) => {
    const out = await raw.call(rqMethods.acquire, acquire(overrides));
    expect(out.ok).toBe(false);
    if (!out.ok) expectNamed(out, field);
  });
});

describe("Session stream", () => {
  test("every bad acquire field fails its own request; the stream stays open", async () => {
    const s = raw.session();
    let id = 1n;
    for (const [field, overrides] of acquireCases) {
      const requestId = id++;
      s.send({ requestId, kind: { case: "acquire", value: acquire(overrides) } });
      const answer = await s.answer(requestId);
      expect(answer.kind.case).toBe("failure");
      if (answer.kind.case === "failure") expectNamed(answer.kind.value, field);
    }
    const cases: [string, Parameters<typeof s.send>[0]][] = [
      ["request_id", { requestId: 0n, kind: { case: "heartbeat", value: create(HeartbeatRequestSchema, { leaseIds: ["a"] }) } }],
      ["kind", { requestId: id++, kind: { case: undefined } }],
      ["lease_id", { requestId: id++, kind: { case: "release", value: create(ReleaseRequestSchema, { leaseId: "" }) } }],
      ["actual_load", { requestId: id++, kind: { case: "release", value: create(ReleaseRequestSchema, { leaseId: "x", actualLoad: -3 }) } }],
      ["lease_ids[0]", { requestId: id++, kind: { case: "heartbeat", value: create(HeartbeatRequestSchema, { leaseIds: ["bad id"] }) } }],
      ["acquire_request_id", { requestId: id++, kind: { case: "cancel", value: { $typeName: "ratequeue.v1.SessionCancel", acquireRequestId: 0n } } }],
    ];
    for (const [field, message] of cases) {
      s.send(message);
      const answer = await s.answer(message.requestId as bigint);
      expect(answer.kind.case, field).toBe("failure");
      if (answer.kind.case === "failure") expectNamed(answer.kind.value, field);
    }
    // A request id already waiting on the session is refused.
    const held = [] as bigint[];
    for (let i = 0; i < 5; i++) {
      const requestId = id++;
      s.send({ requestId, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "r" }) } });
      expect((await s.answer(requestId)).kind.case).toBe("granted");
      held.push(requestId);
    }
    const waiting = id++;
    s.send({ requestId: waiting, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "r" }) } });
    s.send({ requestId: waiting, kind: { case: "acquire", value: create(AcquireRequestSchema, { resource: "r" }) } });
    const dup = await s.answer(waiting);
    expect(dup.kind.case).toBe("failure");
    if (dup.kind.case === "failure") expectNamed(dup.kind.value, "request_id");
    expect(s.status).toBeUndefined();
    s.end();
    await s.ended();
  });
});

test.each<[string, object]>([
  ["lease_id", { leaseId: "" }],
  ["lease_id", { leaseId: long(129) }],
  ["lease_id", { leaseId: "a\nb" }],
  ["actual_load", { leaseId: "x", actualLoad: Number.NaN }],
  ["actual_load", { leaseId: "x", actualLoad: 2e12 }],
])("Release %s (case %#)", async (field, init) => {
  const out = await raw.call(rqMethods.release, create(ReleaseRequestSchema, init));
  expect(out.ok).toBe(false);
  if (!out.ok) expectNamed(out, field);
});

test.each<[string, string[]]>([
  ["lease_ids", Array.from({ length: 1001 }, (_, i) => `l${i}`)],
  ["lease_ids[1]", ["ok", ""]],
  ["lease_ids[0]", [long(200)]],
])("Heartbeat %s", async (field, leaseIds) => {
  const out = await raw.call(rqMethods.heartbeat, create(HeartbeatRequestSchema, { leaseIds }));
  expect(out.ok).toBe(false);
  if (!out.ok) expectNamed(out, field);
});

const limit = { dimension: Dimension.REQUESTS, amount: 10, period: durationFromMs(1000), burst: 0 };
const base = { name: "ok", limits: [limit] };
const resourceCases: [string, Record<string, unknown>][] = [
  ["resource.name", { name: "" }],
  ["resource.name", { name: long(129) }],
  ["resource.name", { name: "a b" }],
  ["resource.limits", { limits: Array.from({ length: 17 }, () => limit) }],
  ["resource.limits[0].dimension", { limits: [{ ...limit, dimension: Dimension.UNSPECIFIED }] }],
  ["resource.limits[0].amount", { limits: [{ ...limit, amount: 0 }] }],
  ["resource.limits[0].amount", { limits: [{ ...limit, amount: -1 }] }],
  ["resource.limits[0].amount", { limits: [{ ...limit, amount: Number.NaN }] }],
  ["resource.limits[0].amount", { limits: [{ ...limit, amount: 1e13 }] }],
  ["resource.limits[0].period", { limits: [{ ...limit, period: undefined }] }],
  ["resource.limits[0].period", { limits: [{ ...limit, period: durationFromMs(0) }] }],
  ["resource.limits[0].period", { limits: [{ ...limit, period: durationFromMs(-1000) }] }],
  ["resource.limits[0].period", { limits: [{ ...limit, period: durationFromMs(400 * 24 * 3600_000) }] }],
  ["resource.limits[0].burst", { limits: [{ ...limit, burst: 0.5 }] }],
  ["resource.limits[0].burst", { limits: [{ ...limit, burst: -2 }] }],
  ["resource.limits[0].burst", { limits: [{ ...limit, burst: Number.POSITIVE_INFINITY }] }],
  ["resource.concurrency", { concurrency: 2_000_000 }],
  ["resource.lanes", { lanes: Array.from({ length: 33 }, (_, i) => ({ name: `l${i}`, weight: 1 })) }],
  ["resource.lanes", { lanes: [{ name: "a", weight: 1 }, { name: "a", weight: 2 }] }],
  ["resource.lanes[0].name", { lanes: [{ name: "", weight: 1 }] }],
  ["resource.lanes[0].name", { lanes: [{ name: long(65), weight: 1 }] }],
  ["resource.lanes[0].weight", { lanes: [{ name: "a", weight: 1001 }] }],
  ["resource.default_lane", { lanes: [{ name: "a", weight: 1 }], defaultLane: "b" }],
  ["resource.lease_ttl", { leaseTtl: durationFromMs(50) }],
  ["resource.lease_ttl", { leaseTtl: durationFromMs(25 * 3600_000) }],
  ["resource.max_queue", { maxQueue: 1_000_001 }],
];

describe("PutResource", () => {
  test.each(resourceCases)("%s (case %#)", async (field, overrides) => {
    const out = await raw.call(adminMethods.putResource, create(PutResourceRequestSchema, { resource: { ...base, ...overrides } as Resource }));
    expect(out.ok).toBe(false);
    if (!out.ok) expectNamed(out, field);
  });

  test("a missing resource, and names on Get/Delete/Stats", async () => {
    const missing = await raw.call(adminMethods.putResource, create(PutResourceRequestSchema, {}));
    expect(missing.ok).toBe(false);
    if (!missing.ok) expectNamed(missing, "resource");
    const requests = [
      [adminMethods.getResource, create(GetResourceRequestSchema, { name: "bad name" })],
      [adminMethods.deleteResource, create(DeleteResourceRequestSchema, { name: "bad name" })],
      [adminMethods.getResourceStats, create(GetResourceStatsRequestSchema, { name: "bad name" })],
    ] as const;
    for (const [m, request] of requests) {
      const out = await raw.call(m, request);
      expect(out.ok).toBe(false);
      if (!out.ok) expectNamed(out, "name");
    }
  });

  test("a valid definition at the edges of every range is accepted", async () => {
    const edge = {
      name: long(128),
      limits: Array.from({ length: 16 }, () => ({ ...limit, amount: 1e12, burst: 1e12, period: durationFromMs(366 * 24 * 3600_000) })),
      concurrency: 1_000_000,
      lanes: Array.from({ length: 32 }, (_, i) => ({ name: `${long(62)}${String(i).padStart(2, "0")}`, weight: 1000 })),
      leaseTtl: durationFromMs(100),
      maxQueue: 1_000_000,
    };
    const out = await raw.call(adminMethods.putResource, create(PutResourceRequestSchema, { resource: edge as never }));
    expect(out.ok, out.ok ? "" : out.message).toBe(true);
    await raw.call(adminMethods.deleteResource, create(DeleteResourceRequestSchema, { name: long(128) }));
  });
});

test("a message over the size limit: RESOURCE_EXHAUSTED", async () => {
  const out = await raw.call(rqMethods.heartbeat, create(HeartbeatRequestSchema, { leaseIds: Array.from({ length: 1000 }, () => long(1100)) }));
  expect(out.ok).toBe(false);
  if (!out.ok) expect(out.code).toBe(status.RESOURCE_EXHAUSTED);
});
