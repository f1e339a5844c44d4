// The fake LLM provider (test/fixtures/fake-provider.mjs) that the feedback
// tests and the demo run against: over real HTTP, its answers have the shapes
// the official SDKs parse (and the real openai and anthropic Python packages
// do parse them), its buckets refuse with 429 and the documented headers,
// every answer carries the headers of its style, and /stats and /reset work.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { startFakeProvider, type FakeProvider } from "./support/fake-provider.js";
import { repoRoot } from "./support/server-process.js";

const python = join(repoRoot, ".tools/venv/bin/python");
const prompt = "x".repeat(40); // 10 tokens at 4 characters a token
const completion = "This is a fake completion from the ratequeue test provider."; // 59 characters: 15 tokens
const goDuration = /^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$/;
const rfc3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;


/** The parsed `data:` payloads of an OpenAI stream, "[DONE]" as a string. */
function openaiEvents(text: string): unknown[] {
  const blocks = text.split("\n\n");
  expect(blocks.pop()).toBe(""); // every event ends with a blank line
  return blocks.map((block) => {
    expect(block).toMatch(/^data: /);
    const data = block.slice("data: ".length);
    return data === "[DONE]" ? data : JSON.parse(data);
  });
}

/** The events of an Anthropic stream, each `event: X\ndata: {"type":"X",...}`. */
function anthropicEvents(text: string): { type: string; [key: string]: unknown }[] {
  const blocks = text.split("\n\n");
  expect(blocks.pop()).toBe("");
  return blocks.map((block) => {
    const match = /^event: (\w+)\ndata: (.*)$/.exec(block);
    expect(match, block).not.toBeNull();
    const data = JSON.parse(match![2]!) as { type: string };
    expect(data.type).toBe(match![1]);
    return data;
  });
}

describe("OpenAI style", () => {
  let provider: FakeProvider;
  beforeAll(async () => {
    provider = await startFakeProvider(["--rpm", "1200", "--tpm", "60000", "--style", "openai"]); // buckets of 20 requests and 1000 tokens
  });
  afterAll(() => provider.stop());
  beforeEach(() => provider.reset());

  test("a JSON answer is a chat.completion with usage, and the x-ratelimit headers after its charge", async () => {
    const res = await provider.post("/v1/chat/completions", { model: "gpt-test", messages: [{ role: "system", content: [{ type: "text", text: prompt.slice(0, 20) }] }, { role: "user", content: prompt.slice(20) }] });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      id: expect.stringMatching(/^chatcmpl-/),
      object: "chat.completion",
      model: "gpt-test",
      created: expect.any(Number),
      choices: [{ index: 0, message: { role: "assistant", content: completion }, finish_reason: "stop" }],
      usage: { prompt_tokens: 10, completion_tokens: 15, total_tokens: 25 },
    });
    const h = res.headers;
    expect([h.get("x-ratelimit-limit-requests"), h.get("x-ratelimit-remaining-requests")]).toEqual(["1200", "19"]);
    expect([h.get("x-ratelimit-limit-tokens"), h.get("x-ratelimit-remaining-tokens")]).toEqual(["60000", "975"]);
    // One request refills in 50 ms, 25 tokens in 25 ms.
    expect(h.get("x-ratelimit-reset-requests")).toMatch(/^(50|49)ms$/);
    expect(h.get("x-ratelimit-reset-tokens")).toMatch(/^(25|24)ms$/);
  });

  test("a stream is chat.completion.chunk data lines, then the usage chunk with no choices, then [DONE]", async () => {
    const res = await provider.post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }], stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("x-ratelimit-remaining-requests")).toBe("19");
    const events = openaiEvents(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1) as { object: string; choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[]; usage: unknown }[];
    for (const chunk of chunks) expect(chunk).toMatchObject({ id: expect.stringMatching(/^chatcmpl-/), object: "chat.completion.chunk" });
    const usageChunk = chunks.pop()!;
    expect(usageChunk).toMatchObject({ choices: [], usage: { prompt_tokens: 10, completion_tokens: 15, total_tokens: 25 } });
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(chunks.map((c) => c.choices[0]!.delta.content ?? "").join("")).toBe(completion);
    expect(chunks.map((c) => c.choices[0]!.finish_reason)).toEqual([...Array(chunks.length - 1).fill(null), "stop"]);
    expect(chunks.every((c) => c.usage === null)).toBe(true);

    // Without include_usage: no usage chunk and no usage key.
    const plain = openaiEvents(await (await provider.post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }], stream: true })).text());
    expect(plain.at(-1)).toBe("[DONE]");
    expect(plain.slice(0, -1).every((c) => (c as { choices: unknown[] }).choices.length === 1 && !("usage" in (c as object)))).toBe(true);
  });

  test("max_tokens cuts the completion, and a larger max_tokens is what the token bucket is charged", async () => {
    const cut = await (await provider.post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }], max_tokens: 5 })).json();
    expect(cut).toMatchObject({ choices: [{ message: { content: completion.slice(0, 20) }, finish_reason: "length" }], usage: { completion_tokens: 5, total_tokens: 15 } });
    const big = await provider.post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }], max_completion_tokens: 100 });
    expect((await big.json()).usage).toEqual({ prompt_tokens: 10, completion_tokens: 15, total_tokens: 25 });
    // 1000 - 15 - 110, plus what refilled (1 token a millisecond) between the two calls.
    expect(Number(big.headers.get("x-ratelimit-remaining-tokens"))).toBeGreaterThanOrEqual(875);
    expect(Number(big.headers.get("x-ratelimit-remaining-tokens"))).toBeLessThan(900);
    expect((await provider.stats()).log.map((e) => e.tokens)).toEqual([15, 110]);
  });

  test("resets of long windows print like Go durations", async () => {
    const slow = await startFakeProvider(["--rpm", "1", "--tpm", "150000", "--burst-seconds", "360"]);
    try {
      const res = await slow.post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }] });
      expect(res.headers.get("x-ratelimit-reset-requests")).toBe("1m0s"); // one request of 6 refills in a minute
      expect(res.headers.get("x-ratelimit-reset-tokens")).toBe("10ms");
      expect(res.headers.get("x-ratelimit-remaining-requests")).toBe("5");
    } finally {
      await slow.stop();
    }
  });
});

