package ratequeue

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"
)

// Transport is an http.RoundTripper that takes a lease on Resource for
// every request it sends, so that any Go HTTP client (an LLM provider's SDK
// built on net/http included) shares the fleet's budget:
//
//	hc := &http.Client{Transport: &ratequeue.Transport{Client: rq, Resource: "openai-gpt4"}}
//
// Per request it reads the body (the request sent on has a body that can be
// read again), acquires a lease with the estimated load, waiting as long as
// the request's context allows, sends the request on Base, and records the
// provider's feedback from the response (ParseRateLimitHeaders). A 429, 503
// or 529 releases the lease at once as throttled, so the whole resource
// pauses and the load is refunded; a retry of the request waits in the
// queue for the pause to end. Otherwise the lease is released with the
// tokens the response's usage reports (OpenAI usage.total_tokens, or
// prompt_tokens + completion_tokens; Anthropic input_tokens +
// output_tokens): a JSON response is read at once and its body replaced; a
// server-sent event stream is watched as the caller reads it (OpenAI's
// final usage chunk with stream_options.include_usage, Anthropic's
// message_start and message_delta), and the lease is released when the
// body reaches its end or is closed, as net/http requires of every body
// anyway. Other responses release the lease then too, with the estimate
// kept. When sending fails, the lease is released and the error returned.
//
// Releases are sent without waiting for their answer (on the session, ahead
// of any later acquire); a Transport is safe for concurrent use.
type Transport struct {
	// Client is the ratequeue client the leases are taken on.
	Client *Client
	// Resource is the resource every request spends.
	Resource string
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Estimate returns a request's load from the request and its body (nil
	// when it has none); nil means DefaultEstimate. A custom estimate may
	// call a tokenizer.
	Estimate func(req *http.Request, body []byte) float64
	// Priority orders the requests within their lane (higher first); nil
	// means the default, 10.
	Priority *int32
	// Lane is the lane to wait in; "" means the resource's default lane.
	Lane string
	// Key returns the key inside Resource a request is charged to (see the
	// Key acquire option), for example the customer id a header or the
	// request's context carries, so that each customer has its own quota
	// inside the shared limit; nil, or "" for a request, means the
	// resource itself.
	Key func(req *http.Request) string
	// DisableFeedback sends no feedback: refusals pause nothing and the
	// headers teach nothing (the tokens are still reconciled from usage).
	// For comparisons; a fleet wants the feedback.
	DisableFeedback bool
}

// RoundTrip sends one request under a lease; see Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Client == nil {
		closeBody(req)
		return nil, errors.New("ratequeue: Transport.Client is nil")
	}
	ctx := req.Context()
	out, body, err := rereadable(req)
	if err != nil {
		return nil, err
	}
	estimate := t.Estimate
	if estimate == nil {
		estimate = DefaultEstimate
	}
	opts := []AcquireOption{Load(estimate(req, body))}
	if t.Priority != nil {
		opts = append(opts, Priority(*t.Priority))
	}
	if t.Lane != "" {
		opts = append(opts, Lane(t.Lane))
	}
	if t.Key != nil {
		// "" from Key is the resource itself: a func has no other way to say "no key".
		if k := t.Key(req); k != "" {
			opts = append(opts, Key(k))
		}
	}
	lease, err := t.Client.Acquire(ctx, t.Resource, opts...)
	if err != nil {
		closeBody(out)
		return nil, err
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(out)
	if err != nil {
		lease.releaseNoWait(nil)
		return nil, err
	}
	if !t.DisableFeedback {
		lease.ObserveResponse(resp)
	}
	if Throttled(resp.StatusCode) || resp.Body == nil || resp.Body == http.NoBody {
		// A refusal spent no tokens: without an actual load the server
		// refunds the lease's load (when told it was throttled).
		lease.releaseNoWait(nil)
		return resp, nil
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mediaType == "text/event-stream":
		resp.Body = &leasedBody{body: resp.Body, lease: lease, events: &sseUsage{}}
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			lease.releaseNoWait(nil)
			return nil, err
		}
		var actual *float64
		if tokens, ok := usageOfBody(data); ok {
			actual = &tokens
		}
		lease.releaseNoWait(actual)
		resp.Body = io.NopCloser(bytes.NewReader(data))
	default:
		resp.Body = &leasedBody{body: resp.Body, lease: lease}
	}
	return resp, nil
}

