import { durationMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { checkFeedback, feedbackToMessage, mergeFeedback, parseRateLimitHeaders } from "./feedback.js";

const now = Date.parse("2024-06-21T18:39:17Z");

describe("OpenAI headers", () => {
  // The example of https://platform.openai.com/docs/guides/rate-limits ("Rate limits in headers").
  const documented = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
  };
  const expected = {
    requests: { limit: 60, remaining: 59, resetMs: 1000 },
    load: { limit: 150000, remaining: 149984, resetMs: 360_000 },
  };

  test("the documented example", () => {
    expect(parseRateLimitHeaders(documented, 200, now)).toEqual(expected);
  });

  test("a Headers, entries, and names in any case read the same", () => {
    expect(parseRateLimitHeaders(new Headers(documented), 200, now)).toEqual(expected);
    expect(parseRateLimitHeaders(Object.entries(documented), undefined, now)).toEqual(expected);
    const shouting = Object.entries(documented).map(([k, v]) => [k.toUpperCase(), v] as const);
    expect(parseRateLimitHeaders(Object.fromEntries(shouting), 200, now)).toEqual(expected);
    expect(parseRateLimitHeaders(new Map(shouting), undefined, now)).toEqual(expected);
    expect(parseRateLimitHeaders(new Headers(shouting), undefined, now)).toEqual(expected);
    // Node's IncomingHttpHeaders: a repeated header is an array, the first counts.
    expect(parseRateLimitHeaders({ "X-RateLimit-Remaining-Requests": ["59", "58"] }, 200, now)).toEqual({ requests: { remaining: 59 } });
  });

  test.each([
    ["1s", 1000],
    ["6m0s", 360_000],
    ["120ms", 120],
    ["20ms", 20],
    ["0.5s", 500],
    [".5s", 500],
    ["1h2m3.5s", 3_723_500],
    ["1m30.123s", 90_123],
    ["2h", 7_200_000],
    ["1.5us", 0.0015],
    ["500µs", 0.5],
    ["500μs", 0.5],
    ["250000ns", 0.25],
    ["1m0.5ms", 60_000.5],
    ["0s", 0],
    ["0", 0],
  ])("reset %s is %d ms", (reset, ms) => {
    const got = parseRateLimitHeaders({ "x-ratelimit-reset-tokens": reset }, undefined, now).load?.resetMs;
    expect(got).toBeCloseTo(ms, 9);
  });

  test.each(["1 s", "5", "1d", "s", "-1s", "1.2.3s", "1sm", "ms", "1S", "6m0", "", "P1S", "1e3s", "Infinity"])("reset %j is ignored", (reset) => {
    expect(parseRateLimitHeaders({ "x-ratelimit-reset-requests": reset, "x-ratelimit-limit-requests": "60" }, undefined, now)).toEqual({
      requests: { limit: 60 },
    });
  });
});

describe("Anthropic headers", () => {
  // The headers of https://docs.anthropic.com/en/api/rate-limits ("Response headers"): resets in RFC 3339.
  const documented = {
    "retry-after": "30",
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "0",
    "anthropic-ratelimit-requests-reset": "2024-06-21T18:39:47Z",
    "anthropic-ratelimit-tokens-limit": "100000",
    "anthropic-ratelimit-tokens-remaining": "98000",
    "anthropic-ratelimit-tokens-reset": "2024-06-21T18:39:18.5Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "79000",
    "anthropic-ratelimit-input-tokens-reset": "2024-06-21T18:39:18Z",
    "anthropic-ratelimit-output-tokens-limit": "20000",
    "anthropic-ratelimit-output-tokens-remaining": "19000",
    "anthropic-ratelimit-output-tokens-reset": "2024-06-21T20:39:27+02:00",
  };

  test("a 429 with every documented header", () => {
    expect(parseRateLimitHeaders(new Headers(documented), 429, now)).toEqual({
      throttled: true,
      retryAfterMs: 30_000,
      requests: { limit: 50, remaining: 0, resetMs: 30_000 },
      load: { limit: 100_000, remaining: 98_000, resetMs: 1500 },
      inputTokens: { limit: 80_000, remaining: 79_000, resetMs: 1000 },
      outputTokens: { limit: 20_000, remaining: 19_000, resetMs: 10_000 },
    });
  });

  test("a reset in the past counts as now; fractions of a second are kept", () => {
    const got = parseRateLimitHeaders(
      { "anthropic-ratelimit-requests-reset": "2024-06-21T18:39:00Z", "anthropic-ratelimit-tokens-reset": "2024-06-21T18:39:17.123456Z" },
      200,
      now,
    );
    expect(got).toEqual({ requests: { resetMs: 0 }, load: { resetMs: 123 } });
  });

  test.each(["tomorrow", "2024-13-01T00:00:00Z", "2024-06-21", "2024-06-21T18:39:47", "1s", "30", "2024-06-21T25:00:00Z", "Fri, 21 Jun 2024 18:39:47 GMT"])(
    "reset %j is ignored",
    (reset) => {
      expect(parseRateLimitHeaders({ "anthropic-ratelimit-tokens-reset": reset, "anthropic-ratelimit-tokens-remaining": "5" }, 200, now)).toEqual({
        load: { remaining: 5 },
      });
    },
  );
});

