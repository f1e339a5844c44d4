// wrapFetch against a real server and the fake provider, driven by the
// official `openai` and `@anthropic-ai/sdk` packages: a fleet whose provider
// allows less than ratequeue is configured for stops collecting 429s after
// the first second and still reaches the provider's limit, while the same
// fleet without feedback keeps being refused. Also the wrapper's edges: a
// fetch that throws, a stream cancelled half-read, a throttled release
// refunded, and client.report outside a lease.
import Anthropic from "@anthropic-ai/sdk";
import { createAdminClient, createClient, estimateTokens, wrapFetch, type RateQueueClient, type ResourceStats } from "@ratequeue/client";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startFakeProvider, type FakeProvider } from "./support/fake-provider.js";
import { startProxy } from "./support/redis.js";
import { startServerProcess, type ServerProcess } from "./support/server-process.js";

const openaiLimit = { rpm: 600 }; // the provider's: 10 requests a second
const anthropicLimit = { tpm: 30_000 }; // the provider's: 500 tokens a second
const config = {
  resources: {
    // Twice what the provider allows: the configured limit is a guess that is too high.
    "openai-fb": { limits: [{ dimension: "requests", amount: 1200, period: "60s", burst: 20 }, { dimension: "load", amount: 10_000_000, period: "60s" }] },
    "openai-control": { limits: [{ dimension: "requests", amount: 1200, period: "60s", burst: 20 }, { dimension: "load", amount: 10_000_000, period: "60s" }] },
    "anthropic-fb": { limits: [{ dimension: "load", amount: 60_000, period: "60s", burst: 1000 }] },
    "anthropic-control": { limits: [{ dimension: "load", amount: 60_000, period: "60s", burst: 1000 }] },
    edges: { limits: [{ dimension: "load", amount: 60_000, period: "60s", burst: 1000 }] },
  },
};



let server: ServerProcess;
beforeAll(async () => {
  server = await startServerProcess({ config });
});
afterAll(async () => {
  await server.stop();
});

async function resourceStats(name: string): Promise<ResourceStats> {
  const admin = createAdminClient({ url: server.url });
  try {
    return await admin.getResourceStats(name);
  } finally {
    admin.close();
  }
}

/** One call of a fleet's worker: its SDK, its call number (even: JSON, odd: streamed). */
type Call = (i: number) => Promise<void>;

/**
 * Runs `workers` workers, each with its own ratequeue client (its own
 * session) and `loops` calls in flight, until `durationMs` has passed; then
 * waits for every started call. Returns the calls that failed.
 */
