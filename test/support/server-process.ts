// Starts a real `ratequeue serve` process on a free port for a test, and
// stops it. Tests talk to it over real sockets with real clients.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const repoRoot = resolve(import.meta.dirname, "../..");
export const serverMain = join(repoRoot, "server/dist/main.js");

export interface ServerProcess {
  port: number;
  url: string;
  /** The HTTP port (probes, metrics, Connect admin), undefined when off. */
  httpPort: number | undefined;
  /** http://127.0.0.1:<httpPort> */
  httpUrl: string;
  process: ChildProcess;
  /** Every JSON log line the server printed so far. */
  logs: Record<string, unknown>[];
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Writes a config object to a temp file (JSON is valid config). */
export function writeConfig(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "ratequeue-test-"));
  const path = join(dir, "config.json");
  writeFileSync(path, JSON.stringify(config));
  return path;
}

export async function startServerProcess(
  options: {
    config?: unknown;
    args?: string[];
    port?: number;
    /** Where to collect the log lines (default: a new array). */
    logs?: Record<string, unknown>[];
    /** Options of node itself, before the script (e.g. --heapsnapshot-signal). */
    nodeArgs?: string[];
  } = {},
): Promise<ServerProcess> {
  const args = [...(options.nodeArgs ?? []), serverMain, "serve", "--host", "127.0.0.1", "--port", String(options.port ?? 0)];
  if (options.config !== undefined) args.push("--config", writeConfig(options.config));
  args.push(...(options.args ?? []));
  // A free HTTP port too, unless the test picks one: a restart on a fixed --port would otherwise take 7071.
  if (!args.includes("--http-port")) args.push("--http-port", "0");
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const logs = options.logs ?? [];
  const exited = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  let httpPort: number | undefined;
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not log 'listening' within 15 s")), 15_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === "listening") {
        clearTimeout(timer);
        httpPort = typeof entry.httpPort === "number" ? entry.httpPort : undefined;
        resolvePort(entry.port as number);
      }
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    httpPort,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    process: child,
    logs,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
