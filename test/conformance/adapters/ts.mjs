// Conformance adapter for the TypeScript client (protocol: ../README.md).
// Reads one JSON command per line on stdin, answers one JSON line each on
// stdout, in whatever order the client decides them.
import { createInterface } from "node:readline";
import { createClient, RateQueueError } from "@ratequeue/client";
import * as protocol from "../../../clients/ts/dist/protocol.js";

const clients = new Map(); // name -> client
const leases = new Map(); // lease id -> { client: name, lease, released }
const acquires = new Map(); // command id -> AbortController

const write = (answer) => process.stdout.write(JSON.stringify(answer) + "\n");

const failed = (err) =>
  err instanceof RateQueueError ? { ok: false, code: err.code, message: err.message } : { ok: false, code: "UNKNOWN", message: String(err) };

function clientNamed(name) {
  const client = clients.get(name);
  if (client === undefined) throw new Error(`no client named '${name}'; open it first`);
  return client;
}

async function acquireOne(cmd, signal) {
  const lease = await clientNamed(cmd.client).acquire(cmd.resource, {
    load: cmd.load,
    priority: cmd.priority,
    lane: cmd.lane,
    key: cmd.key,
    timeoutMs: cmd.timeoutMs,
    signal,
  });
  leases.set(lease.id, { client: cmd.client, lease, released: false });
  return lease;
}

async function releaseOne(id, actualLoad, throttle) {
  const held = leases.get(id);
  if (held === undefined) throw new Error(`no lease '${id}' was acquired here`);
  held.released = true;
  // The provider refused the call: the release carries it.
  if (throttle !== undefined) held.lease.report({ throttled: true, retryAfterMs: throttle.retryAfterMs });
  return held.lease.release({ actualLoad });
}

const commands = {
  defaults: async () => ({
    defaults: {
      url: protocol.defaultUrl,
      keepaliveTimeMs: protocol.keepaliveTimeMs,
      keepaliveTimeoutMs: protocol.keepaliveTimeoutMs,
      reconnectTimeoutMs: protocol.reconnectTimeoutMs,
      initialBackoffMs: protocol.initialBackoffMs,
      maxBackoffMs: protocol.maxBackoffMs,
      timeoutSlackMs: protocol.timeoutSlackMs,
      maxLeaseIdsPerHeartbeat: protocol.maxLeaseIdsPerHeartbeat,
      leaderMetadataKey: protocol.leaderMetadataKey,
      namespaceMetadataKey: protocol.namespaceMetadataKey,
    },
  }),
  open: async (cmd) => {
    clients.set(
      cmd.client,
      createClient({ url: cmd.url, apiKey: cmd.apiKey ?? "", namespace: cmd.namespace, reconnectTimeoutMs: cmd.reconnectTimeoutMs }),
    );
    return {};
  },
  acquire: async (cmd) => {
    const controller = new AbortController();
    acquires.set(cmd.id, controller);
    try {
      const lease = await acquireOne(cmd, controller.signal);
      return { lease: lease.id, grantTimeMs: lease.grantedAt, load: lease.load, resource: lease.resource };
    } finally {
      acquires.delete(cmd.id);
    }
  },
  cancel: async (cmd) => {
    acquires.get(cmd.target)?.abort();
    return {};
  },
  acquireMany: async (cmd) => {
    const all = await Promise.all(Array.from({ length: cmd.count }, () => acquireOne(cmd)));
    return { leases: all.map((lease) => lease.id) };
  },
  release: async (cmd) => ({ outcome: await releaseOne(cmd.lease, cmd.actualLoad, cmd.throttle) }),
  releaseMany: async (cmd) => ({ outcomes: await Promise.all(cmd.leases.map((id) => releaseOne(id))) }),
  leases: async (cmd) => {
    const held = [];
    const lost = [];
    for (const [id, entry] of leases) {
      if (entry.client === cmd.client && !entry.released) (entry.lease.signal.aborted ? lost : held).push(id);
    }
    return { held, lost };
  },
  close: async (cmd) => {
    await clientNamed(cmd.client).close();
    clients.delete(cmd.client);
    return {};
  },
};

async function serve(cmd) {
  const started = performance.now();
  const command = commands[cmd.cmd];
  let answer;
  try {
    if (command === undefined) throw new Error(`unknown command '${cmd.cmd}'`);
    answer = { ok: true, ...(await command(cmd)) };
  } catch (err) {
    answer = failed(err);
  }
  if (cmd.cmd === "acquire") answer.elapsedMs = Math.round(performance.now() - started);
  write({ id: cmd.id, ...answer });
}

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim() !== "") void serve(JSON.parse(line));
});
input.on("close", async () => {
  await Promise.allSettled([...clients.values()].map((client) => client.close()));
  process.exit(0);
});
write({ ready: true });
