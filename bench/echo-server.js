// The transport's ceiling: a grpc-js server speaking RateQueueService with
// protobuf-es messages, exactly like the real server, but answering every
// message at once with a canned reply, with no engine behind it. The
// difference between this and the real server is ratequeue's own cost.
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { grpcServiceDefinition, RateQueueService } from "@ratequeue/proto";
import { answer, granted, heartbeat, released } from "./echo-answers.js";

const server = new Server();
server.addService(grpcServiceDefinition(RateQueueService), {
  acquire: (_call, cb) => cb(null, granted()),
  release: (_call, cb) => cb(null, released()),
  heartbeat: (_call, cb) => cb(null, heartbeat()),
  session: (call) => {
    call.on("data", (req) => call.write(answer(req)));
    call.on("end", () => call.end());
  },
});
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ msg: "listening", port }));
});
process.on("SIGTERM", () => server.forceShutdown());
