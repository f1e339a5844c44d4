package ratequeue

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
)

// Feedback is what the upstream provider said about one call: that it
// refused it, and what its rate-limit headers said. The server uses it to
// pause the whole resource after a refusal and to keep the resource's
// budget within the provider's; feedback only ever lowers what the resource
// admits. ParseRateLimitHeaders reads it from a response; nil fields were
// not given. Optional values are pointers: new(59.0) or new(2*time.Second)
// sets one.
type Feedback struct {
	// Throttled: the provider refused the call for its rate (HTTP 429) or
	// because it is overloaded (503, 529). The resource pauses, fleet-wide,
	// for RetryAfter, else for its cooldown (1 s by default, doubling on
	// further refusals up to 60 s), and a lease released throttled without
	// ActualLoad has its load refunded.
	Throttled bool
	// RetryAfter is how long the provider asked callers to wait
	// (retry-after-ms, retry-after); the server pauses at most an hour.
	RetryAfter *time.Duration
	// Requests is the provider's request budget (x-ratelimit-*-requests,
	// anthropic-ratelimit-requests-*); it applies to the requests limits.
	Requests DimensionFeedback
	// Load is the provider's token budget (x-ratelimit-*-tokens,
	// anthropic-ratelimit-tokens-*); it applies to the load limits that
	// declare no unit or unit "tokens".
	Load DimensionFeedback
	// InputTokens and OutputTokens are Anthropic's separate budgets
	// (anthropic-ratelimit-input-tokens-*, -output-tokens-*); they apply to
	// the load limits with unit "input_tokens" and "output_tokens".
	InputTokens, OutputTokens DimensionFeedback
}

// DimensionFeedback is what the provider's headers said about one budget.
type DimensionFeedback struct {
	// Limit is the provider's limit per LimitPeriod. Lower than the
	// configured amount, it becomes the limit's effective amount while the
	// resource learns limits (learn_limits, the default).
	Limit *float64
	// LimitPeriod is the period of Limit; 0 means a minute, as both OpenAI
	// and Anthropic give their limits.
	LimitPeriod time.Duration
	// Remaining is what the provider had left after counting the call: the
	// limit's available budget is lowered to at most this, minus what was
	// granted after the call (in flight, so not yet counted).
	Remaining *float64
	// Reset is how long until the provider's budget is full again
	// (informational).
	Reset *time.Duration
}

// IsZero reports whether d says nothing.
func (d DimensionFeedback) IsZero() bool {
	return d.Limit == nil && d.Remaining == nil && d.Reset == nil
}

// IsZero reports whether f says nothing.
func (f Feedback) IsZero() bool {
	return !f.Throttled && f.RetryAfter == nil && f.Requests.IsZero() && f.Load.IsZero() &&
		f.InputTokens.IsZero() && f.OutputTokens.IsZero()
}

// merge returns f updated by later: Throttled stays once true, and every
// value later gives replaces f's.
func (f Feedback) merge(later Feedback) Feedback {
	f.Throttled = f.Throttled || later.Throttled
	if later.RetryAfter != nil {
		f.RetryAfter = later.RetryAfter
	}
	f.Requests = f.Requests.merge(later.Requests)
	f.Load = f.Load.merge(later.Load)
	f.InputTokens = f.InputTokens.merge(later.InputTokens)
	f.OutputTokens = f.OutputTokens.merge(later.OutputTokens)
	return f
}

func (d DimensionFeedback) merge(later DimensionFeedback) DimensionFeedback {
	if later.Limit != nil {
		d.Limit, d.LimitPeriod = later.Limit, later.LimitPeriod
	}
	if later.Remaining != nil {
		d.Remaining = later.Remaining
	}
	if later.Reset != nil {
		d.Reset = later.Reset
	}
	return d
}

// The largest values the server takes (beyond them it refuses the whole
// release): a longer wait or larger number is sent as these.
const (
	maxRetryAfter = time.Hour
	maxReset      = 366 * 24 * time.Hour
	maxAmount     = 1e12
)

