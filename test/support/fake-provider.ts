// Starts the fake LLM provider (test/fixtures/fake-provider.mjs) as a child
// process, for the tests of provider feedback.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "./server-process.js";

/** What GET /stats answers. */
export interface ProviderStats {
  calls: number;
  ok: number;
  throttled: number;
  overloaded: number;
  log: { t: number; status: number; tokens: number }[];
}

export interface FakeProvider {
  /** http://127.0.0.1:<port> */
  url: string;
  /** POSTs a JSON body to a path of the provider (with both providers' auth headers, which it ignores). */
  post(path: string, body: unknown): Promise<Response>;
  stats(): Promise<ProviderStats>;
  /** Empties the stats and refills the buckets. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a provider with the fixture's flags (`--rpm`, `--tpm`, `--style`, ...). */
export async function startFakeProvider(args: string[]): Promise<FakeProvider> {
  const child = spawn(process.execPath, [join(repoRoot, "test/fixtures/fake-provider.mjs"), ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", (line) => resolve((JSON.parse(line) as { url: string }).url));
    void exited.then(() => reject(new Error("fake provider exited before listening")));
  });
  const post = (path: string, body: unknown) =>
    fetch(url + path, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-test", "x-api-key": "sk-ant-test" },
      body: JSON.stringify(body),
    });
  return {
    url,
    post,
    stats: async () => (await fetch(`${url}/stats`)).json() as Promise<ProviderStats>,
    reset: async () => void (await post("/reset", {})).body?.cancel(),
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
