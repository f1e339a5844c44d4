// A plain @grpc/grpc-js client built only from the .proto files (no
// generated code of ours) acquires and releases: the contract is the proto.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, expect, test } from "vitest";
import { repoRoot, startServerProcess, type ServerProcess } from "./support/server-process.js";

let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({ config: { resources: { plain: { concurrency: 2 } } } });
});
afterAll(async () => {
  await server.stop();
});

test("a client made from the .proto alone acquires, heartbeats and releases", async () => {
  const definition = protoLoader.loadSync(join(repoRoot, "proto/ratequeue/v1/ratequeue.proto"), {
    includeDirs: [join(repoRoot, "proto")],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const client = new pkg.ratequeue.v1.RateQueueService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const call = <T>(method: string, request: object) =>
    new Promise<T>((resolve, reject) => client[method](request, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));

  const granted = await call<any>("Acquire", { resource: "plain", load: 3, priority: 50 });
  expect(granted.lease.resource).toBe("plain");
  expect(granted.lease.load).toBe(3);
  const beat = await call<any>("Heartbeat", { leaseIds: [granted.lease.leaseId, "nope"] });
  expect(beat.leases.map((l: any) => l.held)).toEqual([true, false]);
  const released = await call<any>("Release", { leaseId: granted.lease.leaseId });
  expect(released.outcome).toBe("RELEASE_OUTCOME_RELEASED");
  const again = await call<any>("Release", { leaseId: granted.lease.leaseId });
  expect(again.outcome).toBe("RELEASE_OUTCOME_ALREADY_RELEASED");

  // A unary Acquire honours the call's deadline.
  const held = [await call<any>("Acquire", { resource: "plain" }), await call<any>("Acquire", { resource: "plain" })];
  const err = await new Promise<grpc.ServiceError>((resolve) =>
    client.Acquire({ resource: "plain" }, { deadline: Date.now() + 300 }, (e: grpc.ServiceError) => resolve(e)),
  );
  expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  for (const h of held) await call("Release", { leaseId: h.lease.leaseId });
  client.close();
});

test("the standard gRPC health service reports SERVING", async () => {
  const definition = protoLoader.loadSync(join(repoRoot, "node_modules/grpc-health-check/proto/health/v1/health.proto"), { enums: String });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const res = await new Promise<any>((resolve, reject) => health.Check({ service: "" }, (e: Error | null, r: any) => (e ? reject(e) : resolve(r))));
  expect(res.status).toBe("SERVING");
  health.close();
});