// toProto returns f as a message, or nil when f says nothing.
func (f Feedback) toProto() *pb.ProviderFeedback {
	if f.IsZero() {
		return nil
	}
	m := &pb.ProviderFeedback{
		Throttled:    f.Throttled,
		Requests:     f.Requests.toProto(),
		Load:         f.Load.toProto(),
		InputTokens:  f.InputTokens.toProto(),
		OutputTokens: f.OutputTokens.toProto(),
	}
	if f.RetryAfter != nil {
		m.RetryAfter = durationpb.New(min(max(0, *f.RetryAfter), maxRetryAfter))
	}
	return m
}

func (d DimensionFeedback) toProto() *pb.DimensionFeedback {
	if d.IsZero() {
		return nil
	}
	m := &pb.DimensionFeedback{}
	// A limit must be positive; a number that is not finite is dropped.
	if d.Limit != nil && *d.Limit > 0 && !math.IsInf(*d.Limit, 0) {
		m.Limit = new(min(*d.Limit, maxAmount))
		if d.LimitPeriod > 0 {
			m.LimitPeriod = durationpb.New(min(d.LimitPeriod, maxReset))
		}
	}
	if d.Remaining != nil && !math.IsNaN(*d.Remaining) {
		m.Remaining = new(min(max(0, *d.Remaining), maxAmount))
	}
	if d.Reset != nil {
		m.Reset_ = durationpb.New(min(max(0, *d.Reset), maxReset))
	}
	return m
}

// Throttled reports whether an HTTP status means the provider refused the
// call for its rate or load: 429, 503 or 529.
func Throttled(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == 529
}

// ParseRateLimitHeaders reads the feedback in a provider's response: status
// 429, 503 or 529 is Throttled; retry-after-ms (milliseconds) wins over
// retry-after (seconds or an HTTP date, counted from now); OpenAI's
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} (resets as Go-style
// durations, "6m0s", "120ms") and Anthropic's
// anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}
// (resets as RFC 3339 times, counted from now) fill the dimensions, with
// their limits per minute. Header names are matched case-insensitively, and
// a value that does not parse is ignored. Pass status 0 when it is unknown.
func ParseRateLimitHeaders(status int, h http.Header, now time.Time) Feedback {
	// Lower-cased names, so that a header map built by hand matches too.
	values := make(map[string]string, len(h))
	for name, vs := range h {
		if len(vs) > 0 {
			values[strings.ToLower(name)] = strings.TrimSpace(vs[0])
		}
	}
	get := func(name string) (string, bool) {
		v, ok := values[name]
		return v, ok && v != ""
	}
	f := Feedback{Throttled: Throttled(status)}
	if v, ok := get("retry-after-ms"); ok {
		if ms, ok := parseAmount(v); ok {
			f.RetryAfter = new(time.Duration(ms * float64(time.Millisecond)))
		}
	}
	if v, ok := get("retry-after"); ok && f.RetryAfter == nil {
		if s, ok := parseAmount(v); ok {
			f.RetryAfter = new(time.Duration(s * float64(time.Second)))
		} else if t, err := http.ParseTime(v); err == nil {
			f.RetryAfter = new(max(0, t.Sub(now)))
		}
	}
	dimension := func(limit, remaining, reset string, parseReset func(string) (time.Duration, bool)) DimensionFeedback {
		var d DimensionFeedback
		if v, ok := get(limit); ok {
			if n, ok := parseAmount(v); ok && n > 0 {
				d.Limit = new(n)
			}
		}
		if v, ok := get(remaining); ok {
			if n, ok := parseAmount(v); ok {
				d.Remaining = new(n)
			}
		}
		if v, ok := get(reset); ok {
			if r, ok := parseReset(v); ok {
				d.Reset = new(r)
			}
		}
		return d
	}
	openAI := func(dim string) DimensionFeedback {
		return dimension("x-ratelimit-limit-"+dim, "x-ratelimit-remaining-"+dim, "x-ratelimit-reset-"+dim, parseGoDuration)
	}
	untilTime := func(v string) (time.Duration, bool) {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, false
		}
		return max(0, t.Sub(now)), true
	}
	anthropic := func(dim string) DimensionFeedback {
		p := "anthropic-ratelimit-" + dim + "-"
		return dimension(p+"limit", p+"remaining", p+"reset", untilTime)
	}
	f.Requests = openAI("requests").merge(anthropic("requests"))
	f.Load = openAI("tokens").merge(anthropic("tokens"))
	f.InputTokens = anthropic("input-tokens")
	f.OutputTokens = anthropic("output-tokens")
	return f
}

