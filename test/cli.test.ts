// The `ratequeue` command as the README says to run it: `npx ratequeue …`
// from the repository, right after `npm ci`.
import { execFileSync, spawnSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";
import { repoRoot, startServerProcess } from "./support/server-process.js";

test("npm links the committed, executable bin file, which runs the build", () => {
  // npm links no bin whose target is missing at install time, so the target is a committed file.
  const link = readlinkSync(join(repoRoot, "node_modules/.bin/ratequeue"));
  expect(link).toBe("../@ratequeue/server/bin/ratequeue.js");
  const mode = execFileSync("git", ["ls-files", "--stage", "server/bin/ratequeue.js"], { cwd: repoRoot, encoding: "utf8" }).split(" ")[0];
  expect(mode).toBe("100755");
});

test("npx ratequeue help prints the usage and exits 0", () => {
  const run = spawnSync("npx", ["--no-install", "ratequeue", "help"], { cwd: repoRoot, encoding: "utf8" });
  expect(run.stderr).toBe("");
  expect(run.status).toBe(0);
  expect(run.stdout).toMatch(/^Usage: ratequeue serve/);
  const unknown = spawnSync("npx", ["--no-install", "ratequeue", "frobnicate"], { cwd: repoRoot, encoding: "utf8" });
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
});

test("an empty RATEQUEUE_CA_FILE means unset, as in the other clients", async () => {
  const server = await startServerProcess({ config: { resources: { r: {} } } });
  try {
    const env = { ...process.env, RATEQUEUE_URL: server.url, RATEQUEUE_CA_FILE: "" };
    const run = spawnSync("npx", ["--no-install", "ratequeue", "resources", "list"], { cwd: repoRoot, encoding: "utf8", env });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/\br\b/);
  } finally {
    await server.stop();
  }
});
