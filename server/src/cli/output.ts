// How the CLI prints what it read: an aligned table for people by default,
// JSON or YAML (--output) for scripts.
import { Document, isMap, isScalar, isSeq, visit } from "yaml";

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
  process.stdout.write(format === "json" ? JSON.stringify(value, null, 2) + "\n" : toYaml(value));
}

/**
 * YAML as the README writes config: a mapping or list of plain values on
 * one line (`- { dimension: requests, amount: 500, period: 60s, burst: 20 }`),
 * everything else in blocks.
 */
function toYaml(value: unknown): string {
  const doc = new Document(value);
  visit(doc, {
    Collection(_, node, path) {
      const items = isMap(node) ? node.items.map((pair) => pair.value) : isSeq(node) ? node.items : [];
      if (path.length > 1 && items.every((item) => isScalar(item))) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0 });
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
