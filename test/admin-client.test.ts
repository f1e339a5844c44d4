// The admin client against a real server with keys on: resources in the
// config file's shape in and out (server defaults filled in, so get → put
// round-trips), statistics and keys as plain values, and input the client or
// the server refuses, always INVALID_ARGUMENT naming the field.
import { createAdminClient, createClient, RateQueueError, type AdminClient, type ResourceConfig } from "@ratequeue/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rootKeyFile } from "./support/keys.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const rootKey = "admin-client-test-root-key-0123456789abcdef";

let server: ServerProcess;
let admin: AdminClient;

beforeAll(async () => {
  server = await startServerProcess({ args: ["--root-key-file", rootKeyFile(rootKey)] });
  admin = createAdminClient({ url: server.url, apiKey: rootKey });
});
afterAll(async () => {
  admin.close();
  await server.stop();
});

const failure = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RateQueueError);
  return err as RateQueueError;
};

describe("resources in the config file's shape", () => {
  test("put with every field returns the resource as stored, durations canonical and the burst filled in", async () => {
    const definition: ResourceConfig = {
      name: "openai-gpt4",
      limits: [
        { dimension: "requests", amount: 500, period: "1m", burst: 20 },
        { dimension: "load", amount: 30_000, period: 60_000 },
      ],
      concurrency: 8,
      lanes: { "user-facing": 3, batch: 1 },
      defaultLane: "batch",
      leaseTtl: "1.5m",
      maxQueue: 100,
    };
    const stored = {
      name: "openai-gpt4",
      limits: [
        { dimension: "requests", amount: 500, period: "60s", burst: 20 },
        { dimension: "load", amount: 30_000, period: "60s", burst: 30_000 },
      ],
      concurrency: 8,
      lanes: { "user-facing": 3, batch: 1 },
      defaultLane: "batch",
      leaseTtl: "90s",
      maxQueue: 100,
      cooldown: "1s",
      learnLimits: true,
    };
    expect(await admin.putResource(definition)).toEqual({ resource: stored, created: true });
    expect(await admin.getResource("openai-gpt4")).toEqual(stored);
    expect(await admin.putResource(definition)).toEqual({ resource: stored, created: false });
  });

  test("a resource with only a name comes back with the server's defaults, and get → put stores it unchanged", async () => {
    await admin.putResource({ name: "bare" });
    const got = await admin.getResource("bare");
    expect(got).toEqual({ name: "bare", limits: [], concurrency: 0, lanes: { default: 1 }, defaultLane: "default", leaseTtl: "30s", maxQueue: 10_000, cooldown: "1s", learnLimits: true });
    expect(await admin.putResource(got)).toEqual({ resource: got, created: false });
    expect(await admin.getResource("bare")).toEqual(got);
  });

  test.each([
    ["500ms", "500ms"],
    ["1.5s", "1500ms"],
    ["1.5m", "90s"],
    ["1h", "3600s"],
    ["1d", "86400s"],
    [250, "250ms"],
    [2000, "2s"],
  ])("a period of %j is stored as %s", async (period, canonical) => {
    const { resource } = await admin.putResource({ name: "periods", limits: [{ dimension: "requests", amount: 1, period }] });
    expect(resource.limits[0]!.period).toBe(canonical);
    expect((await admin.getResource("periods")).limits[0]!.period).toBe(canonical);
  });

  test("list returns every resource in the same shape, ordered by name", async () => {
    await admin.putResource({ name: "list-b", concurrency: 2 });
    await admin.putResource({ name: "list-a", limits: [{ dimension: "load", amount: 10, period: "1s" }] });
    const listed = (await admin.listResources()).filter((r) => r.name.startsWith("list-"));
    expect(listed).toEqual([await admin.getResource("list-a"), await admin.getResource("list-b")]);
    expect(listed[0]!.limits).toEqual([{ dimension: "load", amount: 10, period: "1s", burst: 10 }]);
  });

  test("delete removes the resource: get and acquire answer NOT_FOUND", async () => {
    await admin.putResource({ name: "doomed", concurrency: 1 });
    await admin.deleteResource("doomed");
    expect((await failure(admin.getResource("doomed"))).code).toBe("NOT_FOUND");
    const client = createClient({ url: server.url, apiKey: rootKey });
    try {
      expect((await failure(client.acquire("doomed", { timeoutMs: 0 }))).code).toBe("NOT_FOUND");
    } finally {
      await client.close();
    }
    expect((await failure(admin.deleteResource("doomed"))).code).toBe("NOT_FOUND");
  });

  test("putResources puts many in order, a call per thousand, and a refusal names its index in the caller's list", async () => {
    const many: ResourceConfig[] = [{ name: "bulk-parent", concurrency: 100 }];
    for (let i = 0; i < 2500; i++) many.push({ name: `bulk-${String(i).padStart(4, "0")}`, limits: [{ dimension: "requests", amount: 10 + i, period: "1m" }], ...(i % 500 === 0 && { parent: "bulk-parent" }) });
    expect(await admin.putResources(many)).toEqual({ created: 2501, replaced: 0 });
    expect(await admin.getResource("bulk-1234")).toMatchObject({ limits: [{ dimension: "requests", amount: 1244, period: "60s", burst: 1244 }] });
    expect((await admin.getResource("bulk-2000")).parent).toBe("bulk-parent");
    expect(await admin.putResources(many.slice(0, 1200))).toEqual({ created: 0, replaced: 1200 });
    // Refused at 1500 (in the second call): those before it stay put, the error names it in the caller's list.
    const refused = [...many.slice(1, 1500).map((r) => ({ ...r, concurrency: 7 })), { name: "bulk-orphan", parent: "bulk-nowhere" }, { name: "bulk-after" }];
    const err = await failure(admin.putResources(refused));
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message).toMatch(/^resources\[1499\]: parent 'bulk-nowhere' of 'bulk-orphan' not found/);
    expect((await admin.getResource("bulk-1497")).concurrency).toBe(7);
    expect((await failure(admin.getResource("bulk-after"))).code).toBe("NOT_FOUND");
    // What the client cannot encode fails before any call, naming the index and the field.
    const bad = await failure(admin.putResources([{ name: "bulk-fine" }, { name: "bulk-bad", limits: [{ dimension: "requests", amount: 1, period: "soon" }] }]));
    expect(bad).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/^resources\[1\]: resource\.limits\[0\]\.period: /) });
    expect((await failure(admin.getResource("bulk-fine"))).code).toBe("NOT_FOUND");
    expect(await admin.raw.putResources([{ name: "bulk-raw", concurrency: 2 }])).toEqual({ created: 1, replaced: 0 });
  });

  test("the raw messages stay available under admin.raw", async () => {
    await admin.putResource({ name: "raw", limits: [{ dimension: "requests", amount: 5, period: "60s" }] });
    const message = await admin.raw.getResource("raw");
    expect(message.limits[0]!.period).toMatchObject({ seconds: 60n, nanos: 0 });
    const { resource } = await admin.raw.putResource({ name: "raw", concurrency: 3 });
    expect(resource.concurrency).toBe(3);
    expect((await admin.getResource("raw")).limits).toEqual([]);
  });
});

