#!/usr/bin/env node
// The `ratequeue` command.
import { parseArgs } from "node:util";
import { checkTrees, ConfigError, loadConfig, parseDuration } from "./config.js";
import { runAdminCommand } from "./cli/admin-commands.js";
import { runResourceCommand } from "./cli/resource-commands.js";
import { runTop } from "./cli/top.js";
import { securityFlags, securityOptions, securityUsage } from "./cli/serve-flags.js";
import { createLogger, type LogLevel } from "./log.js";
import { startServer, type RunningServer, type ServerOptions } from "./server.js";
import type { GroupOptions } from "./store/index.js";

const usage = `Usage: ratequeue serve [--host H] [--port P] [--config FILE] [--log-level debug|info|warn|error]

  --host       address to listen on (default 127.0.0.1; use 0.0.0.0 for all)
  --port       gRPC port (default 7070; 0 picks a free port)
  --http-port  HTTP port: /metrics, /healthz, /readyz, the AdminService over Connect JSON
               (default 7071; with --port 0 also 0; "off" serves none)
  --metrics-resource-labels on|off
               off: metrics per namespace, not per resource (very many resources; default on)
  --config     YAML or JSON file declaring resources
  --log-level  default info

Running a group (optional; every node gets the same Redis URL and prefix):
  --redis URL           redis://host:6379/0 (or RATEQUEUE_REDIS_URL): durable config, leader
                        election and state snapshots; standbys redirect clients to the leader
  --advertise HOST:PORT the address clients reach this node at (default host:port)
  --redis-prefix P      key prefix (default ratequeue)
  --leader-ttl D        leadership lease (default 3s); failover takes about this long
  --snapshot-every D    how often the leader snapshots its state (default 500ms)
  --redis-loss MODE     stop (default): a leader that cannot reach Redis stops granting before
                        its lease could lapse. continue: it grants on from memory; only for a
                        single node, since two nodes could then both grant`;

