// The protobuf-es ceiling: a grpc-js server speaking RateQueueService with
// protobuf-es messages, encoded and decoded by protobuf-es itself (toBinary,
// fromBinary), answering every message at once with a canned reply, with no
// engine behind it. Against the raw echo (raw-echo-server.js) it shows what
// protobuf-es costs; against the real server, what ratequeue's own work costs.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { grpcServiceDefinition, RateQueueService } from "@ratequeue/proto";
import { answer, granted, heartbeat, released } from "./echo-answers.js";

// The contract's paths and kinds, with protobuf-es's own codec (not the fast path of @ratequeue/proto).
const paths = grpcServiceDefinition(RateQueueService);
const definition = {};
for (const m of RateQueueService.methods) {
  definition[m.localName] = {
    ...paths[m.localName],
    requestSerialize: (v) => Buffer.from(toBinary(m.input, v)),
    requestDeserialize: (b) => fromBinary(m.input, b),
    responseSerialize: (v) => Buffer.from(toBinary(m.output, v)),
    responseDeserialize: (b) => fromBinary(m.output, b),
  };
}

const server = new Server();
server.addService(definition, {
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