describe("OpenAI style over budget", () => {
  test("over the request bucket: 429 with retry-after, retry-after-ms, the headers and OpenAI's error; admitted again after the wait", async () => {
    const provider = await startFakeProvider(["--rpm", "60"]); // a bucket of 1 request, refilled at 1 a second
    try {
      const body = { messages: [{ role: "user", content: prompt }] };
      const first = await provider.post("/v1/chat/completions", body);
      expect([first.status, first.headers.get("x-ratelimit-reset-requests")]).toEqual([200, "1s"]);
      const refused = await provider.post("/v1/chat/completions", body);
      expect(refused.status).toBe(429);
      expect(await refused.json()).toEqual({ error: { message: expect.stringContaining("requests"), type: "requests", param: null, code: "rate_limit_exceeded" } });
      const waitMs = Number(refused.headers.get("retry-after-ms"));
      expect(waitMs).toBeGreaterThan(200); // the second call came well within the second
      expect(waitMs).toBeLessThanOrEqual(1000);
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(refused.headers.get("x-ratelimit-limit-requests")).toBe("60");
      expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0");
      expect(refused.headers.get("x-ratelimit-reset-requests")).toMatch(goDuration);
      expect(refused.headers.get("x-ratelimit-limit-tokens")).toBeNull(); // no --tpm
      await new Promise((r) => setTimeout(r, waitMs));
      expect((await provider.post("/v1/chat/completions", body)).status).toBe(200);

      const stats = await provider.stats();
      expect(stats).toMatchObject({ calls: 3, ok: 2, throttled: 1, overloaded: 0 });
      expect(stats.log.map((e) => [e.status, e.tokens])).toEqual([[200, 25], [429, 0], [200, 25]]);
      expect(stats.log[2]!.t - stats.log[1]!.t).toBeGreaterThanOrEqual(waitMs - 5);

      // /reset: empty stats and full buckets, as if just started.
      await provider.reset();
      expect(await provider.stats()).toEqual({ calls: 0, ok: 0, throttled: 0, overloaded: 0, log: [] });
      expect((await provider.post("/v1/chat/completions", body)).status).toBe(200);
    } finally {
      await provider.stop();
    }
  });

  test("over the token bucket: 429 of type tokens, waiting for the tokens this request needs", async () => {
    const provider = await startFakeProvider(["--rpm", "6000", "--tpm", "3000"]); // 50 tokens, refilled at 50 a second
    try {
      const body = { messages: [{ role: "user", content: prompt }] }; // 25 tokens
      expect((await provider.post("/v1/chat/completions", body)).status).toBe(200);
      expect((await provider.post("/v1/chat/completions", body)).status).toBe(200);
      const refused = await provider.post("/v1/chat/completions", body);
      expect(refused.status).toBe(429);
      expect((await refused.json()).error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded" });
      const waitMs = Number(refused.headers.get("retry-after-ms"));
      expect(waitMs).toBeGreaterThan(100);
      expect(waitMs).toBeLessThanOrEqual(500); // 25 tokens at 50 a second
      expect(refused.headers.get("x-ratelimit-remaining-tokens")).toMatch(/^\d+$/);
      expect(Number(refused.headers.get("x-ratelimit-remaining-requests"))).toBeGreaterThan(90); // the refusal charged nothing
      expect((await provider.stats()).log.map((e) => e.tokens)).toEqual([25, 25, 0]);
    } finally {
      await provider.stop();
    }
  });

  test("--overloaded-every 2: every second call is a 529 that charges nothing", async () => {
    const provider = await startFakeProvider(["--rpm", "1200", "--overloaded-every", "2"]);
    try {
      const body = { messages: [{ role: "user", content: prompt }] };
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await provider.post("/v1/chat/completions", body)).status);
      expect(statuses).toEqual([200, 529, 200, 529]);
      expect((await provider.post("/v1/messages", body)).status).toBe(200);
      const last = await provider.post("/v1/messages", body);
      expect(last.status).toBe(529);
      expect(await last.json()).toEqual({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } });
      expect(Number(last.headers.get("x-ratelimit-remaining-requests"))).toBeGreaterThanOrEqual(17); // 3 charged of 20
      expect(await provider.stats()).toMatchObject({ calls: 6, ok: 3, throttled: 0, overloaded: 3 });
    } finally {
      await provider.stop();
    }
  });

  test("--latency-ms delays a JSON answer; a stream sends its headers at once and spreads its chunks over the latency", async () => {
    const provider = await startFakeProvider(["--rpm", "1200", "--latency-ms", "300"]);
    try {
      const body = { messages: [{ role: "user", content: prompt }] };
      let start = Date.now();
      await (await provider.post("/v1/chat/completions", body)).json();
      expect(Date.now() - start).toBeGreaterThanOrEqual(295);

      start = Date.now();
      const res = await provider.post("/v1/chat/completions", { ...body, stream: true });
      const headersAt = Date.now() - start;
      const arrivals: number[] = [];
      for await (const _ of res.body!) arrivals.push(Date.now() - start);
      expect(headersAt).toBeLessThan(150);
      expect(arrivals[0]!).toBeLessThan(150);
      expect(arrivals.at(-1)!).toBeGreaterThanOrEqual(280);
      expect(arrivals.length).toBeGreaterThan(3);
    } finally {
      await provider.stop();
    }
  });
});

