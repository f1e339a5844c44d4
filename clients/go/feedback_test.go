package ratequeue_test

// The header parser on the providers' documented examples and on values it
// must ignore, and the default estimate.

import (
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
)

// headers builds a header map as written, without canonicalising the names:
// the parser must match them case-insensitively however they were stored.
func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

func TestParseRateLimitHeaders(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 6, 21, 18, 39, 0, 0, time.UTC)
	perMinute := func(limit, remaining float64, reset time.Duration) ratequeue.DimensionFeedback {
		return ratequeue.DimensionFeedback{Limit: new(limit), Remaining: new(remaining), Reset: new(reset)}
	}
	cases := []struct {
		name   string
		status int
		h      http.Header
		want   ratequeue.Feedback
	}{
		{
			// https://platform.openai.com/docs/guides/rate-limits, "Rate limits in headers".
			name:   "OpenAI's documented example",
			status: 200,
			h: headers(
				"x-ratelimit-limit-requests", "60",
				"x-ratelimit-limit-tokens", "150000",
				"x-ratelimit-remaining-requests", "59",
				"x-ratelimit-remaining-tokens", "149984",
				"x-ratelimit-reset-requests", "1s",
				"x-ratelimit-reset-tokens", "6m0s",
			),
			want: ratequeue.Feedback{
				Requests: perMinute(60, 59, time.Second),
				Load:     perMinute(150000, 149984, 6*time.Minute),
			},
		},
		{
			name:   "OpenAI 429 with canonical names, retry-after-ms winning",
			status: 429,
			h: http.Header{
				"Retry-After":                    {"2"},
				"Retry-After-Ms":                 {"1500.5"},
				"X-Ratelimit-Limit-Requests":     {"500"},
				"X-Ratelimit-Remaining-Requests": {"0"},
				"X-Ratelimit-Reset-Requests":     {"120ms"},
				"X-Ratelimit-Reset-Tokens":       {"1h2m3.5s"},
			},
			want: ratequeue.Feedback{
				Throttled:  true,
				RetryAfter: new(1500*time.Millisecond + 500*time.Microsecond),
				Requests:   perMinute(500, 0, 120*time.Millisecond),
				Load:       ratequeue.DimensionFeedback{Reset: new(time.Hour + 2*time.Minute + 3500*time.Millisecond)},
			},
		},
		{
			name:   "Go-style resets",
			status: 200,
			h: headers(
				"x-ratelimit-reset-requests", "0.5s",
				"x-ratelimit-reset-tokens", "1m30.123s",
			),
			want: ratequeue.Feedback{
				Requests: ratequeue.DimensionFeedback{Reset: new(500 * time.Millisecond)},
				Load:     ratequeue.DimensionFeedback{Reset: new(90*time.Second + 123*time.Millisecond)},
			},
		},
		{
			name:   "microsecond and nanosecond resets",
			status: 200,
			h: headers(
				"X-RateLimit-Reset-Requests", "20ms",
				"x-ratelimit-reset-tokens", "15µs",
				"anthropic-ratelimit-requests-reset", "not a time",
			),
			want: ratequeue.Feedback{
				Requests: ratequeue.DimensionFeedback{Reset: new(20 * time.Millisecond)},
				Load:     ratequeue.DimensionFeedback{Reset: new(15 * time.Microsecond)},
			},
		},
		{
			// https://docs.anthropic.com/en/api/rate-limits, "Response headers".
			name:   "Anthropic's headers",
			status: 200,
			h: headers(
				"anthropic-ratelimit-requests-limit", "50",
				"anthropic-ratelimit-requests-remaining", "49",
				"anthropic-ratelimit-requests-reset", "2024-06-21T18:39:47Z",
				"anthropic-ratelimit-tokens-limit", "100000",
				"anthropic-ratelimit-tokens-remaining", "99000",
				"anthropic-ratelimit-tokens-reset", "2024-06-21T18:39:01.5Z",
				"anthropic-ratelimit-input-tokens-limit", "80000",
				"anthropic-ratelimit-input-tokens-remaining", "79500",
				"anthropic-ratelimit-input-tokens-reset", "2024-06-21T20:39:00+02:00",
				"anthropic-ratelimit-output-tokens-limit", "16000",
				"anthropic-ratelimit-output-tokens-remaining", "15500",
				"anthropic-ratelimit-output-tokens-reset", "2024-06-21T18:38:00Z", // past: 0
			),
			want: ratequeue.Feedback{
				Requests:     perMinute(50, 49, 47*time.Second),
				Load:         perMinute(100000, 99000, 1500*time.Millisecond),
				InputTokens:  perMinute(80000, 79500, 0),
				OutputTokens: perMinute(16000, 15500, 0),
			},
		},
		{
			name:   "Anthropic 429 with retry-after seconds",
			status: 429,
			h: headers(
				"Retry-After", "30",
				"Anthropic-Ratelimit-Requests-Remaining", "0",
			),
			want: ratequeue.Feedback{
				Throttled:  true,
				RetryAfter: new(30 * time.Second),
				Requests:   ratequeue.DimensionFeedback{Remaining: new(0.0)},
			},
		},
		{
			name:   "overloaded 529 without headers",
			status: 529,
			h:      http.Header{},
			want:   ratequeue.Feedback{Throttled: true},
		},
		{
			name:   "503 with decimal retry-after",
			status: 503,
			h:      headers("retry-after", "1.25"),
			want:   ratequeue.Feedback{Throttled: true, RetryAfter: new(1250 * time.Millisecond)},
		},
		{
			name:   "retry-after as an HTTP date",
			status: 429,
			h:      headers("Retry-After", "Fri, 21 Jun 2024 18:39:10 GMT"),
			want:   ratequeue.Feedback{Throttled: true, RetryAfter: new(10 * time.Second)},
		},
		{
			name:   "retry-after as a past HTTP date",
			status: 429,
			h:      headers("Retry-After", "Fri, 21 Jun 2024 18:00:00 GMT"),
			want:   ratequeue.Feedback{Throttled: true, RetryAfter: new(time.Duration(0))},
		},
		{
			name:   "a bad retry-after-ms leaves retry-after",
			status: 429,
			h:      headers("retry-after-ms", "soon", "retry-after", "3"),
			want:   ratequeue.Feedback{Throttled: true, RetryAfter: new(3 * time.Second)},
		},
		{
			name:   "bad values are ignored",
			status: 200,
			h: headers(
				"retry-after", "-5",
				"x-ratelimit-limit-requests", "lots",
				"x-ratelimit-remaining-requests", "-1",
				"x-ratelimit-reset-requests", "-1s",
				"x-ratelimit-limit-tokens", "0",
				"x-ratelimit-remaining-tokens", "NaN",
				"x-ratelimit-reset-tokens", "6 minutes",
				"anthropic-ratelimit-tokens-limit", "Inf",
				"anthropic-ratelimit-tokens-remaining", "0x10",
				"anthropic-ratelimit-tokens-reset", "1s",
				"anthropic-ratelimit-input-tokens-limit", "",
				"anthropic-ratelimit-input-tokens-reset", "2024-06-21",
			),
			want: ratequeue.Feedback{},
		},
		{
			name:   "bad retry-after values are ignored",
			status: 200,
			h:      headers("retry-after-ms", "-1", "retry-after", "tomorrow"),
			want:   ratequeue.Feedback{},
		},
		{
			name:   "429 with nothing else",
			status: 429,
			h:      nil,
			want:   ratequeue.Feedback{Throttled: true},
		},
		{
			name:   "other error statuses are not throttling",
			status: 500,
			h:      headers("retry-after", "1"),
			want:   ratequeue.Feedback{RetryAfter: new(time.Second)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ratequeue.ParseRateLimitHeaders(tc.status, tc.h, now)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseRateLimitHeaders(%d, %v)\n got %s\nwant %s", tc.status, tc.h, show(got), show(tc.want))
			}
		})
	}
}

