// What one turn of the event loop sends: the client coalesces it into
// SessionRequestBatches (a lone message goes alone) and dispatches the
// server's batched answers to the right callers. Against a real server, and
// against a recording grpc-js server that shows what is on the wire.
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";
import {
  AcquireResponseSchema,
  encodeSessionRequest,
  FailureSchema,
  grpcServiceDefinition,
  LeaseExpiredSchema,
  LeaseSchema,
  maxBatchBytes,
  RateQueueService,
  ReleaseOutcome,
  ReleaseResponseSchema,
  SessionResponseBatchSchema,
  SessionResponseSchema,
  type SessionRequest,
  type SessionResponse,
} from "@ratequeue/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startServerProcess, type ServerProcess } from "../../../test/support/server-process.js";
import { createClient, type Lease } from "./client.js";
import { RateQueueError } from "./errors.js";

describe("against a real server", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServerProcess({
      config: {
        resources: {
          open: {},
          solo: { concurrency: 1 },
          keyed: { per_key: { concurrency: 1 } },
        },
      },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test.each([1000, 2500])("%i acquires issued in one turn are all granted, and released in one turn", async (n) => {
    const client = createClient({ url: server.url });
    const leases = await Promise.all(Array.from({ length: n }, () => client.acquire("open")));
    expect(new Set(leases.map((l) => l.id)).size).toBe(n);
    expect(leases.every((l) => l.resource === "open" && l.load === 1)).toBe(true);
    const outcomes = await Promise.all(leases.map((l) => l.release()));
    expect(outcomes.every((o) => o === "released")).toBe(true);
    await client.close();
  });

  test("grants and failures decided in one turn reach the right callers", async () => {
    const client = createClient({ url: server.url });
    const outcome = (p: Promise<Lease>) =>
      p.then(
        (lease) => lease,
        (err: unknown) => (err instanceof RateQueueError ? err.code : err),
      );
    const [held, missing, full, badKey, alice, bob, aliceAgain] = await Promise.all([
      outcome(client.acquire("solo")),
      outcome(client.acquire("nowhere")),
      outcome(client.acquire("solo", { timeoutMs: 0 })),
      outcome(client.acquire("keyed", { key: "not a key" })),
      outcome(client.acquire("keyed", { key: "alice" })),
      outcome(client.acquire("keyed", { key: "bob" })),
      outcome(client.acquire("keyed", { key: "alice", timeoutMs: 0 })),
    ]);
    expect([missing, full, badKey, aliceAgain]).toEqual(["NOT_FOUND", "DEADLINE_EXCEEDED", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED"]);
    expect((held as Lease).resource).toBe("solo");
    expect((alice as Lease).resource).toBe("keyed/alice");
    expect((bob as Lease).resource).toBe("keyed/bob");
    const [paused, ...released] = await Promise.all([
      client.report("open", {}),
      (held as Lease).release(),
      (alice as Lease).release(),
      (bob as Lease).release(),
      (held as Lease).release(),
    ]);
    expect(paused).toBeUndefined();
    expect(released).toEqual(["released", "released", "released", "released"]);
    await client.close();
  });
});

test("acquire and release reject, never throw, what they cannot send", async () => {
  const client = createClient({ url: "127.0.0.1:1" });
  const aborted = AbortSignal.abort(new RateQueueError("CANCELLED", "gave up"));
  const calls = [
    () => client.acquire("r", { timeoutMs: 1e300 }),
    () => client.acquire("r", { timeoutMs: -1 }),
    () => client.acquire("r", { signal: aborted }),
  ];
  for (const call of calls) {
    let promise: Promise<unknown> | undefined;
    expect(() => (promise = call())).not.toThrow();
    await expect(promise).rejects.toBeInstanceOf(Error);
  }
  await client.close();
  await expect(client.acquire("r")).rejects.toMatchObject({ code: "CANCELLED" });
});

describe("on the wire", () => {
  /** Every message the recording server received, and a way to answer. */
  let received: SessionRequest[];
  let call: ServerDuplexStream<SessionRequest, SessionResponse> | undefined;
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = new Server();
    server.addService(grpcServiceDefinition(RateQueueService), {
      session: (c: ServerDuplexStream<SessionRequest, SessionResponse>) => {
        call = c;
        c.on("data", (r: SessionRequest) => {
          received.push(r);
          // Releases and heartbeats are answered at once: every lease is held until released.
          const responses = (r.kind.case === "batch" ? r.kind.value.requests : [r]).flatMap((q) =>
            q.kind.case === "release"
              ? [create(SessionResponseSchema, { requestId: q.requestId, kind: { case: "released", value: create(ReleaseResponseSchema, { outcome: ReleaseOutcome.RELEASED }) } })]
              : q.kind.case === "heartbeat"
                ? [
                    create(SessionResponseSchema, {
                      requestId: q.requestId,
                      kind: { case: "heartbeat", value: { leases: q.kind.value.leaseIds.map((leaseId) => ({ leaseId, held: true })) } },
                    }),
                  ]
                : [],
          );
          if (responses.length > 0) c.write(create(SessionResponseSchema, { kind: { case: "batch", value: create(SessionResponseBatchSchema, { responses }) } }));
        });
        c.on("end", () => c.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    url = `127.0.0.1:${port}`;
  });
  afterAll(() => {
    server?.forceShutdown();
  });

  const until = async (ok: () => boolean) => {
    for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(ok()).toBe(true);
  };
  const granted = (requestId: bigint, leaseId: string, ttlMs?: number) =>
    create(SessionResponseSchema, {
      requestId,
      kind: {
        case: "granted",
        value: create(AcquireResponseSchema, {
          lease: create(LeaseSchema, { leaseId, resource: "r", load: 1, ttl: ttlMs === undefined ? undefined : durationFromMs(ttlMs) }),
        }),
      },
    });

  test("a lone message goes alone; what one turn sends goes in batches of at most 1000, in order; batched answers are dispatched", async () => {
    received = [];
    const client = createClient({ url });
    // Opening the stream sends the first acquire with the heartbeat that shows the stream works.
    const first = client.acquire("r");
    await until(() => received.length === 1);
    const opening = received[0]!;
    expect(opening.kind.case === "batch" && opening.kind.value.requests.map((r) => r.kind.case)).toEqual(["acquire", "heartbeat"]);
    call!.write(granted(opening.kind.case === "batch" ? opening.kind.value.requests[0]!.requestId : 0n, "lease-first"));
    await first;

    received = [];
    const lone = client.acquire("r");
    await until(() => received.length === 1);
    expect(received[0]!.kind.case).toBe("acquire");
    const loneId = received[0]!.requestId;
    call!.write(granted(loneId, "lease-lone"));
    expect((await lone).id).toBe("lease-lone");

    received = [];
    const many = Array.from({ length: 2500 }, () => client.acquire("r").catch((err: RateQueueError) => err));
    await until(() => received.length === 3);
    expect(received.map((r) => [r.requestId, r.kind.case === "batch" && r.kind.value.requests.length])).toEqual([
      [0n, 1000],
      [0n, 1000],
      [0n, 500],
    ]);
    const ids = received.flatMap((r) => (r.kind.case === "batch" ? r.kind.value.requests.map((q) => q.requestId) : []));
    expect(ids).toEqual(Array.from({ length: 2500 }, (_, i) => loneId + 1n + BigInt(i)));

    // One answer batch: grants and failures mixed, out of order, with a notice among them.
    const responses = ids.map((id, i) =>
      i % 2 === 0
        ? granted(id, `lease-${i}`, 600)
        : create(SessionResponseSchema, { requestId: id, kind: { case: "failure", value: create(FailureSchema, { code: 8, message: `full ${i}` }) } }),
    );
    responses.reverse();
    responses.splice(10, 0, create(SessionResponseSchema, { kind: { case: "leaseExpired", value: create(LeaseExpiredSchema, { leaseId: "lease-lone", resource: "r" }) } }));
    call!.write(create(SessionResponseSchema, { kind: { case: "batch", value: create(SessionResponseBatchSchema, { responses }) } }));
    const answers = await Promise.all(many);
    answers.forEach((a, i) => {
      if (i % 2 === 0) expect((a as Lease).id).toBe(`lease-${i}`);
      else expect([(a as RateQueueError).code, (a as RateQueueError).message]).toEqual(["RESOURCE_EXHAUSTED", `full ${i}`]);
    });
    expect((await lone).signal.aborted).toBe(true);

    // The heartbeats of the 1251 leases (every 200 ms) name 1000 ids at most, sent in one turn.
    received = [];
    await until(() => received.some((r) => r.kind.case === "heartbeat" || (r.kind.case === "batch" && r.kind.value.requests.some((q) => q.kind.case === "heartbeat"))));
    const heartbeats = received.flatMap((r) => (r.kind.case === "batch" ? r.kind.value.requests : [r])).filter((r) => r.kind.case === "heartbeat");
    expect(heartbeats.map((h) => (h.kind.case === "heartbeat" ? h.kind.value.leaseIds.length : 0)).slice(0, 2).sort((a, b) => a - b)).toEqual([251, 1000]);
    received = [];
    await client.close();
    // The 1251 held leases were released in one turn: two batches.
    expect(received.map((r) => r.kind.case === "batch" && r.kind.value.requests.length)).toEqual([1000, 251]);
  });

  test("a batch also stays under maxBatchBytes: large messages go in smaller batches, in order", async () => {
    received = [];
    const client = createClient({ url });
    const opened = client.acquire("r").catch(() => {});
    await until(() => received.length >= 1);
    received = [];
    // 300 acquires with names of 1000 characters (the server would refuse them; this one only records).
    const big = Array.from({ length: 300 }, (_, i) => client.acquire(`${i}:`.padEnd(1000, "x")).catch(() => {}));
    await until(() => received.reduce((n, r) => n + (r.kind.case === "batch" ? r.kind.value.requests.length : 1), 0) === 300);
    expect(received.length).toBeGreaterThan(1);
    for (const r of received) {
      expect(r.kind.case).toBe("batch");
      expect(encodeSessionRequest(r).length).toBeLessThanOrEqual(maxBatchBytes);
    }
    const names = received.flatMap((r) => (r.kind.case === "batch" ? r.kind.value.requests : [])).map((q) => (q.kind.case === "acquire" ? q.kind.value.resource : ""));
    expect(names.map((n) => Number(n.split(":")[0]))).toEqual(Array.from({ length: 300 }, (_, i) => i));
    await client.close();
    await Promise.all([opened, ...big]);
  });
});
