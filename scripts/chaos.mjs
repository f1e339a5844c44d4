#!/usr/bin/env node
// npm run chaos -- [--minutes M] [--seed S]: a long chaos run (test/chaos/soak.ts).
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { minutes: { type: "string", default: "30" }, seed: { type: "string" } } });
if (!(Number(values.minutes) > 0)) {
  console.error(`--minutes: must be a number above 0, got '${values.minutes}'`);
  process.exit(2);
}
if (values.seed !== undefined && !Number.isInteger(Number(values.seed))) {
  console.error(`--seed: must be an integer, got '${values.seed}'`);
  process.exit(2);
}
const env = { ...process.env, CHAOS_MINUTES: values.minutes, ...(values.seed !== undefined && { CHAOS_SEED: values.seed }) };
const run = spawnSync("npx", ["vitest", "run", "--config", "test/chaos/soak.config.ts"], { stdio: "inherit", env });
process.exit(run.status ?? 1);
