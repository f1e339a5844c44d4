// Acquires with a key against a real server: each key is a child of the
// resource with its own quota inside the shared limit, through acquire,
// withLease and wrapFetch.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startServerProcess, type ServerProcess } from "../../../test/support/server-process.js";
import { createAdminClient, type AdminClient } from "./admin.js";
import { createClient, type RateQueueClient } from "./client.js";
import { RateQueueError } from "./errors.js";
import { wrapFetch, type FetchFunction } from "./wrap-fetch.js";

const config = {
  resources: {
    tenants: { limits: [{ dimension: "requests", amount: 10_000, period: "1s" }], per_key: { concurrency: 1 }, per_key_idle: "60s" },
    calls: { limits: [{ dimension: "load", amount: 1_000_000, period: "60s" }], per_key: {} },
  },
};

let server: ServerProcess;
let client: RateQueueClient;
let admin: AdminClient;
beforeAll(async () => {
  server = await startServerProcess({ config });
  client = createClient({ url: server.url });
  admin = createAdminClient({ url: server.url });
});
afterAll(async () => {
  await client?.close();
  admin?.close();
  await server?.stop();
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected a failure");
    },
    (err: unknown) => {
      expect(err).toBeInstanceOf(RateQueueError);
      return err as RateQueueError;
    },
  );

describe("acquire with a key", () => {
  test("charges the keyed child: its own cap of 1 holds alice back, not bob", async () => {
    const alice = await client.acquire("tenants", { key: "alice" });
    expect(alice.resource).toBe("tenants/alice");
    expect((await failure(client.acquire("tenants", { key: "alice", timeoutMs: 300 }))).code).toBe("DEADLINE_EXCEEDED");
    const bob = await client.acquire("tenants", { key: "bob", timeoutMs: 0 });
    expect(bob.resource).toBe("tenants/bob");
    // The child may also be named directly.
    expect((await failure(client.acquire("tenants/alice", { timeoutMs: 0 }))).code).toBe("DEADLINE_EXCEEDED");
    await alice.release();
    const again = await client.acquire("tenants", { key: "alice", timeoutMs: 5000 });
    await Promise.all([again.release(), bob.release()]);
  });

  test("withLease passes the key; an empty key is refused before any call, as a missing customer id", async () => {
    expect(await client.withLease("tenants", { key: "carol" }, (lease) => lease.resource)).toBe("tenants/carol");
    expect(await failure(client.withLease("tenants", { key: "" }, (lease) => lease.resource))).toMatchObject({
      code: "INVALID_ARGUMENT",
      message: "key: must not be empty; leave it out to acquire the resource itself",
    });
  });

  test("a key that is not a string fails INVALID_ARGUMENT before any call; a bad one is refused by the server", async () => {
    expect(await failure(client.acquire("tenants", { key: 42 as unknown as string }))).toMatchObject({ code: "INVALID_ARGUMENT", message: "key: must be a string, got number" });
    expect(await failure(client.acquire("tenants", { key: "has space", timeoutMs: 0 }))).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/^key: /) });
  });
});

describe("wrapFetch with a key", () => {
  /** A provider that answers every call with 7 tokens of usage; `sent` counts its calls. */
  let sent = 0;
  const provider: FetchFunction = async () => {
    sent++;
    return Response.json({ usage: { total_tokens: 7 } });
  };
  const post = (body: object, headers: Record<string, string> = {}): RequestInit => ({ method: "POST", headers, body: JSON.stringify(body) });
  const grantsOf = async () => {
    const stats = await admin.getResourceStats("calls", { childrenLimit: 100 });
    return { total: stats.grants, inFlight: stats.leasesInFlight, children: Object.fromEntries(stats.children.map((c) => [c.name, c.grants])) };
  };

  test("a string, a function of the body, of the request's headers, or an async one: each call is charged to its key", async () => {
    const url = "http://provider.invalid/v1/chat/completions";
    await wrapFetch(client, { resource: "calls", key: "alice", fetch: provider })(url, post({ messages: [] }));
    const byUser = wrapFetch(client, { resource: "calls", key: (body) => (body as { user?: string }).user, fetch: provider });
    await byUser(url, post({ user: "bob", messages: [] }));
    await byUser(url, post({ messages: [] })); // no user: the resource itself
    const byHeader = wrapFetch(client, { resource: "calls", key: (_, request) => request.headers.get("x-customer-id"), fetch: provider });
    await byHeader(url, post({ messages: [] }, { "x-customer-id": "carol" }));
    await byHeader(new Request(url, post({ messages: [] }, { "x-customer-id": "carol" })));
    await wrapFetch(client, { resource: "calls", key: async () => "dave", fetch: provider })(url, { method: "GET" });
    expect(sent).toBe(6);
    await expect.poll(grantsOf).toEqual({ total: 6, inFlight: 0, children: { "calls/alice": 1, "calls/bob": 1, "calls/carol": 2, "calls/dave": 1 } });
  });

  test("a key the server refuses fails the call before it reaches the provider", async () => {
    const before = sent;
    const refused = wrapFetch(client, { resource: "calls", key: () => "a@b", fetch: provider });
    expect(await failure(refused("http://provider.invalid/v1/chat/completions", post({ messages: [] })))).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(sent).toBe(before);
  });
});
