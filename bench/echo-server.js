// The transport's ceiling: a grpc-js server speaking RateQueueService
// exactly like the real server (the contract's grpc-js definition, with the
// Session codec of @ratequeue/proto), answering every message at once with
// a canned reply, with no engine behind it: against the real server it
// shows what ratequeue's own work costs. With `--protobuf-es` every message
// is encoded and decoded by protobuf-es itself (toBinary, fromBinary): the
// ceiling of a stream that pays protobuf-es on both ends, beside the raw
// echo of Buffers (raw-echo-server.js).
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { grpcServiceDefinition, RateQueueService } from "@ratequeue/proto";
import { answer, granted, heartbeat, released } from "./echo-answers.js";

const contract = grpcServiceDefinition(RateQueueService);
let definition = contract;
if (process.argv.includes("--protobuf-es")) {
  definition = {};
  for (const m of RateQueueService.methods) {
    definition[m.localName] = {
      ...contract[m.localName],
      requestSerialize: (v) => Buffer.from(toBinary(m.input, v)),
      requestDeserialize: (b) => fromBinary(m.input, b),
      responseSerialize: (v) => Buffer.from(toBinary(m.output, v)),
      responseDeserialize: (b) => fromBinary(m.output, b),
    };
  }
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