// CloseIdleConnections closes Base's idle connections, when it can.
func (t *Transport) CloseIdleConnections() {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if b, ok := base.(interface{ CloseIdleConnections() }); ok {
		b.CloseIdleConnections()
	}
}

// rereadable reads and closes req's body, and returns a copy of req whose
// body is those bytes and can be read again (GetBody), with the bytes.
func rereadable(req *http.Request) (*http.Request, []byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil, nil
	}
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(data))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	out.ContentLength = int64(len(data))
	return out, data, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// DefaultEstimate is Transport's default load of a request: the characters
// of its prompt text divided by 4, rounded up (OpenAI messages[].content,
// Anthropic system and messages[].content, each a string or parts with
// "text"), plus max_completion_tokens, else max_tokens, when given; at
// least 1, also for a body that is not JSON.
func DefaultEstimate(_ *http.Request, body []byte) float64 {
	var b struct {
		System   json.RawMessage `json:"system"`
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		MaxTokens           *float64 `json:"max_tokens"`
		MaxCompletionTokens *float64 `json:"max_completion_tokens"`
	}
	if len(body) == 0 || json.Unmarshal(body, &b) != nil {
		return 1
	}
	chars := textChars(b.System)
	for _, m := range b.Messages {
		chars += textChars(m.Content)
	}
	est := math.Ceil(float64(chars) / 4)
	switch {
	case b.MaxCompletionTokens != nil && *b.MaxCompletionTokens > 0:
		est += *b.MaxCompletionTokens
	case b.MaxTokens != nil && *b.MaxTokens > 0:
		est += *b.MaxTokens
	}
	return max(1, est)
}

