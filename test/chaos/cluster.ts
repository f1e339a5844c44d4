// A ratequeue group for chaos runs: one Redis, N nodes, and a proxy the
// runner controls on every link that can fail: each node's link to Redis,
// and the workers' link to each node (nodes advertise their worker proxy,
// so a standby's leader hint leads through it too).
import { readFileSync } from "node:fs";
import { freePort, startProxy, startRedis, type RedisInstance, type TcpProxy } from "../support/redis.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

/** The log lines that start a node's granting, and those that end it. */
const leads = new Set(["leading", "granting again: the leadership lease held"]);
const leadershipLines = new Set([...leads, "stopped granting", "standing by", "resigned leadership"]);

export interface ChaosNode {
  name: string;
  port: number;
  redisLink: TcpProxy;
  workerLink: TcpProxy;
  process: ServerProcess | undefined;
  /** Every log line of every process this node ran, with its time. */
  logs: Record<string, unknown>[];
}

export interface Cluster {
  redis: RedisInstance;
  nodes: ChaosNode[];
  /** The URL workers use: every node's worker proxy. */
  url: string;
  /** Starts (or restarts) a node's process on its port. */
  start(node: ChaosNode): Promise<void>;
  /** The node whose last word was "leading", among those running; undefined while none leads. */
  leader(): ChaosNode | undefined;
  /** A running process's resident memory, bytes. */
  rss(node: ChaosNode): number | undefined;
  close(): Promise<void>;
}

export async function startCluster(options: { nodes: number; config: unknown; leaderTtl: string; args?: string[] }): Promise<Cluster> {
  const redis = await startRedis({ persistent: true });
  const nodes: ChaosNode[] = [];
  for (let i = 0; i < options.nodes; i++) {
    const port = await freePort();
    nodes.push({ name: `n${i + 1}`, port, redisLink: await startProxy(redis.port), workerLink: await startProxy(port), process: undefined, logs: [] });
  }
  const start = async (node: ChaosNode): Promise<void> => {
    const process = await startServerProcess({
      port: node.port,
      logs: node.logs,
      config: options.config,
      args: [
        "--redis",
        node.redisLink.url,
        "--advertise",
        `127.0.0.1:${node.workerLink.port}`,
        "--leader-ttl",
        options.leaderTtl,
        "--log-level",
        "debug",
        ...(options.args ?? []),
      ],
    });
    node.process = process;
  };
  for (const node of nodes) await start(node);
  const alive = (n: ChaosNode) => n.process !== undefined && n.process.process.exitCode === null && n.process.process.signalCode === null;
  return {
    redis,
    nodes,
    url: nodes.map((n) => `http://127.0.0.1:${n.workerLink.port}`).join(","),
    start,
    leader() {
      let best: { node: ChaosNode; at: number } | undefined;
      for (const node of nodes) {
        if (!alive(node)) continue;
        const last = [...node.logs].reverse().find((e) => leadershipLines.has(e.msg as string));
        if (last === undefined || !leads.has(last.msg as string)) continue;
        const at = Date.parse(last.time as string);
        if (best === undefined || at > best.at) best = { node, at };
      }
      return best?.node;
    },
    rss(node) {
      const pid = node.process?.process.pid;
      if (pid === undefined || !alive(node)) return undefined;
      const line = readFileSync(`/proc/${pid}/status`, "utf8")
        .split("\n")
        .find((l) => l.startsWith("VmRSS:"));
      return line === undefined ? undefined : Number(line.split(/\s+/)[1]) * 1024;
    },
    async close() {
      await Promise.all(nodes.map((n) => n.process?.stop("SIGKILL")));
      await Promise.all(nodes.flatMap((n) => [n.redisLink.close(), n.workerLink.close()]));
      redis.client.disconnect();
      await redis.stop(true);
    },
  };
}