// parseAmount parses a finite, non-negative decimal number.
func parseAmount(v string) (float64, bool) {
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) || strings.ContainsAny(v, "xXpP_") {
		return 0, false
	}
	return n, true
}

// parseGoDuration parses a non-negative Go-style duration ("6m0s", "120ms",
// "1h2m3.5s"), as OpenAI's reset headers give them.
func parseGoDuration(v string) (time.Duration, bool) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-") {
		return 0, false
	}
	return d, true
}

// Report records feedback about the lease's call; it is sent with the
// lease's release, in the same message, so that the server applies it as
// the call ends. Reports merge: Throttled stays once true, and a value a
// later report (or Observe) gives replaces an earlier one. Before the
// release it sends nothing, never blocks, and returns nil whatever ctx.
//
// Feedback reported after the lease was released (or while its release is
// under way) is sent at once, as Client.Report sends it, and then ctx
// bounds the wait for the server's answer.
func (l *Lease) Report(ctx context.Context, f Feedback) error {
	if l.record(f) {
		return nil
	}
	_, err := l.c.Report(ctx, l.resource, f)
	return err
}

// Observe records what a provider's response headers say (see
// ParseRateLimitHeaders) as the lease's feedback, sent with its release.
// Headers carry no status, so Observe never marks the call throttled: use
// ObserveResponse, or Report with Throttled. After the release it does
// nothing; Report sends late feedback.
func (l *Lease) Observe(h http.Header) {
	l.record(ParseRateLimitHeaders(0, h, time.Now()))
}

// ObserveResponse is Observe of resp's headers, and also marks the call
// throttled when resp's status is 429, 503 or 529.
func (l *Lease) ObserveResponse(resp *http.Response) {
	l.record(ParseRateLimitHeaders(resp.StatusCode, resp.Header, time.Now()))
}

// record merges f into the pending feedback; it reports false when the
// release has already taken it.
func (l *Lease) record(f Feedback) bool {
	l.fbMu.Lock()
	defer l.fbMu.Unlock()
	if l.fbSent {
		return false
	}
	l.feedback = l.feedback.merge(f)
	return true
}

// takeFeedback returns the pending feedback for the release to send; what
// is recorded later goes out as a report.
func (l *Lease) takeFeedback() Feedback {
	l.fbMu.Lock()
	defer l.fbMu.Unlock()
	l.fbSent = true
	return l.feedback
}

// Report gives the server feedback about a call made on resource without a
// lease (a leased call's feedback goes with its release: Lease.Report). The
// call counts as made now. It returns until when the resource grants
// nothing, or the zero time when it is not paused.
//
// The report goes on the client's session. When no server answers, it is
// sent again on the next session; Report waits until ctx ends (the report
// is still sent when a session opens) or the reconnect timeout passes, and
// then fails with ErrUnavailable. An unknown resource is ErrNotFound.
func (c *Client) Report(ctx context.Context, resource string, f Feedback) (time.Time, error) {
	what := "report " + resource
	if err := ctx.Err(); err != nil {
		return time.Time{}, ctxError(ctx, what)
	}
	fb := f.toProto()
	if fb == nil {
		fb = &pb.ProviderFeedback{}
	}
	type answer struct {
		resp *pb.SessionResponse
		err  error
	}
	ch := make(chan answer, 1)
	req := &pb.ReportRequest{Resource: resource, Feedback: fb}
	id, err := c.start(&pb.SessionRequest{Kind: &pb.SessionRequest_Report{Report: req}}, time.Time{},
		func(resp *pb.SessionResponse, err error) { ch <- answer{resp, err} })
	if err != nil {
		return time.Time{}, err
	}
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		if c.detach(id) {
			return time.Time{}, ctxError(ctx, what)
		}
		a = <-ch
	}
	if a.err != nil {
		return time.Time{}, a.err
	}
	if fl := a.resp.GetFailure(); fl != nil {
		return time.Time{}, newError(codes.Code(fl.GetCode()), fl.GetMessage())
	}
	r := a.resp.GetReported()
	if r == nil {
		return time.Time{}, newError(codes.Internal, fmt.Sprintf("%s: unexpected answer %v", what, a.resp))
	}
	if r.GetPausedUntil() == nil {
		return time.Time{}, nil
	}
	return r.GetPausedUntil().AsTime(), nil
}