const shellUsage = `

Resources (reach the server and authenticate as the keys commands do):
  ratequeue resources apply -f FILE [--prune] [--dry-run]   declare them from a config-shaped file
  ratequeue resources list | get NAME | stats NAME [-o json|yaml]
  ratequeue resources delete NAME
  ratequeue top                 a live view of every resource; q quits
  ratequeue COMMAND --help      a command's own flags`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    console.log(usage + securityUsage + shellUsage);
    return command === undefined ? 2 : 0;
  }
  // These take their own --help.
  if (command === "keys" || command === "namespaces") return runAdminCommand(command, rest);
  if (command === "resources") return runResourceCommand(rest);
  if (command === "top") return runTop(rest);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(usage + securityUsage + shellUsage);
    return 0;
  }
  if (command !== "serve") {
    console.error(`unknown command '${command}'\n\n${usage}`);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "7070" },
      "http-port": { type: "string" },
      "metrics-resource-labels": { type: "string", default: "on" },
      config: { type: "string" },
      "log-level": { type: "string", default: "info" },
      ...securityFlags,
      redis: { type: "string" },
      advertise: { type: "string" },
      "redis-prefix": { type: "string", default: "ratequeue" },
      "leader-ttl": { type: "string", default: "3s" },
      "snapshot-every": { type: "string", default: "500ms" },
      "redis-loss": { type: "string", default: "stop" },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: must be an integer from 0 to 65535, got '${values.port}'`);
    return 2;
  }
  const httpPort = httpPortOf(values["http-port"], port);
  if (typeof httpPort === "string") {
    console.error(httpPort);
    return 2;
  }
  const resourceLabels = values["metrics-resource-labels"];
  if (resourceLabels !== "on" && resourceLabels !== "off") {
    console.error(`--metrics-resource-labels: must be on or off, got '${resourceLabels}'`);
    return 2;
  }
  const level = values["log-level"] as LogLevel;
  if (!["debug", "info", "warn", "error"].includes(level)) {
    console.error(`--log-level: must be debug, info, warn or error, got '${level}'`);
    return 2;
  }
  const log = createLogger(level);
  const server = await serve(values, { port, httpPort, metricsResourceLabels: resourceLabels === "on", log });
  if (server === undefined) return 2;
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info("signal", { signal });
      void server.shutdown().then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}

/**
 * Reads the config file and starts the server; undefined (after saying
 * why) when a flag is wrong. A function of its own so that nothing keeps
 * the file's contents once the engine holds its own copies: a million
 * declared resources would otherwise stay in memory twice while serving.
 */
async function serve(values: Record<string, string | boolean | undefined>, base: Pick<ServerOptions, "port" | "httpPort" | "metricsResourceLabels" | "log">): Promise<RunningServer | undefined> {
  const config = values.config === undefined ? undefined : loadConfig(values.config as string);
  if (config !== undefined) checkTrees(config);
  const security = securityOptions(values, config?.namespaces ?? []);
  if (typeof security === "string") {
    console.error(security);
    return undefined;
  }
  const group = groupOptions(values, base.port);
  if (typeof group === "string") {
    console.error(group);
    return undefined;
  }
  return startServer({ ...security, ...base, host: values.host as string, resources: config?.resources ?? [], group });
}

/** The HTTP port: undefined for "off", or a message saying what is wrong. A free gRPC port (0) makes the default free too. */
function httpPortOf(value: string | undefined, grpcPort: number): number | undefined | string {
  if (value === "off") return undefined;
  if (value === undefined) return grpcPort === 0 ? 0 : 7071;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `--http-port: must be an integer from 0 to 65535, or off, got '${value}'`;
  if (port !== 0 && port === grpcPort) return `--http-port: must differ from --port (${grpcPort})`;
  return port;
}

/** The Redis group flags, undefined without Redis, or a message saying which flag is wrong. */
function groupOptions(values: Record<string, unknown>, port: number): GroupOptions | undefined | string {
  const redisUrl = (values.redis as string | undefined) ?? process.env.RATEQUEUE_REDIS_URL;
  if (redisUrl === undefined || redisUrl === "") return undefined;
  if (!/^rediss?:\/\//.test(redisUrl)) return `--redis: must be a redis:// or rediss:// URL, got '${redisUrl}'`;
  const redisLoss = values["redis-loss"] as string;
  if (redisLoss !== "stop" && redisLoss !== "continue") return `--redis-loss: must be stop or continue, got '${redisLoss}'`;
  if (port === 0 && values.advertise === undefined) return "--advertise: required with --port 0 (standbys must name the leader's real address)";
  const advertise = (values.advertise as string | undefined) ?? `${values.host as string}:${port}`;
  if (!/^[^\s:]+:\d+$|^\[[^\]]+\]:\d+$/.test(advertise)) return `--advertise: must be HOST:PORT, got '${advertise}'`;
  const leaderTtlMs = parseDuration("--leader-ttl", values["leader-ttl"]);
  if (leaderTtlMs < 300) return `--leader-ttl: must be at least 300ms, got '${values["leader-ttl"] as string}'`;
  const snapshotEveryMs = parseDuration("--snapshot-every", values["snapshot-every"]);
  if (snapshotEveryMs < 10) return `--snapshot-every: must be at least 10ms, got '${values["snapshot-every"] as string}'`;
  const prefix = values["redis-prefix"] as string;
  if (!/^[\w.:-]+$/.test(prefix)) return `--redis-prefix: letters, digits, '.', ':', '_' and '-' only, got '${prefix}'`;
  return { redisUrl, prefix, advertise, leaderTtlMs, snapshotEveryMs, redisLoss };
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || (err as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      console.error(`ratequeue: ${(err as Error).message}`);
    } else {
      console.error("ratequeue: failed to start:", err);
    }
    process.exit(1);
  },
);
