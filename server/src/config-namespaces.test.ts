import { describe, expect, test } from "vitest";
import { ConfigError, parseConfig } from "./config.js";

describe("config namespaces", () => {
  test("top-level resources are default's; namespaced ones are qualified for the engine", () => {
    const c = parseConfig({ resources: { r: {} }, namespaces: { "team-a": { resources: { r: { concurrency: 2 } } }, "team-b": {} } });
    expect(c.resources.map((r) => r.name)).toEqual(["r", "team-a@r"]);
    expect(c.namespaces).toEqual(["team-a", "team-b"]);
  });

  test("bad namespace names and keys name the key", () => {
    expect(() => parseConfig({ namespaces: { "Team A": {} } })).toThrow(/namespaces.Team A/);
    expect(() => parseConfig({ namespaces: { a: { resourcez: {} } } })).toThrow(ConfigError);
    expect(() => parseConfig({ namespaces: { a: { resources: { "bad name": {} } } } })).toThrow(/namespaces.a.resources.bad name/);
    expect(() => parseConfig({ resources: { r: {} }, namespaces: { default: { resources: { r: {} } } } })).toThrow(/declared twice/);
  });
});
