// Vitest global setup: integration tests start server/dist and the clients'
// builds, so build first (tsc -b is incremental: a no-op when up to date).
// Running one test file after an edit therefore always tests the edit.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "./server-process.js";

export default function build(): void {
  execFileSync(process.execPath, [join(repoRoot, "node_modules/typescript/bin/tsc"), "-b", join(repoRoot, "tsconfig.json")], {
    cwd: repoRoot,
    stdio: "inherit",
  });
}
