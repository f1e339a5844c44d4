// API keys: "rq_<id>_<secret>". The id is public (list and revoke name keys
// by it); the secret is 32 random bytes. The server keeps only the SHA-256 of
// the whole key (enough for high-entropy keys) and compares in constant time.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** What a key may do, weakest first. */
export type Role = "worker" | "admin" | "root";

/** Recognisable prefix of every key the server makes. */
const keyPrefix = "rq_";

const keyPattern = /^rq_([0-9a-z]{12})_[A-Za-z0-9_-]{43}$/;

/** A stored key: never the secret, only its hash. */
export interface KeyRecord {
  /** Public id: 12 lowercase letters and digits. */
  id: string;
  namespace: string;
  role: Role;
  /** Hex SHA-256 of the whole key string. */
  hash: string;
  description: string;
  /** Creation time, epoch ms. */
  createdAt: number;
}

/** A new key and the record to store for it. */
export function generateKey(namespace: string, role: Role, description: string, now: number): { key: string; record: KeyRecord } {
  const id = randomBytes(8).toString("hex").slice(0, 12);
  const key = `${keyPrefix}${id}_${randomBytes(32).toString("base64url")}`;
  return { key, record: { id, namespace, role, hash: hashKey(key), description, createdAt: now } };
}

/** Hex SHA-256 of a key. */
export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** The public id of a well-formed key, or undefined. */
export function keyId(key: string): string | undefined {
  return keyPattern.exec(key)?.[1];
}

/** Whether `key` hashes to `hash`, in time independent of where they differ. */
export function matches(key: string, hash: string): boolean {
  const a = Buffer.from(hashKey(key), "hex");
  const b = Buffer.from(hash, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}
