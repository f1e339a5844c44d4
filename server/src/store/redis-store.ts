// What a group of nodes keeps in Redis, and the atomic scripts that change it.
//
// Keys, under a prefix (default "ratequeue"):
//   <p>:leader       the leadership lease: "<epoch> <token> <advertise>", PX = leader TTL
//   <p>:epoch        fencing counter, INCR'd by every node that becomes leader
//   <p>:resources    hash: resource name -> ResourceSpec JSON (the durable config)
//   <p>:seeded       set: names the config file has ever seeded (a deleted one stays deleted)
//   <p>:snapshot     JSON StoredSnapshot: the engine's state, written by the leader
//   <p>:reservation  JSON Reservation: how far the last leader may have granted
//   <p>:keys         hash: API key id -> KeyRecord JSON (the key's SHA-256, never the key)
//   <p>:namespaces   set: namespace names
//
// Every write a leader makes runs in one Lua script that first checks that
// the lease still holds this leader's exact value and that the epoch counter
// still equals its epoch; otherwise the script changes nothing and the call
// throws FencedError. A deposed leader's late write therefore cannot land.
// Reads need no fencing: only a leader reads, right after winning the lease.
import type { Redis } from "ioredis";
import type { KeyRecord } from "../auth/index.js";
import type { EngineSnapshot, ResourceSpec } from "../core/index.js";

/** One leadership term: what this node wrote into the lease key when it won. */
export interface Term {
  epoch: number;
  /** The lease key's exact value: "<epoch> <token> <advertise>". */
  value: string;
}

/** The leader as a follower sees it. */
export interface LeaderInfo {
  epoch: number;
  /** host:port clients should use. */
  address: string;
  /** ms until the lease lapses unless renewed. */
  ttlMs: number;
}

/** The engine's state as the leader of `term` wrote it. */
export interface StoredSnapshot {
  /** Lease value of the term that wrote it (identifies node and term). */
  term: string;
  epoch: number;
  snapshot: EngineSnapshot;
  /** Written after the leader stopped granting for good (graceful shutdown): exact, no notBefore needed. */
  final?: boolean;
}

/** "The leader of `term` may grant until `until`" (the leader's clock, epoch ms). */
export interface Reservation {
  term: string;
  epoch: number;
  until: number;
}

/** What a new leader reads before it takes over. */
export interface StoredState {
  resources: Map<string, ResourceSpec>;
  snapshot: StoredSnapshot | undefined;
  reservation: Reservation | undefined;
}

/** A fenced write was refused: this node's term is over. */
export class FencedError extends Error {
  override name = "FencedError";
  constructor(what: string) {
    super(`${what}: refused by Redis, this node no longer holds the leadership lease (a newer leader or none)`);
  }
}

// KEYS[1] = leader, KEYS[2] = epoch; ARGV[1] = lease value, ARGV[2] = epoch.
const fence = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
`;

const scripts = {
  // ARGV: token, advertise, ttl. Wins the lease if nobody holds it.
  rqCampaign: {
    numberOfKeys: 2,
    lua: `
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur, redis.call('PTTL', KEYS[1])} end
local e = redis.call('INCR', KEYS[2])
local v = e .. ' ' .. ARGV[1] .. ' ' .. ARGV[2]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
return {1, v, tonumber(ARGV[3])}`,
  },
  // KEYS[3] = reservation; ARGV[3] = ttl, ARGV[4] = reservation JSON.
  rqRenew: {
    numberOfKeys: 3,
    lua: `${fence}
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
return 1`,
  },
  // Gives the lease up at once (graceful shutdown) so a standby need not wait out the TTL.
  rqResign: {
    numberOfKeys: 2,
    lua: `${fence}
redis.call('DEL', KEYS[1])
return 1`,
  },
  // KEYS[3] = key; ARGV[3] = value.
  rqSet: {
    numberOfKeys: 3,
    lua: `${fence}
redis.call('SET', KEYS[3], ARGV[3])
return 1`,
  },
  // KEYS[3] = a hash; ARGV[3..] = field, value, field, value, ...
  rqHset: {
    numberOfKeys: 3,
    lua: `${fence}
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return 1`,
  },
  // KEYS[3] = a set; ARGV[3..] = members.
  rqSadd: {
    numberOfKeys: 3,
    lua: `${fence}
