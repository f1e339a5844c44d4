// The README's TypeScript code is checked against the real client API, so
// the quickstart cannot drift from what the package exports.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";
import { repoRoot } from "./support/server-process.js";

test("every ts block of the README type-checks against @ratequeue/client", () => {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks.length).toBeGreaterThan(0);
  // Under test/ so that "@ratequeue/client" resolves from the workspace.
  const dir = join(repoRoot, "test", ".readme-check");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    // What the snippets take from the reader's own program.
    const prelude = [
      "declare const openai: { chat: { completions: { create(req: object): Promise<{ usage?: { total_tokens: number } }> } } };",
      "declare function callProvider(): Promise<string>;",
      "export {};",
    ].join("\n");
    blocks.forEach((code, i) => writeFileSync(join(dir, `block-${i}.ts`), `${prelude}\n${code}`));
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({ extends: "../../tsconfig.base.json", compilerOptions: { noEmit: true, composite: false, declaration: false }, include: ["*.ts"] }),
    );
    execFileSync(process.execPath, [join(repoRoot, "node_modules/typescript/bin/tsc"), "-p", dir], { stdio: "pipe" });
  } catch (err) {
    throw new Error(`README ts blocks do not type-check:\n${(err as { stdout?: Buffer }).stdout?.toString() ?? err}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
