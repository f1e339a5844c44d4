// TypeScript, Python and Go workers share one resource at the same time and
// together stay within it: the three clients speak one protocol.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, expect, test } from "vitest";
import { findViolation } from "./support/invariant.js";
import { repoRoot, startServerProcess, type ServerProcess } from "./support/server-process.js";
import { runWorker } from "./support/workers.js";

const python = join(repoRoot, ".tools/venv/bin/python");
const limit = { amount: 60, periodMs: 1000, burst: 6 };
let server: ServerProcess;
let goWorker: string;

beforeAll(async () => {
  if (!existsSync(python)) throw new Error(`${python} is missing: run 'npm test' (scripts/test-all.sh), which installs the Python client`);
  goWorker = join(mkdtempSync(join(tmpdir(), "ratequeue-go-")), "worker");
  execFileSync("go", ["build", "-o", goWorker, "./examples/worker"], { cwd: join(repoRoot, "clients/go"), stdio: "inherit" });
  server = await startServerProcess({
    config: { resources: { mixed: { limits: [{ dimension: "requests", amount: 60, period: "1s", burst: 6 }], concurrency: 4 }, warmup: {} } },
  });
}, 180_000);
afterAll(async () => {
  await server?.stop();
});

/** Runs a process to completion (or until `stopAt`, then SIGTERM) and returns its JSON lines. */
function run(command: string, args: string[], stopAt?: number): Promise<Record<string, unknown>[]> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const timer = stopAt === undefined ? undefined : setTimeout(() => child.kill("SIGTERM"), stopAt - Date.now());
  return new Promise((resolve, reject) =>
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0 || signal === "SIGTERM") resolve(lines);
      else reject(new Error(`${command} exited with ${code ?? signal}`));
    }),
  );
}

test("TypeScript, Python and Go workers together stay within one limit", async () => {
  const startAt = Date.now() + 4000;
  const durationMs = 4000;
  const end = startAt + durationMs;
  const ts = Array.from({ length: 2 }, () =>
    runWorker({ url: server.url, resource: "mixed", warmupResource: "warmup", startAt, durationMs }).then((lines) =>
      lines.filter((l) => l.at !== undefined).map((l) => ({ at: l.at!, lang: "ts" })),
    ),
  );
  const py = Array.from({ length: 2 }, () =>
    run(python, [join(repoRoot, "test/fixtures/python_worker.py"), JSON.stringify({ url: server.url, resource: "mixed", warmup_resource: "warmup", start_at: startAt, duration_ms: durationMs })]).then(
      (lines) => lines.filter((l) => l.at !== undefined).map((l) => ({ at: l.at as number, lang: "python" })),
    ),
  );
  // The Go example worker runs by count: start it at startAt and stop it at the end.
  const go = Array.from({ length: 2 }, async () => {
    await new Promise((r) => setTimeout(r, startAt - Date.now()));
    const lines = await run(goWorker, ["-addr", server.url, "-resource", "mixed", "-count", "100000"], end);
    return lines.map((l) => ({ at: l.grant_ms as number, lang: "go" }));
  });
  const grants = (await Promise.all([...ts, ...py, ...go])).flat();

  expect(findViolation(grants.map((g) => ({ at: g.at, cost: 1 })), limit)).toBeUndefined();
  const inWindow = grants.filter((g) => g.at >= startAt && g.at <= end);
  const byLang = Object.fromEntries(["ts", "python", "go"].map((lang) => [lang, inWindow.filter((g) => g.lang === lang).length]));
  const allowed = limit.burst + (durationMs * limit.amount) / limit.periodMs;
  console.log(`mixed fleet: ${inWindow.length} grants of ${allowed} allowed`, byLang);
  for (const lang of ["ts", "python", "go"]) expect(byLang[lang]).toBeGreaterThan(10);
  expect(inWindow.length).toBeLessThanOrEqual(allowed);
  expect(inWindow.length).toBeGreaterThanOrEqual(0.9 * allowed);
});
