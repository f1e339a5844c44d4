// The chaos run of the test command: 60 seconds, as two runs of fixed seeds,
// judged by the referee. `npm run chaos` runs a long soak (chaos-soak.ts).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";
import { repoRoot } from "../support/server-process.js";
import { runChaos } from "./run.js";

test.each([11, 29])("seed %i: 30 s of faults under a saturating fleet in three languages, and the referee finds nothing", async (seed) => {
  const { summary, violations, events } = await runChaos({ seed, durationMs: 30_000, log: (line) => console.log(line) });
  console.log(JSON.stringify(summary));
  if (violations.length > 0) {
    // The whole history, for whoever investigates (the seed replays the schedule).
    const dir = join(repoRoot, ".tools/chaos");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `seed-${seed}.jsonl`), events.map((e) => JSON.stringify(e)).join("\n") + "\n");
    console.log(`history written to .tools/chaos/seed-${seed}.jsonl`);
  }
  expect(violations).toEqual([]);
  // The run did what it claims: faults, grants on every resource, and some of each outcome it judges.
  expect(Object.values(summary.faults).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
  for (const r of ["rps", "tokens", "capped", "laned"]) expect(summary.grants[r]).toBeGreaterThan(0);
}, 180_000);