test("stats are plain numbers: leases, lanes, limits with their stored shape, counters and waits in ms", async () => {
  await admin.putResource({ name: "measured", limits: [{ dimension: "load", amount: 100, period: "1d" }], lanes: { fast: 2, slow: 1 } });
  const client = createClient({ url: server.url, apiKey: rootKey });
  try {
    const lease = await client.acquire("measured", { load: 40, lane: "slow" });
    const stats = await admin.getResourceStats("measured");
    expect(stats).toMatchObject({
      name: "measured",
      leasesInFlight: 1,
      lanes: [
        { name: "fast", weight: 2, queueDepth: 0, grants: 0, loadGranted: 0 },
        { name: "slow", weight: 1, queueDepth: 0, grants: 1, loadGranted: 40 },
      ],
      limits: [{ limit: { dimension: "load", amount: 100, period: "86400s", burst: 100 } }],
      grants: 1,
      rejections: 0,
      timeouts: 0,
      cancellations: 0,
      expirations: 0,
    });
    expect(stats.limits[0]!.available).toBeCloseTo(60, 0);
    expect(stats.limits[0]!.utilisation).toBeCloseTo(0.4, 2);
    expect(stats.limits[0]!.usedLastPeriod).toBe(40);
    for (const wait of [stats.waitP50Ms, stats.waitP90Ms, stats.waitP99Ms, stats.waitMaxMs]) {
      expect(wait).toBeTypeOf("number");
      expect(wait).toBeGreaterThanOrEqual(0);
    }
    await lease.release();
    expect((await admin.getResourceStats("measured")).leasesInFlight).toBe(0);
  } finally {
    await client.close();
  }
});

