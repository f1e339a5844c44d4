import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "./server-process.js";

export interface WorkerLine {
  at?: number;
  start?: number;
  stop?: number;
  load?: number;
  resource?: string;
  error?: string;
  message?: string;
  ready?: boolean;
  done?: boolean;
  errors?: number;
}

/** Runs one Node worker process (a file of test/fixtures/, by default worker.mjs) to completion. */
export function runWorker(options: Record<string, unknown>, fixture = "worker.mjs"): Promise<WorkerLine[]> {
  const child = spawn(process.execPath, [join(repoRoot, "test/fixtures", fixture), JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: WorkerLine[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => lines.push(JSON.parse(line) as WorkerLine));
  return new Promise((resolve, reject) =>
    child.once("exit", (code) => (code === 0 ? resolve(lines) : reject(new Error(`worker exited with ${code}`)))),
  );
}
