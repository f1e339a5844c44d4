// The transport's ceiling: a grpc-js server speaking RateQueueService with
// protobuf-es messages, exactly like the real server, but answering every
// message at once with a canned reply, with no engine behind it. The
// difference between this and the real server is ratequeue's own cost.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import {
  AcquireResponseSchema,
  grpcServiceDefinition,
  HeartbeatResponseSchema,
  LeaseSchema,
  RateQueueService,
  ReleaseOutcome,
  ReleaseResponseSchema,
  SessionResponseSchema,
} from "@ratequeue/client/proto";

let n = 0;
const granted = () =>
  create(AcquireResponseSchema, {
    lease: create(LeaseSchema, {
      leaseId: `echo-${++n}`,
      resource: "bench",
      load: 1,
      expireTime: timestampFromMs(Date.now() + 30_000),
      ttl: durationFromMs(30_000),
      grantTime: timestampFromMs(Date.now()),
    }),
    waitTime: durationFromMs(0),
  });
const released = () => create(ReleaseResponseSchema, { outcome: ReleaseOutcome.RELEASED, message: "released" });

const server = new Server();
server.addService(grpcServiceDefinition(RateQueueService), {
  acquire: (_call, cb) => cb(null, granted()),
  release: (_call, cb) => cb(null, released()),
  heartbeat: (_call, cb) => cb(null, create(HeartbeatResponseSchema, {})),
  session: (call) => {
    call.on("data", (req) => {
      const kind =
        req.kind.case === "acquire"
          ? { case: "granted", value: granted() }
          : req.kind.case === "release"
            ? { case: "released", value: released() }
            : { case: "heartbeat", value: create(HeartbeatResponseSchema, {}) };
      call.write(create(SessionResponseSchema, { requestId: req.requestId, kind }));
    });
    call.on("end", () => call.end());
  },
});
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ msg: "listening", port }));
});
process.on("SIGTERM", () => server.forceShutdown());