async function runFleet(workers: number, loops: number, durationMs: number, makeCall: (rq: RateQueueClient) => Call): Promise<{ done: number; failed: unknown[] }> {
  const clients = Array.from({ length: workers }, () => createClient({ url: server.url }));
  const end = Date.now() + durationMs;
  let done = 0;
  const failed: unknown[] = [];
  await Promise.all(
    clients.flatMap((rq) => {
      const call = makeCall(rq);
      return Array.from({ length: loops }, async (_, loop) => {
        for (let i = loop; Date.now() < end; i += loops) {
          try {
            await call(i);
            done++;
          } catch (err) {
            failed.push(err);
          }
        }
      });
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  return { done, failed };
}

/** The provider's log judged after the first second, up to the end of the run. */
function judge(stats: ProviderStats, durationMs: number) {
  const after = stats.log.filter((e) => e.t >= 1000);
  const inWindow = after.filter((e) => e.t < durationMs && e.status === 200);
  const seconds = (durationMs - 1000) / 1000;
  return {
    throttledShare: after.filter((e) => e.status === 429).length / Math.max(1, after.length),
    okPerSecond: inWindow.length / seconds,
    tokensPerSecond: inWindow.reduce((n, e) => n + e.tokens, 0) / seconds,
    okTokens: stats.log.filter((e) => e.status === 200).reduce((n, e) => n + e.tokens, 0),
  };
}

const prompt = (i: number) => `Task ${String(i).padStart(4, "0")}: ${"say something short about rate limits. ".repeat(4)}`;

describe("a fleet through the official SDKs, behind a provider that allows less than configured", () => {
  let openaiProvider: FakeProvider;
  let anthropicProvider: FakeProvider;
  beforeAll(async () => {
    [openaiProvider, anthropicProvider] = await Promise.all([
      startFakeProvider(["--rpm", String(openaiLimit.rpm), "--style", "openai", "--latency-ms", "30"]),
      startFakeProvider(["--rpm", "100000", "--tpm", String(anthropicLimit.tpm), "--style", "anthropic", "--latency-ms", "30"]),
    ]);
  });
  afterAll(async () => {
    await Promise.all([openaiProvider?.stop(), anthropicProvider?.stop()]);
  });

  /** OpenAI chat completions, JSON and streamed with usage; the default estimate (the prompt's characters / 4). */
  const openaiCall = (resource: string, feedback: boolean) => (rq: RateQueueClient) => {
    const openai = new OpenAI({ apiKey: "sk-test", baseURL: `${openaiProvider.url}/v1`, maxRetries: 50, fetch: wrapFetch(rq, { resource, feedback }) });
    return async (i: number) => {
      const messages = [{ role: "user" as const, content: prompt(i) }];
      if (i % 2 === 0) {
        const completion = await openai.chat.completions.create({ model: "gpt-fake", messages });
        expect(completion.usage?.total_tokens).toBeGreaterThan(0);
      } else {
        const stream = await openai.chat.completions.create({ model: "gpt-fake", messages, stream: true, stream_options: { include_usage: true } });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
        expect(text).toContain("fake completion");
      }
    };
  };

  /**
   * Anthropic messages, JSON and streamed. The estimate is deliberately high
   * (100 tokens for a call of about 65): only reconciling the actual tokens
   * lets the fleet reach the provider's token limit.
   */
  const anthropicCall = (resource: string, feedback: boolean) => (rq: RateQueueClient) => {
    const anthropic = new Anthropic({ apiKey: "sk-ant-test", baseURL: anthropicProvider.url, maxRetries: 50, fetch: wrapFetch(rq, { resource, feedback, estimate: () => 100 }) });
    return async (i: number) => {
      // max_tokens equal to the fake completion's 15 tokens: the provider charges what usage reports.
      const request = { model: "claude-fake", max_tokens: 15, messages: [{ role: "user" as const, content: prompt(i) }] };
      if (i % 2 === 0) {
        const message = await anthropic.messages.create(request);
        expect(message.usage.output_tokens).toBe(15);
      } else {
        const stream = await anthropic.messages.create({ ...request, stream: true });
        let text = "";
        for await (const event of stream) if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
        expect(text).toContain("fake completion");
      }
    };
  };

  test("openai: with feedback the 429s stop after the first second and the fleet runs at the provider's request limit", async () => {
    const durationMs = 10_000;
    await openaiProvider.reset();
    const fleet = await runFleet(4, 3, durationMs, openaiCall("openai-fb", true));
    const provider = await openaiProvider.stats();
    const figures = judge(provider, durationMs);
    const stats = await resourceStats("openai-fb");
    console.log(`openai with feedback: ${fleet.done} calls, ${provider.throttled} 429s (${(100 * figures.throttledShare).toFixed(1)} % after 1 s), ${figures.okPerSecond.toFixed(2)} ok/s of ${openaiLimit.rpm / 60}`);

    expect(fleet.failed).toEqual([]);
    expect(figures.throttledShare).toBeLessThanOrEqual(0.02);
    expect(figures.okPerSecond).toBeGreaterThanOrEqual(0.9 * (openaiLimit.rpm / 60));
    // Every HTTP request, the SDK's retries included, took a lease, and every lease was released.
    expect(stats.grants).toBe(provider.calls);
    expect(stats.leasesInFlight).toBe(0);
    expect(stats.throttles).toBe(provider.throttled);
    // The provider's x-ratelimit-limit-requests taught the requests limit its real amount.
    expect(stats.limits[0]!.learnedAmount).toBe(openaiLimit.rpm);
    // The estimate was the prompt alone; usage added the completion: the load limit was charged what the provider counted.
    expect(stats.limits[1]!.usedLastPeriod).toBeCloseTo(figures.okTokens, 0);
  });

  test("openai control: without feedback the same fleet keeps being refused", async () => {
    const durationMs = 6000;
    await openaiProvider.reset();
    const fleet = await runFleet(4, 3, durationMs, openaiCall("openai-control", false));
    const provider = await openaiProvider.stats();
    const figures = judge(provider, durationMs);
    const stats = await resourceStats("openai-control");
    console.log(`openai without feedback: ${fleet.done} calls, ${provider.throttled} 429s (${(100 * figures.throttledShare).toFixed(1)} % after 1 s), ${figures.okPerSecond.toFixed(2)} ok/s`);

    expect(figures.throttledShare).toBeGreaterThan(0.2);
    expect(stats.throttles).toBe(0);
    expect(stats.limits[0]!.learnedAmount).toBeUndefined();
  });

  test("anthropic: with feedback the 429s stop after the first second and the fleet runs at the provider's token limit", async () => {
    const durationMs = 10_000;
    await anthropicProvider.reset();
    const fleet = await runFleet(4, 3, durationMs, anthropicCall("anthropic-fb", true));
    const provider = await anthropicProvider.stats();
    const figures = judge(provider, durationMs);
    const stats = await resourceStats("anthropic-fb");
    console.log(
      `anthropic with feedback: ${fleet.done} calls, ${provider.throttled} 429s (${(100 * figures.throttledShare).toFixed(1)} % after 1 s), ${figures.tokensPerSecond.toFixed(0)} tokens/s of ${anthropicLimit.tpm / 60}`,
    );

    expect(fleet.failed).toEqual([]);
    expect(figures.throttledShare).toBeLessThanOrEqual(0.02);
    expect(figures.tokensPerSecond).toBeGreaterThanOrEqual(0.9 * (anthropicLimit.tpm / 60));
    expect(stats.grants).toBe(provider.calls);
    expect(stats.leasesInFlight).toBe(0);
    expect(stats.throttles).toBe(provider.throttled);
    expect(stats.limits[0]!.learnedAmount).toBe(anthropicLimit.tpm);
    // Charged 100 a call at acquire, reconciled to usage (message_start's input plus message_delta's output for streams).
    expect(stats.limits[0]!.usedLastPeriod).toBeCloseTo(figures.okTokens, 0);
    expect(stats.limits[0]!.usedLastPeriod).toBeLessThan(0.8 * 100 * provider.ok);
  });

  test("anthropic control: without feedback the same fleet keeps being refused", async () => {
    const durationMs = 6000;
    await anthropicProvider.reset();
    const fleet = await runFleet(4, 3, durationMs, anthropicCall("anthropic-control", false));
    const provider = await anthropicProvider.stats();
    const figures = judge(provider, durationMs);
    const stats = await resourceStats("anthropic-control");
    console.log(`anthropic without feedback: ${fleet.done} calls, ${provider.throttled} 429s (${(100 * figures.throttledShare).toFixed(1)} % after 1 s), ${figures.tokensPerSecond.toFixed(0)} tokens/s`);

    expect(figures.throttledShare).toBeGreaterThan(0.2);
    expect(stats.throttles).toBe(0);
  });
});

describe("the wrapper's edges, with a stub fetch", () => {
  const usage = { prompt_tokens: 30, completion_tokens: 12, total_tokens: 42 };
  const sse = (events: unknown[]) => events.map((e) => `data: ${typeof e === "string" ? e : JSON.stringify(e)}\n\n`).join("");
  const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(400) }], max_tokens: 20 }); // estimate 120
  const post = { method: "POST", headers: { "content-type": "application/json" }, body };
  const used = async () => (await resourceStats("edges")).limits[0]!.usedLastPeriod;
  let rq: RateQueueClient;
  beforeAll(() => {
    rq = createClient({ url: server.url });
  });
  afterAll(async () => {
    await rq.close();
  });

  test("the default estimate: prompt characters / 4 plus max tokens, at least 1", () => {
    expect(estimateTokens(JSON.parse(body))).toBe(120);
    expect(estimateTokens({ system: [{ type: "text", text: "abcd" }], messages: [{ role: "user", content: [{ type: "text", text: "abcdefgh" }, { type: "image" }] }], max_completion_tokens: 7 })).toBe(10);
    expect(estimateTokens({ system: "é".repeat(8), messages: [] })).toBe(2);
    expect(estimateTokens({})).toBe(1);
    expect(estimateTokens("not an object")).toBe(1);
  });

  test("a JSON answer reconciles to usage.total_tokens; a custom estimate gets the parsed body", async () => {
    const before = await used();
    const bodies: unknown[] = [];
    const f = wrapFetch(rq, {
      resource: "edges",
      estimate: (b) => (bodies.push(b), 77),
      fetch: async () => new Response(JSON.stringify({ usage }), { headers: { "content-type": "application/json" } }),
    });
    expect(await (await f("http://provider/v1/chat/completions", post)).json()).toEqual({ usage });
    expect(bodies).toEqual([JSON.parse(body)]);
    await expect.poll(used).toBe(before + 42);
    expect((await resourceStats("edges")).leasesInFlight).toBe(0);
  });

  test("a fetch that throws releases the lease (the estimate stays charged) and rethrows", async () => {
    const before = await used();
    const f = wrapFetch(rq, {
      resource: "edges",
      fetch: async () => {
        throw new TypeError("fetch failed");
      },
    });
    await expect(f("http://provider/v1/chat/completions", post)).rejects.toThrow("fetch failed");
    await expect.poll(async () => (await resourceStats("edges")).leasesInFlight).toBe(0);
    expect(await used()).toBe(before + 120);
  });

  test("a stream cancelled half-read releases with the usage seen so far; one read to the end releases at its end", async () => {
    const chunks = [sse([{ choices: [{ delta: { content: "a" } }], usage: null }]), sse([{ choices: [], usage }]), sse(["[DONE]"])];
    const streamOf = (pieces: string[], hold: boolean) =>
      new ReadableStream<Uint8Array>({
        start(c) {
          for (const p of pieces) c.enqueue(new TextEncoder().encode(p));
          if (!hold) c.close();
        },
      });
    let hold = true;
    const f = wrapFetch(rq, {
      resource: "edges",
      fetch: async () => new Response(streamOf(hold ? chunks.slice(0, 2) : chunks, hold), { headers: { "content-type": "text/event-stream" } }),
    });

    const before = await used();
    const held = await f("http://provider/v1/chat/completions", post);
    const reader = held.body!.getReader();
    await reader.read();
    await reader.read(); // the usage chunk; the stream stays open
    expect((await resourceStats("edges")).leasesInFlight).toBe(1);
    await reader.cancel();
    await expect.poll(async () => (await resourceStats("edges")).leasesInFlight).toBe(0);
    expect(await used()).toBe(before + 42);

    hold = false;
    const whole = await f("http://provider/v1/chat/completions", post);
    expect(whole.headers.get("content-type")).toBe("text/event-stream");
    expect(await whole.text()).toBe(chunks.join(""));
    await expect.poll(used).toBe(before + 84);
  });

  test("a 429 releases at once, throttled and refunded, and pauses the resource; a 529 too", async () => {
    const before = await used();
    let status = 429;
    const f = wrapFetch(rq, {
      resource: "edges",
      fetch: async () => new Response('{"error":{}}', { status, headers: { "content-type": "application/json", "retry-after-ms": "400" } }),
    });
    const started = Date.now();
    expect((await f("http://provider/v1/chat/completions", post)).status).toBe(429);
    await expect.poll(async () => (await resourceStats("edges")).throttles).toBe(1);
    const stats = await resourceStats("edges");
    expect(stats.pausedUntil!.getTime()).toBeGreaterThan(started + 300);
    expect(stats.limits[0]!.usedLastPeriod).toBe(before);
    // The next call waits for the pause.
    status = 529;
    expect((await f("http://provider/v1/chat/completions", post)).status).toBe(529);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    await expect.poll(async () => (await resourceStats("edges")).throttles).toBe(2);
    expect(await used()).toBe(before);
  });

  test("withLease observes an SDK error carrying the provider's 429: the resource pauses, the load is refunded", async () => {
    const before = await resourceStats("edges");
    const refused = Object.assign(new Error("429 Rate limit reached"), { status: 429, headers: new Headers({ "retry-after-ms": "300" }) });
    const started = Date.now();
    await expect(
      rq.withLease("edges", { load: 40 }, () => {
        throw refused;
      }),
    ).rejects.toBe(refused);
    const after = await resourceStats("edges");
    expect(after.throttles).toBe(before.throttles + 1);
    expect(after.pausedUntil!.getTime()).toBeGreaterThanOrEqual(started + 250);
    expect(after.limits[0]!.usedLastPeriod).toBe(before.limits[0]!.usedLastPeriod);
  });

  test("lease.report and lease.observe go with the release; client.report pauses without a lease", async () => {
    const lease = await rq.acquire("edges", { load: 50 });
    lease.observe(new Headers({ "x-ratelimit-limit-tokens": "600", "x-ratelimit-remaining-tokens": "500" }), 200);
    lease.report({ load: { limit: 500 } });
    expect(() => lease.report({ retryAfterMs: -1 })).toThrow(/feedback\.retryAfterMs/);
    expect(await lease.release()).toBe("released");
    const stats = await resourceStats("edges");
    expect(stats.limits[0]!.learnedAmount).toBe(500);

    const started = Date.now();
    const until = await rq.report("edges", { throttled: true, retryAfterMs: 600 });
    expect(until!.getTime()).toBeGreaterThanOrEqual(started + 500);
    expect((await resourceStats("edges")).pausedUntil?.getTime()).toBe(until!.getTime());
    await expect(rq.report("edges", { retryAfterMs: Number.NaN })).rejects.toThrow(/feedback\.retryAfterMs/);
    expect(await rq.report("edges", {})).toEqual(until);
  });

  test("a report unanswered when the stream breaks is sent again on the next one; with no working stream it fails after the reconnect timeout", async () => {
    // Through a proxy that holds every byte while cut, and drops the connections on reset.
    const proxy = await startProxy(server.port);
    const c = createClient({ url: `127.0.0.1:${proxy.port}`, reconnectTimeoutMs: 1500 });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      await c.report("edges", {}); // the stream works
      proxy.cut();
      const again = c.report("edges", { load: { remaining: 900 } });
      await sleep(200);
      proxy.reset();
      proxy.heal();
      await again; // answered on the next stream

      proxy.cut();
      const started = Date.now();
      const lost = c.report("edges", { load: { remaining: 900 } }).then(
        () => "answered",
        (err: Error) => err.message,
      );
      await sleep(200);
      proxy.reset(); // sent again on a new stream, which never works
      expect(await lost).toMatch(/^no ratequeue server reachable for 1500 ms/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    } finally {
      proxy.heal();
      await c.close();
      await proxy.close();
    }
  });

});
