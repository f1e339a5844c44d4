import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, test } from "vitest";
import { silentLogger } from "../log.js";
import { RpcError } from "../errors.js";
import { Authenticator } from "./authenticator.js";
import { MemoryKeyStore } from "./key-store.js";
import { generateKey, hashKey, keyId, matches } from "./keys.js";
import { Scope, namespaceOf } from "./scope.js";
import { isLoopback } from "./setup.js";
import { FailureThrottle, peerAddress } from "./throttle.js";

const md = (key?: string, namespace?: string) => {
  const m = new Metadata();
  if (key !== undefined) m.set("authorization", `Bearer ${key}`);
  if (namespace !== undefined) m.set("ratequeue-namespace", namespace);
  return m;
};
const rejection = async (p: Promise<unknown>) => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(RpcError);
  return err as RpcError;
};
const root = "r".repeat(40);

describe("keys", () => {
  test("format, id, hash and constant-time match", () => {
    const { key, record } = generateKey("team-a", "worker", "", 0);
    expect(key).toMatch(/^rq_[0-9a-z]{12}_[A-Za-z0-9_-]{43}$/);
    expect(keyId(key)).toBe(record.id);
    expect(record.hash).toBe(hashKey(key));
    expect(JSON.stringify(record)).not.toContain(key.slice(16));
    expect(matches(key, record.hash)).toBe(true);
    expect(matches(key + "x", record.hash)).toBe(false);
    expect(keyId("rq_short_x")).toBeUndefined();
  });
});

describe("scope", () => {
  test("qualifies names; default keeps plain names; no namespace reaches another's", () => {
    const a = new Scope("team-a");
    const d = new Scope("default");
    expect(a.engineName("r")).toBe("team-a@r");
    expect(d.engineName("r")).toBe("r");
    expect(a.owns("team-a@r")).toBe(true);
    expect(a.owns("team-ab@r")).toBe(false);
    expect(a.owns("r")).toBe(false);
    expect(d.owns("team-a@r")).toBe(false);
    expect(a.publicName("team-a@r")).toBe("r");
    expect(a.publicMessage("resource 'team-a@r' not found")).toBe("resource 'r' not found");
    expect(namespaceOf("team-a@r")).toBe("team-a");
    expect(namespaceOf("r")).toBe("default");
  });
});

describe("throttle", () => {
  test("free failures, then doubling delays, per peer; failures decay", () => {
    let now = 0;
    const t = new FailureThrottle({ freeFailures: 2, baseDelayMs: 100, maxDelayMs: 1000, halfLifeMs: 1000 }, () => now);
    expect([t.failed("a"), t.failed("a"), t.failed("a"), t.failed("a"), t.failed("a")]).toEqual([0, 0, 100, 200, 400]);
    expect(t.failed("b")).toBe(0);
    for (let i = 0; i < 10; i++) t.failed("a");
    expect(t.failed("a")).toBe(1000);
    now += 20_000;
    expect(t.failed("a")).toBe(0);
  });

  test("remembers a bounded number of peers", () => {
    const t = new FailureThrottle({ maxPeers: 100 });
    for (let i = 0; i < 1000; i++) t.failed(`p${i}`);
    expect(t.size).toBeLessThanOrEqual(100);
  });

  test("peer addresses", () => {
    expect(peerAddress("ipv4:127.0.0.1:5555")).toBe("127.0.0.1");
    expect(peerAddress("ipv6:[::1]:5555")).toBe("[::1]");
    expect(isLoopback("127.0.0.1")).toBe(true);
    expect(isLoopback("::1")).toBe(true);
    expect(isLoopback("[::1]")).toBe(true);
    expect(isLoopback("localhost")).toBe(true);
    expect(isLoopback("0.0.0.0")).toBe(false);
    expect(isLoopback("10.0.0.1")).toBe(false);
  });
});

describe("authenticator", () => {
  const make = async (store = new MemoryKeyStore()) => {
    const auth = new Authenticator({ store, log: silentLogger, rootKey: root, namespaces: ["team-a"], throttle: { freeFailures: 100 } });
    await auth.start();
    return auth;
  };

  test("off without a root key: everyone is root of the namespace they name", async () => {
    const auth = new Authenticator({ store: new MemoryKeyStore(), log: silentLogger });
    await auth.start();
    expect(auth.enabled).toBe(false);
    expect(await auth.authenticate(md(), "ipv4:1.2.3.4:1")).toMatchObject({ role: "root", namespace: "default" });
    expect((await rejection(auth.authenticate(md(undefined, "nope"), "p"))).code).toBe(status.NOT_FOUND);
  });

  test("keys act in their namespace; root picks one; wrong keys are refused", async () => {
    const auth = await make();
    expect(auth.enabled).toBe(true);
    const { key } = await auth.createKey("team-a", "worker", "w");
    expect(await auth.authenticate(md(key), "p")).toMatchObject({ role: "worker", namespace: "team-a" });
    expect((await rejection(auth.authenticate(md(key, "default"), "p"))).code).toBe(status.PERMISSION_DENIED);
    expect(await auth.authenticate(md(root, "team-a"), "p")).toMatchObject({ role: "root", namespace: "team-a", keyId: "root" });
    for (const bad of [undefined, "x", key.slice(0, -2) + "zz"]) {
      expect((await rejection(auth.authenticate(md(bad), "p"))).code).toBe(status.UNAUTHENTICATED);
    }
    const raw = new Metadata();
    raw.set("authorization", key);
    expect((await rejection(auth.authenticate(raw, "p"))).message).toMatch(/Bearer/);
  });

  test("revocation calls the key's listeners once and refuses the key; reload ends vanished keys", async () => {
    const store = new MemoryKeyStore();
    const auth = await make(store);
    const { key, record } = await auth.createKey("team-a", "admin", "");
    expect(store.keys.get(record.id)?.hash).toBe(record.hash);
    const seen: string[] = [];
    auth.onRevoked(record.id, (e) => seen.push(e.message));
    const off = auth.onRevoked(record.id, () => seen.push("unsubscribed"));
    off();
    expect(await auth.revokeKey(record.id)).toBe(true);
    expect(seen).toEqual(["the API key was revoked"]);
    expect(store.keys.has(record.id)).toBe(false);
    expect((await rejection(auth.authenticate(md(key), "p"))).code).toBe(status.UNAUTHENTICATED);

    const other = await auth.createKey("team-a", "worker", "");
    let ended = false;
    auth.onRevoked(other.record.id, () => (ended = true));
    store.keys.delete(other.record.id); // revoked through another node
    await auth.reload();
    expect(ended).toBe(true);
  });

  test("a store that fails leaves nothing half-made", async () => {
    const store = new MemoryKeyStore();
    const auth = await make(store);
    store.putKey = async () => {
      throw new Error("redis down");
    };
    await expect(auth.createKey("team-a", "worker", "")).rejects.toThrow("redis down");
    expect(auth.listKeys()).toEqual([]);
  });
});