for i = 3, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
return 1`,
  },
  // KEYS[3] = a set; ARGV[3] = member.
  rqSrem: {
    numberOfKeys: 3,
    lua: `${fence}
redis.call('SREM', KEYS[3], ARGV[3])
return 1`,
  },
  // KEYS[3] = resources; ARGV[3] = name.
  rqHdel: {
    numberOfKeys: 3,
    lua: `${fence}
redis.call('HDEL', KEYS[3], ARGV[3])
return 1`,
  },
  // KEYS[3] = resources, KEYS[4] = seeded; ARGV[3..] = name, JSON pairs.
  // Adds each resource Redis does not hold and was never seeded before.
  rqSeed: {
    numberOfKeys: 4,
    lua: `${fence}
local added = {}
for i = 3, #ARGV, 2 do
  local name = ARGV[i]
  if redis.call('SISMEMBER', KEYS[4], name) == 0 and redis.call('HEXISTS', KEYS[3], name) == 0 then
    redis.call('HSET', KEYS[3], name, ARGV[i + 1])
    table.insert(added, name)
  end
  redis.call('SADD', KEYS[4], name)
end
return added`,
  },
} as const;

type Reply = number | string | (number | string)[];
type ScriptCall = (...args: (string | number)[]) => Promise<Reply>;

/**
 * The Redis side of a group. Every method is one round trip; none retries:
 * the caller (the leader loop, an admin RPC) decides what a failure means.
 */
export class RedisStore {
  readonly keys: Record<"leader" | "epoch" | "resources" | "seeded" | "snapshot" | "reservation" | "apiKeys" | "namespaces", string>;

  constructor(
    readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = {
      leader: `${prefix}:leader`,
      epoch: `${prefix}:epoch`,
      resources: `${prefix}:resources`,
      seeded: `${prefix}:seeded`,
      snapshot: `${prefix}:snapshot`,
      reservation: `${prefix}:reservation`,
      apiKeys: `${prefix}:keys`,
      namespaces: `${prefix}:namespaces`,
    };
    for (const [name, def] of Object.entries(scripts)) {
      // defineCommand runs EVALSHA and falls back to EVAL after a Redis restart (NOSCRIPT).
      if (!(name in redis)) redis.defineCommand(name, def);
    }
  }

  private script(name: keyof typeof scripts): ScriptCall {
    return (this.redis as unknown as Record<string, ScriptCall>)[name]!.bind(this.redis);
  }

  /** Tries to become leader: wins only if nobody holds the lease. */
  async campaign(token: string, advertise: string, ttlMs: number): Promise<{ won: Term } | { leader: LeaderInfo }> {
    const [won, value, pttl] = (await this.script("rqCampaign")(this.keys.leader, this.keys.epoch, token, advertise, ttlMs)) as [
      number,
      string,
      number,
    ];
    const info = parseLeader(value, pttl);
    return won === 1 ? { won: { epoch: info.epoch, value } } : { leader: info };
  }

  /**
   * Extends this term's lease by ttlMs from when Redis runs it and records
   * the reservation. False when the lease is no longer this term's.
   */
  async renew(term: Term, ttlMs: number, reservedUntil: number): Promise<boolean> {
    const reservation: Reservation = { term: term.value, epoch: term.epoch, until: reservedUntil };
    const ok = await this.script("rqRenew")(
      this.keys.leader,
      this.keys.epoch,
      this.keys.reservation,
      term.value,
      term.epoch,
      ttlMs,
      JSON.stringify(reservation),
    );
    return ok === 1;
  }

  /** Deletes the lease if it is still this term's. */
  async resign(term: Term): Promise<boolean> {
    return (await this.script("rqResign")(this.keys.leader, this.keys.epoch, term.value, term.epoch)) === 1;
  }

  async writeSnapshot(term: Term, snapshot: EngineSnapshot, final = false): Promise<void> {
    const stored: StoredSnapshot = { term: term.value, epoch: term.epoch, snapshot, ...(final ? { final } : {}) };
    const ok = await this.script("rqSet")(this.keys.leader, this.keys.epoch, this.keys.snapshot, term.value, term.epoch, JSON.stringify(stored));
    if (ok !== 1) throw new FencedError("snapshot write");
  }

  /** Stores definitions, a thousand per fenced script call. */
  async putResources(term: Term, specs: ResourceSpec[]): Promise<void> {
    for (let i = 0; i < specs.length; i += 1000) {
      const chunk = specs.slice(i, i + 1000);
      const args = chunk.flatMap((s) => [s.name, JSON.stringify(s)]);
      const ok = await this.script("rqHset")(this.keys.leader, this.keys.epoch, this.keys.resources, term.value, term.epoch, ...args);
      if (ok !== 1) throw new FencedError(`put resource '${chunk[0]!.name}'`);
    }
  }

  async deleteResource(term: Term, name: string): Promise<void> {
    const ok = await this.script("rqHdel")(this.keys.leader, this.keys.epoch, this.keys.resources, term.value, term.epoch, name);
    if (ok !== 1) throw new FencedError(`delete resource '${name}'`);
  }

  /** Adds the config file's resources that Redis does not hold and never held; returns their names. */
  async seed(term: Term, specs: ResourceSpec[]): Promise<string[]> {
    const args = specs.flatMap((s) => [s.name, JSON.stringify(s)]);
    const added = await this.script("rqSeed")(this.keys.leader, this.keys.epoch, this.keys.resources, this.keys.seeded, term.value, term.epoch, ...args);
    if (added === 0) throw new FencedError("seed resources");
    return added as string[];
  }

  // API keys and namespaces: the same fenced scripts as resources. Errors
  // name the key's public id at most, never its record (which holds the hash).

  async putKey(term: Term, record: KeyRecord): Promise<void> {
    const ok = await this.script("rqHset")(this.keys.leader, this.keys.epoch, this.keys.apiKeys, term.value, term.epoch, record.id, JSON.stringify(record));
    if (ok !== 1) throw new FencedError(`store API key '${record.id}'`);
  }

  async deleteKey(term: Term, id: string): Promise<void> {
    const ok = await this.script("rqHdel")(this.keys.leader, this.keys.epoch, this.keys.apiKeys, term.value, term.epoch, id);
    if (ok !== 1) throw new FencedError(`revoke API key '${id}'`);
  }

  /** Adds namespaces (none: only checks the fence). */
  async putNamespaces(term: Term, names: string[]): Promise<void> {
    const ok = await this.script("rqSadd")(this.keys.leader, this.keys.epoch, this.keys.namespaces, term.value, term.epoch, ...names);
    if (ok !== 1) throw new FencedError(`store namespaces ${names.map((n) => `'${n}'`).join(", ")}`);
  }

  async deleteNamespace(term: Term, name: string): Promise<void> {
    const ok = await this.script("rqSrem")(this.keys.leader, this.keys.epoch, this.keys.namespaces, term.value, term.epoch, name);
    if (ok !== 1) throw new FencedError(`delete namespace '${name}'`);
  }

  /** Every stored API key record and namespace, exactly as written. */
  async loadKeys(): Promise<{ keys: KeyRecord[]; namespaces: string[] }> {
    // One MULTI: keys and namespaces from the same instant.
    const replies = await this.redis.multi().hgetall(this.keys.apiKeys).smembers(this.keys.namespaces).exec();
    if (replies === null) throw new Error("Redis aborted the transaction reading API keys");
    for (const [err] of replies) if (err) throw err;
    const records = replies[0]![1] as Record<string, string>;
    const namespaces = replies[1]![1] as string[];
    return { keys: Object.values(records).map((json) => JSON.parse(json) as KeyRecord), namespaces };
  }

  /** Everything a new leader needs. */
  async load(): Promise<StoredState> {
    const [resources, snapshot, reservation] = await Promise.all([
      this.redis.hgetall(this.keys.resources),
      this.redis.get(this.keys.snapshot),
      this.redis.get(this.keys.reservation),
    ]);
    return {
      resources: new Map(Object.entries(resources).map(([name, json]) => [name, JSON.parse(json) as ResourceSpec])),
      snapshot: snapshot === null ? undefined : (JSON.parse(snapshot) as StoredSnapshot),
      reservation: reservation === null ? undefined : (JSON.parse(reservation) as Reservation),
    };
  }

  /** The current leader, if any. */
  async leader(): Promise<LeaderInfo | undefined> {
    const [value, pttl] = await Promise.all([this.redis.get(this.keys.leader), this.redis.pttl(this.keys.leader)]);
    return value === null ? undefined : parseLeader(value, pttl);
  }
}

function parseLeader(value: string, ttlMs: number): LeaderInfo {
  const [epoch, , address] = value.split(" ");
  return { epoch: Number(epoch), address: address ?? "", ttlMs };
}