// show prints a Feedback with its pointers followed.
func show(f ratequeue.Feedback) string {
	dim := func(d ratequeue.DimensionFeedback) string {
		s := "{"
		if d.Limit != nil {
			s += " limit " + fmtFloat(*d.Limit)
		}
		if d.Remaining != nil {
			s += " remaining " + fmtFloat(*d.Remaining)
		}
		if d.Reset != nil {
			s += " reset " + d.Reset.String()
		}
		return s + " }"
	}
	s := "throttled " + map[bool]string{true: "yes", false: "no"}[f.Throttled]
	if f.RetryAfter != nil {
		s += " retry-after " + f.RetryAfter.String()
	}
	return s + " requests " + dim(f.Requests) + " load " + dim(f.Load) + " input " + dim(f.InputTokens) + " output " + dim(f.OutputTokens)
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestDefaultEstimate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want float64
	}{
		{"no body", "", 1},
		{"not JSON", "hello", 1},
		{"OpenAI string content", `{"model":"m","messages":[{"role":"user","content":"12345678"}]}`, 2},
		{"rounded up", `{"messages":[{"role":"user","content":"123456789"}]}`, 3},
		{"OpenAI parts", `{"messages":[{"role":"system","content":"abcd"},{"role":"user","content":[{"type":"text","text":"efgh"},{"type":"image_url","image_url":{"url":"x"}}]}]}`, 2},
		{"characters, not bytes", `{"messages":[{"role":"user","content":"héllo wörld ✓"}]}`, 4},
		{"max_tokens", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":100}`, 101},
		{"max_completion_tokens wins", `{"messages":[{"role":"user","content":"abcd"}],"max_tokens":100,"max_completion_tokens":50}`, 51},
		{"Anthropic system and blocks", `{"system":"abcdefgh","messages":[{"role":"user","content":[{"type":"text","text":"abcd"},{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"abcd"}]}]}],"max_tokens":10}`, 14},
		{"Anthropic system blocks", `{"system":[{"type":"text","text":"abcdefgh"}],"messages":[]}`, 2},
		{"empty prompt", `{"messages":[]}`, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			if got := ratequeue.DefaultEstimate(nil, body); got != tc.want {
				t.Errorf("DefaultEstimate(%s) = %v, want %v", tc.body, got, tc.want)
			}
		})
	}
}