test("keys: a root key creates, lists and revokes them; a revoked key stops working", async () => {
  const before = Date.now();
  const { key, apiKey } = await admin.createApiKey({ namespace: "team-a", role: "admin", description: "admin client test" });
  expect(key).toMatch(/^rq_[0-9a-z]{12}_[A-Za-z0-9_-]{43}$/);
  expect(apiKey).toEqual({ id: key.split("_")[1], namespace: "team-a", role: "admin", description: "admin client test", createTime: expect.any(Date) });
  expect(apiKey.createTime.getTime()).toBeGreaterThanOrEqual(before - 1000);
  expect(apiKey.createTime.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
  expect(await admin.listApiKeys("team-a")).toEqual([apiKey]);
  expect(await admin.listApiKeys()).toContainEqual(apiKey);

  // The new key acts in its own namespace.
  const asTeam = createAdminClient({ url: server.url, apiKey: key });
  try {
    await asTeam.putResource({ name: "team-only", concurrency: 1 });
    expect((await asTeam.listResources()).map((r) => r.name)).toEqual(["team-only"]);
    await admin.revokeApiKey(apiKey.id);
    expect(await admin.listApiKeys("team-a")).toEqual([]);
    expect((await failure(asTeam.listResources())).code).toBe("UNAUTHENTICATED");
  } finally {
    asTeam.close();
  }
  const badRole = await failure(admin.createApiKey({ role: "boss" as never }));
  expect(badRole).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/^role: /) });
});

describe("bad input: INVALID_ARGUMENT naming the field, and nothing stored", () => {
  test.each<[string, unknown, string]>([
    // Refused by the client: it cannot encode these.
    ["an unknown dimension", { limits: [{ dimension: "rps", amount: 1, period: "1s" }] }, "resource.limits[0].dimension: must be 'requests' or 'load'"],
    ["a period it cannot read", { limits: [{ dimension: "load", amount: 1, period: "5 minutes" }] }, "resource.limits[0].period: '5 minutes' is not a duration"],
    ["a limit without a period", { limits: [{ dimension: "load", amount: 1 }] }, "resource.limits[0].period: is required"],
    ["the config file's snake_case key", { lease_ttl: "30s" }, "resource.lease_ttl: unknown key"],
    ["a negative concurrency", { concurrency: -1 }, "resource.concurrency: must be an integer"],
    ["a fractional lane weight", { lanes: { a: 1.5 } }, "resource.lanes.a: must be an integer"],
    ["a bare number as a string", { leaseTtl: "30" }, "resource.leaseTtl: '30' is not a duration"],
    // Refused by the server's validation.
    ["a zero amount", { limits: [{ dimension: "requests", amount: 0, period: "1s" }] }, "resource.limits[0].amount: must be greater than 0"],
    ["a lane weight over 1000", { lanes: { a: 5000 } }, "resource.lanes[0].weight:"],
    ["a default lane that is not a lane", { lanes: { a: 1 }, defaultLane: "b" }, "resource.default_lane: 'b' is not one of the lanes"],
    ["a lease TTL under 100 ms", { leaseTtl: "10ms" }, "resource.lease_ttl:"],
  ])("%s", async (_, fields, message) => {
    const err = await failure(admin.putResource({ name: "refused", ...(fields as object) } as ResourceConfig));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message.startsWith(message), err.message).toBe(true);
    expect((await failure(admin.getResource("refused"))).code).toBe("NOT_FOUND");
  });
});