describe("throttled and retry-after", () => {
  test.each([
    [429, true],
    [503, true],
    [529, true],
    [200, false],
    [500, false],
    [400, false],
  ])("status %d: throttled %s", (status, throttled) => {
    expect(parseRateLimitHeaders({}, status, now).throttled ?? false).toBe(throttled);
  });

  test("no status, no headers: nothing", () => {
    expect(parseRateLimitHeaders({}, undefined, now)).toEqual({});
  });

  test.each([
    [{ "retry-after": "20" }, 20_000],
    [{ "retry-after": "1.5" }, 1500],
    [{ "retry-after": "0" }, 0],
    [{ "retry-after-ms": "1234.5", "retry-after": "2" }, 1234.5],
    [{ "Retry-After-Ms": "abc", "retry-after": "2" }, 2000],
    [{ "retry-after": "Fri, 21 Jun 2024 18:39:27 GMT" }, 10_000],
    [{ "retry-after": "Friday, 21-Jun-24 18:39:27 GMT" }, 10_000],
    [{ "retry-after": "Fri, 21 Jun 2024 18:00:00 GMT" }, 0],
  ])("%j waits %d ms", (headers, ms) => {
    expect(parseRateLimitHeaders(headers, 429, now)).toEqual({ throttled: true, retryAfterMs: ms });
  });

  test.each(["soon", "-5", "", "1e3", "Infinity", "NaN", "5 seconds", "0x10", "Fri, 32 Jun 2024 99:00:00 GMT"])("retry-after %j is ignored", (value) => {
    expect(parseRateLimitHeaders({ "retry-after": value, "retry-after-ms": value }, 429, now)).toEqual({ throttled: true });
  });
});

describe("bad values are ignored, never thrown", () => {
  test.each(["abc", "-1", "1e3", "", " ", "NaN", "Infinity", "60 requests", "1,000", "+5", "0x3c"])("limit and remaining %j", (value) => {
    const headers = {
      "x-ratelimit-limit-requests": value,
      "x-ratelimit-remaining-requests": value,
      "anthropic-ratelimit-output-tokens-limit": value,
      "anthropic-ratelimit-output-tokens-remaining": value,
      "x-ratelimit-remaining-tokens": "7",
    };
    expect(parseRateLimitHeaders(headers, 200, now)).toEqual({ load: { remaining: 7 } });
  });

  test("values that are not strings, and entries that are not pairs", () => {
    expect(parseRateLimitHeaders({ "x-ratelimit-limit-requests": 60, "x-ratelimit-remaining-requests": null, "retry-after": undefined }, 200, now)).toEqual({
      requests: { limit: 60 },
    });
    expect(parseRateLimitHeaders([["x-ratelimit-limit-tokens", "9"], "junk" as unknown as [string, string]], 200, now)).toEqual({ load: { limit: 9 } });
  });

  test("surrounding whitespace is trimmed", () => {
    expect(parseRateLimitHeaders({ "x-ratelimit-limit-requests": " 60 ", "x-ratelimit-reset-requests": "\t1s " }, 200, now)).toEqual({
      requests: { limit: 60, resetMs: 1000 },
    });
  });
});

describe("pending feedback", () => {
  test("throttled stays true; later values replace earlier ones, field by field", () => {
    const pending = mergeFeedback({}, { throttled: true, retryAfterMs: 2000, load: { limit: 100, remaining: 50 } });
    mergeFeedback(pending, { throttled: false, load: { remaining: 10, resetMs: 5 }, requests: { remaining: 1 } });
    expect(pending).toEqual({ throttled: true, retryAfterMs: 2000, load: { limit: 100, remaining: 10, resetMs: 5 }, requests: { remaining: 1 } });
  });

  test("the message: durations to the nanosecond, limit_period unset unless given", () => {
    const m = feedbackToMessage({ throttled: true, retryAfterMs: 1234.5, requests: { limit: 60, resetMs: 1000 }, load: { remaining: 5, limitPeriodMs: 3_600_000 } });
    expect(m.throttled).toBe(true);
    expect(m.retryAfter).toMatchObject({ seconds: 1n, nanos: 234_500_000 });
    expect(m.requests?.limit).toBe(60);
    expect(m.requests?.remaining).toBeUndefined();
    expect(m.requests?.limitPeriod).toBeUndefined();
    expect(durationMs(m.requests!.reset!)).toBe(1000);
    expect(durationMs(m.load!.limitPeriod!)).toBe(3_600_000);
    expect(m.inputTokens).toBeUndefined();
  });

  test("feedback that cannot be encoded is refused naming the field", () => {
    expect(() => checkFeedback({ retryAfterMs: -1 })).toThrow(/^feedback\.retryAfterMs: must be a finite number >= 0/);
    expect(() => checkFeedback({ load: { remaining: Number.NaN } })).toThrow(/^feedback\.load\.remaining:/);
    expect(() => checkFeedback({ requests: { limitPeriodMs: 0 } })).toThrow(/^feedback\.requests\.limitPeriodMs: must be a finite number > 0/);
    expect(() => checkFeedback({ throttled: "yes" as unknown as boolean })).toThrow(/^feedback\.throttled:/);
    expect(() => checkFeedback({ throttled: true, retryAfterMs: 0, inputTokens: { limit: 0 } })).not.toThrow();
  });
});
