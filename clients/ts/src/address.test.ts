import { expect, test } from "vitest";
import { parseTargets } from "./address.js";

test.each([
  ["http://h:7070", [{ hostPort: "h:7070", tls: false }]],
  ["https://h:8443", [{ hostPort: "h:8443", tls: true }]],
  ["h:9000", [{ hostPort: "h:9000", tls: false }]],
  ["h", [{ hostPort: "h:7070", tls: false }]],
  ["https://h", [{ hostPort: "h:443", tls: true }]],
  ["http://h1:7070, http://h2:7070,h3:7071", [
    { hostPort: "h1:7070", tls: false },
    { hostPort: "h2:7070", tls: false },
    { hostPort: "h3:7071", tls: false },
  ]],
])("%s", (url, targets) => {
  expect(parseTargets(url)).toEqual(targets);
});

test("an empty url is refused with a hint", () => {
  expect(() => parseTargets(" , ")).toThrow(/names no address/);
});