describe("resource trees", () => {
  const storedDefaults = { lanes: { default: 1 }, defaultLane: "default", leaseTtl: "30s", maxQueue: 10_000, cooldown: "1s", learnLimits: true };

  test("a parent with a per_key template and a declared child round-trip in the config file's shape", async () => {
    const parent: ResourceConfig = {
      name: "tree-gpt",
      limits: [{ dimension: "requests", amount: 500, period: "60s", burst: 20 }],
      concurrency: 16,
      perKey: { limits: [{ dimension: "requests", amount: 60, period: "1m", burst: 5 }], concurrency: 4 },
      perKeyIdle: "10m",
      childrenFrom: ["team-a"],
    };
    const storedParent = {
      name: "tree-gpt",
      limits: [{ dimension: "requests", amount: 500, period: "60s", burst: 20 }],
      concurrency: 16,
      ...storedDefaults,
      perKey: { limits: [{ dimension: "requests", amount: 60, period: "60s", burst: 5 }], concurrency: 4, share: 1 },
      perKeyIdle: "600s",
      childrenFrom: ["team-a"],
    };
    const child: ResourceConfig = { name: "tree-gpt/enterprise-42", parent: "tree-gpt", share: 4, limits: [{ dimension: "requests", amount: 200, period: "60s" }] };
    const storedChild = {
      name: "tree-gpt/enterprise-42",
      limits: [{ dimension: "requests", amount: 200, period: "60s", burst: 200 }],
      concurrency: 0,
      ...storedDefaults,
      parent: "tree-gpt",
      share: 4,
    };
    // The parent must exist first.
    expect((await failure(admin.putResource(child))).code).toBe("NOT_FOUND");
    expect(await admin.putResource(parent)).toEqual({ resource: storedParent, created: true });
    expect(await admin.putResource(child)).toEqual({ resource: storedChild, created: true });
    for (const stored of [storedParent, storedChild]) {
      expect(await admin.getResource(stored.name)).toEqual(stored);
      expect(await admin.putResource(await admin.getResource(stored.name))).toEqual({ resource: stored, created: false });
    }
    // A parent with declared children stays until they are gone.
    expect((await failure(admin.deleteResource("tree-gpt"))).code).toBe("FAILED_PRECONDITION");
    await admin.deleteResource("tree-gpt/enterprise-42");
    await admin.deleteResource("tree-gpt");
  });

  test("a keyed child is made on the first acquire with its key, from the template, and is listed with its parent", async () => {
    await admin.putResource({ name: "tree-keyed", concurrency: 10, perKey: { limits: [{ dimension: "load", amount: 1000, period: "1h" }], concurrency: 2, share: 3 } });
    await admin.putResource({ name: "tree-keyed/vip", parent: "tree-keyed", share: 5 });
    const client = createClient({ url: server.url, apiKey: rootKey });
    try {
      const lease = await client.acquire("tree-keyed", { key: "alice", load: 10 });
      expect(lease.resource).toBe("tree-keyed/alice");
      const { resources, nextPageToken } = await admin.listResources({ parent: "tree-keyed" });
      expect(nextPageToken).toBe("");
      expect(resources).toEqual([
        {
          name: "tree-keyed/alice",
          limits: [{ dimension: "load", amount: 1000, period: "3600s", burst: 1000 }],
          concurrency: 2,
          ...storedDefaults,
          parent: "tree-keyed",
          share: 3,
          keyed: true,
        },
        await admin.getResource("tree-keyed/vip"),
      ]);
      // Without a parent: the declared resources only.
      const declared = (await admin.listResources()).map((r) => r.name).filter((n) => n.startsWith("tree-keyed"));
      expect(declared).toEqual(["tree-keyed", "tree-keyed/vip"]);
      await lease.release();
    } finally {
      await client.close();
    }
  });

  test("children come a page at a time in name order; iterateResources walks every page", async () => {
    await admin.putResource({ name: "tree-pages" });
    for (const n of [3, 1, 5, 2, 4]) await admin.putResource({ name: `tree-pages/c${n}`, parent: "tree-pages" });
    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await admin.listResources({ parent: "tree-pages", pageSize: 2, pageToken });
      pages.push(page.resources.map((r) => r.name));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(pages).toEqual([
      ["tree-pages/c1", "tree-pages/c2"],
      ["tree-pages/c3", "tree-pages/c4"],
      ["tree-pages/c5"],
    ]);
    const walked: string[] = [];
    for await (const r of admin.iterateResources({ parent: "tree-pages", pageSize: 2 })) walked.push(r.name);
    expect(walked).toEqual(pages.flat());
    // A token the server did not give is refused, naming the field.
    expect(await failure(admin.listResources({ parent: "tree-pages", pageToken: "not-a-token" }))).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/^page_token: /) });
    // Declared resources page alike: every one once, in name order, the same as the list in one page.
    const all = (await admin.listResources()).map((r) => r.name);
    const declared: string[] = [];
    for await (const r of admin.iterateResources({ pageSize: 3 })) declared.push(r.name);
    expect(declared).toEqual(all);
    expect(all).toContain("tree-pages");
    expect(all.some((name) => name.startsWith("tree-pages/c"))).toBe(true);
  });

  test("a parent's stats show each child's figures; a child's show its parent's", async () => {
    await admin.putResource({ name: "tree-stats", limits: [{ dimension: "load", amount: 1000, period: "1d" }], perKey: { concurrency: 5 } });
    await admin.putResource({ name: "tree-stats/vip", parent: "tree-stats", share: 3 });
    const client = createClient({ url: server.url, apiKey: rootKey });
    try {
      const leases = [
        await client.acquire("tree-stats", { key: "a", load: 3 }),
        await client.acquire("tree-stats", { key: "a", load: 4 }),
        await client.acquire("tree-stats", { key: "b", load: 5 }),
      ];
      const stats = await admin.getResourceStats("tree-stats");
      expect(stats.leasesInFlight).toBe(3);
      expect(stats.childrenCount).toBe(3);
      expect(stats.parent).toBeUndefined();
      // The busiest first.
      expect(stats.children[0]).toEqual({ name: "tree-stats/a", share: 1, keyed: true, leasesInFlight: 2, queueDepth: 0, grants: 2, loadGranted: 7 });
      expect(stats.children).toContainEqual({ name: "tree-stats/b", share: 1, keyed: true, leasesInFlight: 1, queueDepth: 0, grants: 1, loadGranted: 5 });
      expect(stats.children).toContainEqual({ name: "tree-stats/vip", share: 3, keyed: false, leasesInFlight: 0, queueDepth: 0, grants: 0, loadGranted: 0 });
      expect((await admin.getResourceStats("tree-stats", { childrenLimit: 1 })).children.map((c) => c.name)).toEqual(["tree-stats/a"]);

      const child = await admin.getResourceStats("tree-stats/a");
      expect(child).toMatchObject({ name: "tree-stats/a", leasesInFlight: 2, grants: 2, childrenCount: 0, children: [] });
      expect(child.parent).toMatchObject({ name: "tree-stats", leasesInFlight: 3, queueDepth: 0, limits: [{ limit: { dimension: "load", amount: 1000, period: "86400s", burst: 1000 } }] });
      expect(child.parent!.limits[0]!.available).toBeCloseTo(988, 0);
      await Promise.all(leases.map((l) => l.release()));
    } finally {
      await client.close();
    }
  });

  test("an acquire with a key on a resource without per_key, or with a bad key, fails INVALID_ARGUMENT naming the key", async () => {
    await admin.putResource({ name: "tree-plain" });
    await admin.putResource({ name: "tree-template", perKey: {} });
    const client = createClient({ url: server.url, apiKey: rootKey });
    try {
      expect((await failure(client.acquire("tree-plain", { key: "alice", timeoutMs: 0 }))).code).toBe("INVALID_ARGUMENT");
      for (const key of ["has space", "a@b", "x".repeat(129)]) {
        expect(await failure(client.acquire("tree-template", { key, timeoutMs: 0 }))).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/^key: /) });
      }
    } finally {
      await client.close();
    }
  });

  test.each<[string, unknown, string]>([
    ["the config file's per_key", { per_key: {} }, "resource.per_key: unknown key"],
    ["an unknown key of the template", { perKey: { idle: "1m" } }, "resource.perKey.idle: unknown key"],
    ["a template's limit without a period", { perKey: { limits: [{ dimension: "load", amount: 1 }] } }, "resource.perKey.limits[0].period: is required"],
    ["a fractional share", { parent: "x", share: 1.5 }, "resource.share: must be an integer"],
    ["a namespace that is not a string", { childrenFrom: [7] }, "resource.childrenFrom[0]: must be a string"],
    ["a per_key_idle it cannot read", { perKeyIdle: "soon" }, "resource.perKeyIdle: 'soon' is not a duration"],
  ])("refused by the client: %s", async (_, fields, message) => {
    const err = await failure(admin.putResource({ name: "tree-refused", ...(fields as object) } as ResourceConfig));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message.startsWith(message), err.message).toBe(true);
  });
});