// textChars counts the characters of a content value: a string, or a list
// of strings and parts with "text" (a part's own "content" list, as in an
// Anthropic tool_result, counts too).
func textChars(raw json.RawMessage) int {
	if len(raw) == 0 {
		return 0
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return utf8.RuneCountInString(s)
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return 0
	}
	n := 0
	for _, p := range parts {
		if json.Unmarshal(p, &s) == nil {
			n += utf8.RuneCountInString(s)
			continue
		}
		var part struct {
			Text    *string         `json:"text"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(p, &part) == nil {
			if part.Text != nil {
				n += utf8.RuneCountInString(*part.Text)
			}
			n += textChars(part.Content)
		}
	}
	return n
}

// usage is the token counts of a provider's answer.
type usage struct {
	TotalTokens      *float64 `json:"total_tokens"`
	PromptTokens     *float64 `json:"prompt_tokens"`
	CompletionTokens *float64 `json:"completion_tokens"`
	InputTokens      *float64 `json:"input_tokens"`
	OutputTokens     *float64 `json:"output_tokens"`
}

// tokens returns the total tokens u counts: total_tokens, else
// prompt_tokens + completion_tokens (OpenAI), else input_tokens +
// output_tokens (Anthropic).
func (u *usage) tokens() (float64, bool) {
	sum := func(a, b *float64) (float64, bool) {
		if a == nil && b == nil {
			return 0, false
		}
		var n float64
		for _, p := range []*float64{a, b} {
			if p != nil {
				n += *p
			}
		}
		return n, true
	}
	switch {
	case u == nil:
		return 0, false
	case u.TotalTokens != nil:
		return *u.TotalTokens, true
	case u.PromptTokens != nil || u.CompletionTokens != nil:
		return sum(u.PromptTokens, u.CompletionTokens)
	default:
		return sum(u.InputTokens, u.OutputTokens)
	}
}

// usageOfBody returns the tokens a JSON answer's usage counts.
func usageOfBody(data []byte) (float64, bool) {
	var b struct {
		Usage *usage `json:"usage"`
	}
	if json.Unmarshal(data, &b) != nil {
		return 0, false
	}
	return b.Usage.tokens()
}

// maxEventBytes bounds the event data a stream watcher keeps; a longer
// event cannot be a usage chunk worth reading and is skipped.
const maxEventBytes = 1 << 20

// sseUsage follows a server-sent event stream for the chunks that carry
// usage.
type sseUsage struct {
	line     []byte // the line read so far
	data     []byte // the event's data lines so far
	skipping bool   // the current line or event is too long
	// total is the last usage chunk's total (OpenAI); input and output
	// Anthropic's message_start and message_delta counts.
	total, input, output *float64
}

// write feeds the stream's next bytes.
func (s *sseUsage) write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.appendLine(p)
			return
		}
		s.appendLine(p[:i])
		s.endLine()
		p = p[i+1:]
	}
}

func (s *sseUsage) appendLine(p []byte) {
	if len(s.line)+len(p) > maxEventBytes {
		s.skipping, s.line = true, s.line[:0]
		return
	}
	s.line = append(s.line, p...)
}

func (s *sseUsage) endLine() {
	line := bytes.TrimSuffix(s.line, []byte("\r"))
	s.line = s.line[:0]
	switch {
	case len(line) == 0:
		s.dispatch()
	case s.skipping:
	case bytes.HasPrefix(line, []byte("data:")):
		v := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
		if len(s.data) > 0 {
			s.data = append(s.data, '\n')
		}
		if len(s.data)+len(v) > maxEventBytes {
			s.skipping, s.data = true, s.data[:0]
			return
		}
		s.data = append(s.data, v...)
	}
}

// dispatch reads the event whose data is complete.
func (s *sseUsage) dispatch() {
	data := s.data
	s.data, s.skipping = s.data[:0], false
	if !bytes.Contains(data, []byte(`"usage"`)) {
		return
	}
	var ev struct {
		Type    string `json:"type"`
		Usage   *usage `json:"usage"`
		Message *struct {
			Usage *usage `json:"usage"`
		} `json:"message"` // Anthropic message_start
		Response *struct {
			Usage *usage `json:"usage"`
		} `json:"response"` // OpenAI Responses API response.completed
	}
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	anthropic := func(u *usage) {
		if u == nil {
			return
		}
		if u.InputTokens != nil {
			s.input = new(*u.InputTokens)
		}
		if u.OutputTokens != nil {
			s.output = new(*u.OutputTokens)
		}
	}
	switch {
	case ev.Type == "message_start" && ev.Message != nil:
		anthropic(ev.Message.Usage)
	case ev.Type == "message_delta":
		anthropic(ev.Usage) // output_tokens is cumulative
	case ev.Response != nil:
		if n, ok := ev.Response.Usage.tokens(); ok {
			s.total = &n
		}
	default:
		if n, ok := ev.Usage.tokens(); ok {
			s.total = &n
		}
	}
}

// tokens returns the stream's usage, once the last event has been read.
func (s *sseUsage) tokens() *float64 {
	s.endLine()
	s.dispatch()
	if s.total != nil {
		return s.total
	}
	if s.input == nil && s.output == nil {
		return nil
	}
	var n float64
	for _, p := range []*float64{s.input, s.output} {
		if p != nil {
			n += *p
		}
	}
	return &n
}

// leasedBody is a response body that releases its lease when it reaches
// its end, fails, or is closed, with the usage its events carried.
type leasedBody struct {
	body  io.ReadCloser
	lease *Lease

	mu     sync.Mutex
	events *sseUsage // nil: not an event stream
	done   bool
}

func (b *leasedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.mu.Lock()
	if b.events != nil && !b.done {
		b.events.write(p[:n])
	}
	b.mu.Unlock()
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *leasedBody) Close() error {
	err := b.body.Close()
	b.finish()
	return err
}

func (b *leasedBody) finish() {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.done = true
	var actual *float64
	if b.events != nil {
		actual = b.events.tokens()
	}
	b.mu.Unlock()
	b.lease.releaseNoWait(actual)
}