describe("Anthropic style", () => {
  let provider: FakeProvider;
  const before = Date.now();
  beforeAll(async () => {
    provider = await startFakeProvider(["--rpm", "1200", "--tpm", "60000", "--itpm", "30000", "--otpm", "12000", "--style", "anthropic"]);
  });
  afterAll(() => provider.stop());
  beforeEach(() => provider.reset());

  /** Checks the anthropic-ratelimit-<name>-limit|remaining|reset headers. */
  function expectLimit(h: Headers, name: string, limit: number, remaining: number, maxResetMs: number): void {
    expect([h.get(`anthropic-ratelimit-${name}-limit`), h.get(`anthropic-ratelimit-${name}-remaining`)]).toEqual([String(limit), String(remaining)]);
    const reset = h.get(`anthropic-ratelimit-${name}-reset`)!;
    expect(reset).toMatch(rfc3339);
    expect(Date.parse(reset)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(reset)).toBeLessThanOrEqual(Date.now() + maxResetMs);
  }

  test("a JSON answer is a message with text content, usage and stop_reason, and all four groups of headers", async () => {
    const res = await provider.post("/v1/messages", { model: "claude-test", max_tokens: 15, system: prompt.slice(0, 8), messages: [{ role: "user", content: [{ type: "text", text: prompt.slice(8) }] }] });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      id: expect.stringMatching(/^msg_/),
      type: "message",
      role: "assistant",
      model: "claude-test",
      content: [{ type: "text", text: completion }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: { input_tokens: 10, output_tokens: 15 },
    });
    // Buckets of 20 requests, 1000 tokens, 500 input and 200 output tokens, each refilled in a second.
    expectLimit(res.headers, "requests", 1200, 19, 50);
    expectLimit(res.headers, "tokens", 60000, 975, 25);
    expectLimit(res.headers, "input-tokens", 30000, 490, 20);
    expectLimit(res.headers, "output-tokens", 12000, 185, 75);
    expect(res.headers.get("x-ratelimit-limit-requests")).toBeNull();
  });

  test("a stream is message_start, content_block_start|delta|stop, message_delta with the output tokens, message_stop", async () => {
    const res = await provider.post("/v1/messages", { max_tokens: 100, messages: [{ role: "user", content: prompt }], stream: true });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expectLimit(res.headers, "output-tokens", 12000, 100, 500);
    const events = anthropicEvents(await res.text());
    const types = events.map((e) => e.type);
    expect(types.slice(0, 2)).toEqual(["message_start", "content_block_start"]);
    expect(types.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    expect(new Set(types.slice(2, -3))).toEqual(new Set(["content_block_delta"]));
    expect(events[0]).toMatchObject({ message: { id: expect.stringMatching(/^msg_/), type: "message", role: "assistant", content: [], usage: { input_tokens: 10 } } });
    expect(events[1]).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    const deltas = events.slice(2, -3) as unknown as { delta: { type: string; text: string } }[];
    expect(deltas.every((e) => e.delta.type === "text_delta")).toBe(true);
    expect(deltas.map((e) => e.delta.text).join("")).toBe(completion);
    expect(events.at(-2)).toEqual({ type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 15 } });
  });

  test("both endpoints answer on either style; the headers are the style's", async () => {
    const res = await provider.post("/v1/chat/completions", { messages: [{ role: "user", content: prompt }] });
    expect((await res.json()).object).toBe("chat.completion");
    expect(res.headers.get("anthropic-ratelimit-requests-remaining")).toBe("19");
  });

  test("over budget: 429 with Anthropic's error body, retry-after, retry-after-ms and the headers", async () => {
    const small = await startFakeProvider(["--rpm", "60", "--style", "anthropic"]);
    try {
      const body = { max_tokens: 10, messages: [{ role: "user", content: prompt }] };
      expect((await small.post("/v1/messages", body)).status).toBe(200);
      const refused = await small.post("/v1/messages", body);
      expect(refused.status).toBe(429);
      expect(await refused.json()).toEqual({ type: "error", error: { type: "rate_limit_error", message: expect.stringContaining("requests") } });
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(Number(refused.headers.get("retry-after-ms"))).toBeGreaterThan(200);
      expectLimit(refused.headers, "requests", 60, 0, 1000);
      expect(refused.headers.get("anthropic-ratelimit-tokens-limit")).toBeNull(); // no --tpm
    } finally {
      await small.stop();
    }
  });
});

