// How the CLI prints what it read: an aligned table for people by default,
// JSON or YAML (--output) for scripts.
import { toConfigYaml } from "../config.js";

/** What --output may ask for; "table" is the default. */
export type OutputFormat = "table" | "json" | "yaml";

/** The --output value as a format, or a message saying what is wrong. */
export function outputFormatOf(value: string | undefined): OutputFormat | { error: string } {
  if (value === undefined) return "table";
  if (value === "json" || value === "yaml") return value;
  return { error: `--output: must be json or yaml, got '${value}'` };
}

/** Prints plain data (no bigints, no undefined) as JSON or YAML. */
export function printData(value: unknown, format: "json" | "yaml"): void {
  process.stdout.write(format === "json" ? JSON.stringify(value, null, 2) + "\n" : toConfigYaml(value));
}

/** Prints rows under a header, each column as wide as its widest cell. */
export function printTable(header: string[], rows: string[][]): void {
  for (const line of tableLines(header, rows)) console.log(line);
}

/** The lines printTable prints. */
export function tableLines(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
}
