#!/usr/bin/env node
// The `ratequeue` command.
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger, type LogLevel } from "./log.js";
import { startServer } from "./server.js";

const usage = `Usage: ratequeue serve [--host H] [--port P] [--config FILE] [--log-level debug|info|warn|error]

  --host       address to listen on (default 127.0.0.1; use 0.0.0.0 for all)
  --port       gRPC port (default 7070; 0 picks a free port)
  --config     YAML or JSON file declaring resources
  --log-level  default info`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    console.log(usage);
    return command === undefined ? 2 : 0;
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
      config: { type: "string" },
      "log-level": { type: "string", default: "info" },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: must be an integer from 0 to 65535, got '${values.port}'`);
    return 2;
  }
  const level = values["log-level"] as LogLevel;
  if (!["debug", "info", "warn", "error"].includes(level)) {
    console.error(`--log-level: must be debug, info, warn or error, got '${level}'`);
    return 2;
  }
  const log = createLogger(level);
  const resources = values.config === undefined ? [] : loadConfig(values.config).resources;
  const server = await startServer({ host: values.host, port, resources, log });
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