// What the official SDKs make of it: the real openai and anthropic Python packages of the venv.
const sdkScript = `
import json, sys, openai, anthropic
url, style = sys.argv[1], sys.argv[2]
out = {}
if style == "openai":
    c = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "${prompt}"}])
    out["json"] = {"text": r.choices[0].message.content, "usage": [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens]}
    text, usage = "", None
    for ch in c.chat.completions.create(model="m", messages=[{"role": "user", "content": "${prompt}"}], stream=True, stream_options={"include_usage": True}):
        text += ch.choices[0].delta.content or "" if ch.choices else ""
        usage = [ch.usage.prompt_tokens, ch.usage.completion_tokens, ch.usage.total_tokens] if ch.usage else usage
    out["stream"] = {"text": text, "usage": usage}
    try:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError as e:
        out["error"] = {"status": e.status_code, "code": e.code, "retry_after": e.response.headers.get("retry-after")}
else:
    c = anthropic.Anthropic(base_url=url, api_key="sk-ant-test", max_retries=0)
    r = c.messages.create(model="m", max_tokens=100, system="${prompt.slice(0, 8)}", messages=[{"role": "user", "content": "${prompt.slice(8)}"}])
    out["json"] = {"text": r.content[0].text, "usage": [r.usage.input_tokens, r.usage.output_tokens], "stop": r.stop_reason}
    with c.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "${prompt}"}]) as s:
        text = "".join(s.text_stream)
        m = s.get_final_message()
    out["stream"] = {"text": text, "usage": [m.usage.input_tokens, m.usage.output_tokens], "stop": m.stop_reason}
    try:
        c.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    except anthropic.RateLimitError as e:
        out["error"] = {"status": e.status_code, "code": e.body["error"]["type"], "retry_after": e.response.headers.get("retry-after")}
print(json.dumps(out))
`;

describe("the official SDKs", () => {
  beforeAll(() => {
    if (!existsSync(python)) throw new Error(`${python} is missing: run 'npm test' (scripts/test-all.sh), which installs the Python client`);
  });

  for (const style of ["openai", "anthropic"] as const) {
    test(`the ${style} Python package reads the JSON answer, the stream's text and usage, and the 429 as RateLimitError`, async () => {
      const provider = await startFakeProvider(["--rpm", "60", "--burst-seconds", "2", "--style", style]); // 2 calls, then 429
      try {
        const out = JSON.parse(execFileSync(python, ["-c", sdkScript, provider.url, style], { encoding: "utf8" }));
        const usage = style === "openai" ? [10, 15, 25] : [10, 15];
        expect(out.json).toMatchObject({ text: completion, usage });
        expect(out.stream).toMatchObject({ text: completion, usage });
        if (style === "anthropic") expect([out.json.stop, out.stream.stop]).toEqual(["end_turn", "end_turn"]);
        expect(out.error).toEqual({ status: 429, code: style === "openai" ? "rate_limit_exceeded" : "rate_limit_error", retry_after: "1" });
      } finally {
        await provider.stop();
      }
    });
  }
});
