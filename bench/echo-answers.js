// The canned answers both echo servers give: what the real server would
// send, with no engine behind it.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AcquireResponseSchema,
  HeartbeatResponseSchema,
  LeaseSchema,
  ReleaseOutcome,
  ReleaseResponseSchema,
  SessionResponseBatchSchema,
  SessionResponseSchema,
} from "@ratequeue/proto";

let n = 0;
export const granted = () =>
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
export const released = () => create(ReleaseResponseSchema, { outcome: ReleaseOutcome.RELEASED, message: "released" });
export const heartbeat = () => create(HeartbeatResponseSchema, {});

/** The session answer to one request; a batch is answered by a batch, one answer per message. */
export function answer(req) {
  const kind =
    req.kind.case === "batch"
      ? { case: "batch", value: create(SessionResponseBatchSchema, { responses: req.kind.value.requests.map(answer) }) }
      : req.kind.case === "acquire"
        ? { case: "granted", value: granted() }
        : req.kind.case === "release"
          ? { case: "released", value: released() }
          : { case: "heartbeat", value: heartbeat() };
  return create(SessionResponseSchema, { requestId: req.requestId, kind });
}
