// The layers of server/src import one another in one direction only: no
// module imports itself through others, and neither does a folder (core,
// auth, rpc, ...; a top-level file counts as a folder of its own). The core
// imports nothing but itself.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

type Graph = Map<string, Set<string>>;

/** A cycle of `graph` as [a, b, ..., a], or undefined when there is none. */
function findCycle(graph: Graph): string[] | undefined {
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    const start = path.indexOf(node);
    if (start >= 0) return [...path.slice(start), node];
    if (done.has(node)) return undefined;
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle !== undefined) return cycle;
    }
    path.pop();
    done.add(node);
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

const src = dirname(fileURLToPath(import.meta.url));
const files = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts")).map((f) => f.split("\\").join("/"));

const clause = String.raw`(?:type\s+)?(?:\{[^}]*\}|\*(?:\s+as\s+\w+)?|\w+(?:\s*,\s*\{[^}]*\})?)\s*from\s*`;
const statement = new RegExp(String.raw`^\s*(?:import|export)\s+(?:${clause})?"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)`, "gm");

/** Every import specifier of a file: `import ... from "x"`, `export ... from "x"`, `import "x"`, `import("x")`. */
function specifiers(file: string): string[] {
  return [...readFileSync(join(src, file), "utf8").matchAll(statement)].map((m) => (m[1] ?? m[2])!);
}

/** The file (relative to src) that a relative specifier of `file` names. */
const target = (file: string, spec: string) => relative(src, resolve(src, dirname(file), spec.replace(/\.js$/, ".ts"))).split("\\").join("/");
const folderOf = (file: string) => file.split("/")[0]!;

/** Which files each file imports. */
const fileGraph: Graph = new Map(files.map((file) => [file, new Set(specifiers(file).filter((spec) => spec.startsWith(".")).map((spec) => target(file, spec)))]));

/** Which folders each folder imports: an edge wherever a file imports a file of another folder. */
const folderGraph: Graph = new Map();
for (const [file, imports] of fileGraph) {
  const from = folderOf(file);
  const to = folderGraph.get(from) ?? new Set();
  for (const imported of imports) if (folderOf(imported) !== from) to.add(folderOf(imported));
  folderGraph.set(from, to);
}

const graphOf = (edgeList: Record<string, string[]>): Graph => new Map(Object.entries(edgeList).map(([k, v]) => [k, new Set(v)]));

describe("findCycle", () => {
  it("finds a cycle, a self-import, and none in a graph without one", () => {
    expect(findCycle(graphOf({ a: ["b"], b: ["c"], c: ["a"], d: ["a"] }))).toEqual(["a", "b", "c", "a"]);
    expect(findCycle(graphOf({ a: ["b"], b: ["b"] }))).toEqual(["b", "b"]);
    expect(findCycle(graphOf({ a: ["b", "c"], b: ["c"], c: [], d: ["a", "c"] }))).toBeUndefined();
  });
});

describe("server/src imports", () => {
  it("form no cycle between files", () => {
    expect(fileGraph.get("server.ts")).toContain("core/index.ts"); // the parser sees imports at all
    expect(findCycle(fileGraph)).toBeUndefined();
  });

  it("form no cycle between folders", () => {
    expect(folderGraph.get("rpc")).toContain("core");
    expect(findCycle(folderGraph)).toBeUndefined();
  });

  it("leave the core pure: core/ imports only core/", () => {
    const outside = files
      .filter((file) => folderOf(file) === "core")
      .flatMap((file) => specifiers(file).filter((spec) => !spec.startsWith(".") || folderOf(target(file, spec)) !== "core").map((spec) => `${file}: ${spec}`));
    expect(outside.filter((line) => !/\.test\.ts: (vitest|fast-check)$/.test(line))).toEqual([]);
  });
});
