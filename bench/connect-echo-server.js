// The echo server of bench/echo-server.js on connect-node instead of
// grpc-js: the same service, messages and canned answers, served over
// HTTP/2 with the gRPC protocol. It measures the other candidate library.
import http2 from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { RateQueueService } from "@ratequeue/proto";
import { answer, granted, heartbeat, released } from "./echo-answers.js";

const handler = connectNodeAdapter({
  routes: (router) =>
    router.service(RateQueueService, {
      acquire: () => granted(),
      release: () => released(),
      heartbeat: () => heartbeat(),
      async *session(requests) {
        for await (const req of requests) yield answer(req);
      },
    }),
});
const server = http2.createServer(handler).listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ msg: "listening", port: server.address().port }));
});
process.on("SIGTERM", () => process.exit(0));
