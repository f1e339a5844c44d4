// A server process's memory read as an operator would: its /metrics, and
// its live heap after a heap snapshot (node's --heapsnapshot-signal, which
// collects garbage first).
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerProcess } from "./server-process.js";

/** Where a server writes its heap snapshots: pass `nodeArgs` to startServerProcess, `remove()` once done. */
export function heapSnapshots(): { dir: string; nodeArgs: string[]; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "ratequeue-heap-"));
  return {
    dir,
    nodeArgs: ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${dir}`],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The value of an unlabelled metric in the server's /metrics. */
export async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (match === null) throw new Error(`no ${name} in /metrics`);
  return Number(match[1]);
}

/** The server's live heap, bytes: it writes a heap snapshot into `dir` (collecting garbage first), then says its heap in use. */
export async function liveHeapBytes(server: ServerProcess, dir: string): Promise<number> {
  const before = readdirSync(dir).length;
  server.process.kill("SIGUSR2");
  for (let i = 0; i < 600 && readdirSync(dir).length === before; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  // The snapshot blocks the server's thread: /metrics answers once it is written.
  return metric(server, "nodejs_heap_size_used_bytes");
}
