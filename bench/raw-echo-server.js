// The bottom ceiling: a grpc-js bidi stream with identity serialization
// (Buffers in, Buffers out) that writes every message straight back. No
// protobuf, no service logic: what one grpc-js message costs on this
// machine, which the session path is measured against (bench/README.md).
import { Server, ServerCredentials } from "@grpc/grpc-js";

/** The one method, outside the ratequeue contract. */
export const rawEchoPath = "/bench.RawEcho/Echo";
const identity = (b) => b;

const server = new Server();
server.addService(
  {
    echo: {
      path: rawEchoPath,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  {
    echo: (call) => {
      call.on("data", (bytes) => call.write(bytes));
      call.on("end", () => call.end());
    },
  },
);
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ msg: "listening", port }));
});
process.on("SIGTERM", () => server.forceShutdown());
