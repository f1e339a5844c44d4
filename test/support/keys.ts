import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Writes a root key to a temp file for --root-key-file. */
export function rootKeyFile(key: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "ratequeue-key-")), "root.key");
  writeFileSync(file, key + "\n");
  return file;
}
