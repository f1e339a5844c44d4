#!/usr/bin/env node
// The `ratequeue` command: runs the compiled server (../dist/main.js). In a
// source checkout it first builds what is missing or older than its sources,
// so `npx ratequeue …` works right after `npm ci`. An installed package ships
// dist/ and no sources, and runs it as it is.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const serverDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const repoRoot = join(serverDir, "..");
const main = join(serverDir, "dist", "main.js");
// The packages the server is built from, each with src/ and dist/.tsbuildinfo.
const packages = [serverDir, join(repoRoot, "clients", "ts"), join(repoRoot, "proto", "ts")];

/** The newest modification time of the .ts files under dir (0 when none). */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function stale() {
  if (!existsSync(main)) return true;
  return packages.some((dir) => {
    const src = join(dir, "src");
    if (!existsSync(src)) return false;
    const info = join(dir, "dist", ".tsbuildinfo");
    return !existsSync(info) || newestSource(src) > statSync(info).mtimeMs;
  });
}

if (existsSync(join(serverDir, "src")) && stale()) {
  const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
  if (!existsSync(tsc)) {
    console.error("ratequeue: server/dist is missing and TypeScript is not installed to build it; run 'npm ci' in the repository first");
    process.exit(1);
  }
  console.error("ratequeue: building the server (npm run build)…");
  const built = spawnSync(process.execPath, [tsc, "-b", join(repoRoot, "tsconfig.json")], { stdio: ["ignore", 2, 2] });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
await import(pathToFileURL(main).href);
