// Private redis-server instances for tests (never a system service), and a
// TCP proxy a test can cut to partition one node from Redis.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { startServerProcess, type ServerProcess } from "./server-process.js";

/** The redis-server binary: $REDIS_SERVER (set by the test script), else the one on PATH. */
export const redisServerBinary = process.env.REDIS_SERVER || "redis-server";

export interface RedisInstance {
  port: number;
  url: string;
  /** A client for the test's own commands. */
  client: Redis;
  /** Stops the server (SIGKILL when `kill`); the port stays reserved for start(). */
  stop(kill?: boolean): Promise<void>;
  /** Starts it again on the same port (and, when persistent, the same data). */
  start(): Promise<void>;
}

/** A free loopback port (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts redis-server on a free port. `persistent`: an append-only file in a
 * temp dir, so data survives stop()/start(); otherwise nothing is saved.
 */
export async function startRedis(options: { persistent?: boolean } = {}): Promise<RedisInstance> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ratequeue-redis-"));
  let child: ChildProcess | undefined;
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", options.persistent ? "yes" : "no"];
  const start = async (): Promise<void> => {
    const proc = spawn(redisServerBinary, args, { stdio: ["ignore", "pipe", "inherit"] });
    child = proc;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server on port ${port} not ready within 10 s`)), 10_000);
      proc.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
      let out = "";
      proc.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  };
  await start();
  const client = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  client.on("error", () => {});
  await client.connect();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    client,
    async stop(kill = false) {
      const proc = child;
      if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
      proc.kill(kill ? "SIGKILL" : "SIGTERM");
      await exited;
    },
    start,
  };
}

/** Stops an instance and its test client. */
export async function closeRedis(redis: RedisInstance | undefined): Promise<void> {
  if (redis === undefined) return;
  redis.client.disconnect();
  await redis.stop(true);
}

export interface TcpProxy {
  port: number;
  url: string;
  /**
   * Partitions: bytes in both directions are held back (as a network that
   * drops packets and TCP retransmits later), so calls hang rather than fail.
   */
  cut(): void;
  /** Heals the partition: held bytes flow on. */
  heal(): void;
  /** Drops every open connection at once (new ones go through). */
  reset(): void;
  close(): Promise<void>;
}

/** A TCP proxy on a free loopback port to 127.0.0.1:targetPort. */
export async function startProxy(targetPort: number): Promise<TcpProxy> {
  let cut = false;
  const pairs = new Set<{ a: Socket; b: Socket; held: [Socket, Buffer][] }>();
  const server = createServer((a) => {
    const pair = { a, b: undefined as unknown as Socket, held: [] as [Socket, Buffer][] };
    const b = new (a.constructor as typeof Socket)();
    pair.b = b;
    b.connect(targetPort, "127.0.0.1");
    const forward = (to: Socket) => (chunk: Buffer) => {
      if (cut) pair.held.push([to, chunk]);
      else to.write(chunk);
    };
    a.on("data", forward(b));
    b.on("data", forward(a));
    const end = () => {
      pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on("close", end).on("error", end);
    b.on("close", end).on("error", end);
    pairs.add(pair);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    cut() {
      cut = true;
    },
    reset() {
      for (const pair of pairs) {
        pair.a.destroy();
        pair.b.destroy();
      }
    },
    heal() {
      cut = false;
      for (const pair of pairs) {
        for (const [to, chunk] of pair.held) to.write(chunk);
        pair.held = [];
      }
    },
    async close() {
      for (const pair of pairs) {
        pair.a.destroy();
        pair.b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Starts a `ratequeue serve --redis` node on a free port (advertised as 127.0.0.1:port). */
export async function startNode(
  redisUrl: string,
  options: { config?: unknown; args?: string[]; leaderTtl?: string } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  return startServerProcess({
    port,
    config: options.config,
    args: ["--redis", redisUrl, "--leader-ttl", options.leaderTtl ?? "1s", ...(options.args ?? [])],
  });
}

/** Resolves with the first log entry (already printed or upcoming) that matches. */
export async function waitForLog(
  node: ServerProcess,
  match: (entry: Record<string, unknown>) => boolean,
  timeoutMs = 10_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = node.logs.find(match);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms; last lines: ${JSON.stringify(node.logs.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Log entries after index `from` with this msg. */
export const logsAfter = (node: ServerProcess, from: number, msg: string) => node.logs.slice(from).filter((e) => e.msg === msg);
