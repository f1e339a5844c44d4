// The session path's answers are message literals with shared time values
// (convert.ts): they must be what protobuf-es's create() and wkt helpers
// make, whatever the order of the grants.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AcquireResponseSchema, LeaseSchema, ReleaseOutcome, ReleaseResponseSchema } from "@ratequeue/proto";
import fc from "fast-check";
import { expect, test } from "vitest";
import { scopeOf } from "../auth/index.js";
import type * as core from "../core/index.js";
import { durationOf, grantToProto, releaseToProto } from "./convert.js";

/** What grantToProto made with create() before. */
function reference(grant: core.Grant, publicName: string) {
  const { lease } = grant;
  return create(AcquireResponseSchema, {
    lease: create(LeaseSchema, {
      leaseId: lease.id,
      resource: publicName,
      load: lease.load,
      expireTime: timestampFromMs(lease.expiresAt),
      ttl: durationFromMs(lease.ttlMs),
      grantTime: timestampFromMs(lease.grantedAt),
    }),
    waitTime: durationFromMs(grant.waitedMs),
  });
}

test("a grant's answer is the message create() makes, also when grants share or alternate their times", () => {
  const ms = fc.oneof(fc.integer({ min: 1_700_000_000_000, max: 1_700_000_000_005 }), fc.integer({ min: 0, max: 2 ** 47 }));
  const grant = fc.record({ id: fc.string(), load: fc.double(), grantedAt: ms, expiresAt: ms, ttlMs: fc.integer({ min: 0, max: 10 ** 9 }), waitedMs: fc.nat(100_000) });
  fc.assert(
    fc.property(fc.array(grant, { minLength: 1, maxLength: 8 }), fc.constantFrom("", "tenant-a"), (grants, namespace) => {
      const scope = namespace === "" ? undefined : scopeOf(namespace);
      for (const g of grants) {
        const engineName = scope === undefined ? "r" : scope.engineName("r");
        const coreGrant = { lease: { id: g.id, resource: engineName, load: g.load, grantedAt: g.grantedAt, expiresAt: g.expiresAt, ttlMs: g.ttlMs }, waitedMs: g.waitedMs } as core.Grant;
        expect(grantToProto(coreGrant, scope)).toStrictEqual(reference(coreGrant, "r"));
      }
    }),
    { numRuns: 2000 },
  );
});

test("durations are those of durationFromMs, negative and fractional ones included", () => {
  fc.assert(
    fc.property(fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.double({ min: -1e6, max: 1e6, noNaN: true })), (ms) => {
      expect(durationOf(ms)).toStrictEqual(durationFromMs(ms));
    }),
  );
});

test("release answers are create()'s, and shared answers cannot be changed", () => {
  expect(releaseToProto("released")).toStrictEqual(create(ReleaseResponseSchema, { outcome: ReleaseOutcome.RELEASED, message: "released" }));
  expect(releaseToProto("unknown").outcome).toBe(ReleaseOutcome.UNKNOWN);
  expect(() => {
    (releaseToProto("released") as { message: string }).message = "changed";
  }).toThrow(TypeError);
});
