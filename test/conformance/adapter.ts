// Starts a client's conformance adapter and talks to it (protocol: README.md).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "../support/server-process.js";

export type Language = "ts" | "python" | "go";

/** An adapter's answer: `ok` and the command's fields, or the client's failure. */
export type Answer = { ok: true; [field: string]: unknown } | { ok: false; code: string; message: string; elapsedMs?: number };

let goBinary: string | undefined;

/** The command that runs the language's adapter; builds the Go one once per process. */
function command(language: Language): [string, string[]] {
  switch (language) {
    case "ts":
      return [process.execPath, [join(repoRoot, "test/conformance/adapters/ts.mjs")]];
    case "python":
      return [join(repoRoot, ".tools/venv/bin/python"), [join(repoRoot, "test/conformance/adapters/python_adapter.py")]];
    case "go":
      if (goBinary === undefined) {
        const out = join(mkdtempSync(join(tmpdir(), "ratequeue-conformance-")), "adapter");
        execFileSync("go", ["build", "-o", out, "./internal/conformance"], { cwd: join(repoRoot, "clients/go"), stdio: "inherit" });
        goBinary = out;
      }
      return [goBinary, []];
  }
}

export class Adapter {
  private nextId = 1;
  private readonly waiting = new Map<number, (answer: Answer) => void>();
  private exited = false;

  private constructor(
    readonly language: Language,
    private readonly child: ChildProcess,
  ) {}

  /** Starts the adapter and waits for its ready line. */
  static async start(language: Language): Promise<Adapter> {
    const [file, args] = command(language);
    // A clean environment: the adapter must not pick up a RATEQUEUE_* setting of the test run.
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("RATEQUEUE_")));
    const child = spawn(file, args, { cwd: repoRoot, env, stdio: ["pipe", "pipe", "inherit"] });
    const adapter = new Adapter(language, child);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the ${language} adapter printed no ready line within 20 s`)), 20_000);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const message = JSON.parse(line) as { ready?: boolean; id?: number } & Answer;
        if (message.ready === true) {
          clearTimeout(timer);
          resolve();
          return;
        }
        const settle = adapter.waiting.get(message.id!);
        adapter.waiting.delete(message.id!);
        settle?.(message);
      });
      child.once("exit", (code) => {
        adapter.exited = true;
        clearTimeout(timer);
        reject(new Error(`the ${language} adapter exited with ${code}`));
        for (const settle of adapter.waiting.values()) settle({ ok: false, code: "ADAPTER_EXITED", message: `exit code ${code}` });
        adapter.waiting.clear();
      });
    });
    await ready;
    return adapter;
  }

  /** Sends a command; `answer` resolves with the adapter's answer. `id` names it for `cancel`. */
  send(cmd: string, fields: Record<string, unknown> = {}): { id: number; answer: Promise<Answer> } {
    if (this.exited) throw new Error(`the ${this.language} adapter has exited`);
    const id = this.nextId++;
    const answer = new Promise<Answer>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin!.write(JSON.stringify({ id, cmd, ...fields }) + "\n");
    return { id, answer };
  }

  /** Sends a command and waits for its answer. */
  call(cmd: string, fields: Record<string, unknown> = {}): Promise<Answer> {
    return this.send(cmd, fields).answer;
  }

  /** Sends a command that must succeed and returns its answer. */
  async ok(cmd: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const answer = await this.call(cmd, fields);
    if (!answer.ok) throw new Error(`${this.language} ${cmd} ${JSON.stringify(fields).slice(0, 200)} failed: ${answer.code}: ${answer.message}`);
    return answer;
  }

  /** Kills the adapter process at once (SIGKILL), as a worker dies, and waits for the exit. */
  async kill(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGKILL");
    await exited;
  }

  /** Closes stdin (the adapter closes its clients and exits) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
