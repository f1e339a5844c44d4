package ratequeue_test

// Provider feedback against a real server and the fake provider
// (test/fixtures/fake-provider.mjs): Lease.Report, Observe and
// Client.Report, and the Transport's leases, token reconciliation (JSON and
// both providers' streams), refusals and errors.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

// provider is a running fake provider.
type provider struct {
	URL string
}

// startProvider starts the fake provider with args and stops it when the
// test ends.
func startProvider(t *testing.T, args ...string) *provider {
	t.Helper()
	cmd := exec.Command("node", append([]string{"../../test/fixtures/fake-provider.mjs"}, args...)...)
	cmd.Stderr = os.Stderr
	testserver.DieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		var p provider
		if !ok || json.Unmarshal([]byte(l), &p) != nil || p.URL == "" {
			t.Fatalf("fake provider printed %q, want {\"url\":...}", l)
		}
		return &p
	case <-time.After(20 * time.Second):
		t.Fatal("the fake provider did not start within 20s")
	}
	return nil
}

// providerCall is one call the fake provider answered.
type providerCall struct {
	T      int64 `json:"t"` // ms since the provider started or was reset
	Status int   `json:"status"`
	Tokens int   `json:"tokens"`
}

type providerStats struct {
	Calls     int            `json:"calls"`
	OK        int            `json:"ok"`
	Throttled int            `json:"throttled"`
	Log       []providerCall `json:"log"`
}

func (p *provider) stats(t *testing.T) providerStats {
	t.Helper()
	resp, err := http.Get(p.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s providerStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *provider) reset(t *testing.T) {
	t.Helper()
	resp, err := http.Post(p.URL+"/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// putResource creates r, named after the test, and returns its name.
func putResource(t *testing.T, r ratequeue.Resource) string {
	t.Helper()
	r.Name = fmt.Sprintf("go-%s-%d", sanitize(t.Name()), time.Now().UnixNano()%1e9)
	if _, _, err := newAdmin(t, "").PutResource(adminCtx(t), r); err != nil {
		t.Fatalf("PutResource(%s): %v", r.Name, err)
	}
	return r.Name
}

func resourceStats(t *testing.T, name string) ratequeue.ResourceStats {
	t.Helper()
	s, err := newAdmin(t, "").ResourceStats(adminCtx(t), name)
	if err != nil {
		t.Fatalf("ResourceStats(%s): %v", name, err)
	}
	return s
}

// chat is an OpenAI chat completion request of prompt.
func chat(prompt string, extra string) string {
	return fmt.Sprintf(`{"model":"gpt-fake","messages":[{"role":"user","content":%q}]%s}`, prompt, extra)
}

// post sends body to url through hc and returns the answer with its body
// read.
func post(t *testing.T, ctx context.Context, hc *http.Client, url, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer of POST %s: %v", url, err)
	}
	return resp, data
}

func loadUsed(t *testing.T, name string) float64 {
	t.Helper()
	for _, l := range resourceStats(t, name).Limits {
		if l.Limit.Dimension == ratequeue.DimensionLoad {
			return l.UsedLastPeriod
		}
	}
	t.Fatalf("%s has no load limit", name)
	return 0
}

// loadResource is a resource with generous requests and load limits per
// minute.
func loadResource() ratequeue.Resource {
	return ratequeue.Resource{Limits: []ratequeue.Limit{
		{Dimension: ratequeue.DimensionRequests, Amount: 6000, Period: time.Minute},
		{Dimension: ratequeue.DimensionLoad, Amount: 1e6, Period: time.Minute},
	}}
}

// A JSON answer: the lease is released with usage's tokens in place of the
// estimate, and the caller reads the body unchanged.
func TestTransportReconcilesJSONUsage(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6000")
	name := putResource(t, loadResource())
	hc := &http.Client{Transport: &ratequeue.Transport{Client: dial(t, ""), Resource: name}}
	prompt := strings.Repeat("a", 400) // 100 tokens
	resp, data := post(t, context.Background(), hc, p.URL+"/v1/chat/completions", chat(prompt, `,"max_tokens":1000`))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var answer struct {
		Usage struct {
			TotalTokens float64 `json:"total_tokens"`
			Prompt      float64 `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &answer); err != nil || answer.Usage.Prompt != 100 {
		t.Fatalf("answer %s (%v): want usage.prompt_tokens 100, the provider read the whole body", data, err)
	}
	// Estimated 1100 (prompt/4 + max_tokens), charged the usage's total.
	eventually(t, 5*time.Second, "the lease released", func() bool { return resourceStats(t, name).LeasesInFlight == 0 })
	if used := loadUsed(t, name); used != answer.Usage.TotalTokens {
		t.Errorf("load used %v, want usage.total_tokens %v", used, answer.Usage.TotalTokens)
	}
}

// Streams hold the lease until the body is read to its end, and are charged
// the usage their events carry: OpenAI's final chunk, Anthropic's
// message_start and message_delta.
func TestTransportReconcilesStreamUsage(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6000", "--latency-ms", "200")
	for _, tc := range []struct {
		name, path, body string
	}{
		{"openai", "/v1/chat/completions", chat(strings.Repeat("b", 80), `,"stream":true,"stream_options":{"include_usage":true}`)},
		{"anthropic", "/v1/messages", `{"model":"claude-fake","max_tokens":500,"system":"` + strings.Repeat("s", 40) + `","messages":[{"role":"user","content":"` + strings.Repeat("c", 40) + `"}],"stream":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := putResource(t, loadResource())
			hc := &http.Client{Transport: &ratequeue.Transport{Client: dial(t, ""), Resource: name}}
			req, _ := http.NewRequest(http.MethodPost, p.URL+tc.path, strings.NewReader(tc.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if s := resourceStats(t, name); s.LeasesInFlight != 1 {
				t.Errorf("%d leases in flight while the stream is open, want 1", s.LeasesInFlight)
			}
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			want := 0.0
			for _, line := range strings.Split(string(data), "\n") {
				var ev struct {
					Usage *struct {
						Total  float64 `json:"total_tokens"`
						Output float64 `json:"output_tokens"`
					} `json:"usage"`
					Message *struct {
						Usage struct {
							Input float64 `json:"input_tokens"`
						} `json:"usage"`
					} `json:"message"`
				}
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) == nil {
					if ev.Usage != nil {
						want += ev.Usage.Total + ev.Usage.Output
					}
					if ev.Message != nil {
						want += ev.Message.Usage.Input
					}
				}
			}
			if want <= 20 { // the prompt's 80 characters are 20 tokens, and the completion has some
				t.Fatalf("the stream's usage counts %v tokens, want the prompt's 20 and the completion's:\n%s", want, data)
			}
			eventually(t, 5*time.Second, "the lease released at the end of the stream", func() bool { return resourceStats(t, name).LeasesInFlight == 0 })
			if used := loadUsed(t, name); used != want {
				t.Errorf("load used %v, want the stream's usage %v", used, want)
			}
		})
	}
}

// A stream closed before its end releases the lease then, with the estimate
// kept.
func TestTransportReleasesAtClose(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6000", "--latency-ms", "2000")
	name := putResource(t, loadResource())
	hc := &http.Client{Transport: &ratequeue.Transport{Client: dial(t, ""), Resource: name}}
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/chat/completions", strings.NewReader(chat("abcd", `,"stream":true,"max_tokens":99`)))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if s := resourceStats(t, name); s.LeasesInFlight != 1 {
		t.Fatalf("%d leases in flight while the stream is open, want 1", s.LeasesInFlight)
	}
	resp.Body.Close()
	eventually(t, 5*time.Second, "the lease released at Close", func() bool { return resourceStats(t, name).LeasesInFlight == 0 })
	if used := loadUsed(t, name); used != 100 {
		t.Errorf("load used %v, want the estimate 100", used)
	}
}

// A 429 releases the lease at once as throttled: the resource pauses for
// the provider's retry-after, the load is refunded, and the caller still
// reads the provider's answer.
func TestTransportThrottledPausesTheResource(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6") // one call, then one more every 10 s
	name := putResource(t, loadResource())
	hc := &http.Client{Transport: &ratequeue.Transport{Client: dial(t, ""), Resource: name}}
	url := p.URL + "/v1/chat/completions"
	// Another app spends the provider's budget.
	if resp, data := post(t, context.Background(), http.DefaultClient, url, chat("abcd", "")); resp.StatusCode != 200 {
		t.Fatalf("first call: status %d: %s", resp.StatusCode, data)
	}
	resp, data := post(t, context.Background(), hc, url, chat("abcd", `,"max_tokens":500`))
	if resp.StatusCode != 429 || !strings.Contains(string(data), "rate_limit_exceeded") {
		t.Fatalf("second call: status %d: %s; want the provider's 429", resp.StatusCode, data)
	}
	retryAfter := ratequeue.ParseRateLimitHeaders(resp.StatusCode, resp.Header, time.Now()).RetryAfter
	if retryAfter == nil || *retryAfter < 5*time.Second {
		t.Fatalf("retry-after %v, want about 10 s", retryAfter)
	}
	var s ratequeue.ResourceStats
	eventually(t, 5*time.Second, "the throttled release", func() bool {
		s = resourceStats(t, name)
		return s.LeasesInFlight == 0 && s.Throttles == 1
	})
	if left := time.Until(s.PausedUntil); left < *retryAfter-2*time.Second || left > *retryAfter {
		t.Errorf("paused until %v (%v from now), want about the provider's retry-after %v", s.PausedUntil, left, *retryAfter)
	}
	if used := loadUsed(t, name); used != 0 {
		t.Errorf("load used %v after the refusal, want 0: the throttled call's load refunded", used)
	}
	// The next request waits for the pause, fleet-wide: its deadline passes
	// in the queue and the provider never sees it.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(chat("abcd", "")))
	if _, err := hc.Do(req); !errors.Is(err, ratequeue.ErrTimeout) {
		t.Fatalf("a request during the pause: %v, want ErrTimeout", err)
	}
	if st := p.stats(t); st.Calls != 2 {
		t.Errorf("the provider saw %d calls, want 2", st.Calls)
	}
}

// With DisableFeedback a 429 pauses nothing.
func TestTransportWithoutFeedback(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6") // one call, then one more every 10 s
	name := putResource(t, loadResource())
	hc := &http.Client{Transport: &ratequeue.Transport{Client: dial(t, ""), Resource: name, DisableFeedback: true}}
	url := p.URL + "/v1/chat/completions"
	for i, want := range []int{200, 429, 429} {
		if resp, data := post(t, context.Background(), hc, url, chat("abcd", "")); resp.StatusCode != want {
			t.Fatalf("call %d: status %d, want %d: %s", i, resp.StatusCode, want, data)
		}
	}
	eventually(t, 5*time.Second, "the leases released", func() bool { return resourceStats(t, name).LeasesInFlight == 0 })
	if s := resourceStats(t, name); s.Throttles != 0 || !s.PausedUntil.IsZero() {
		t.Errorf("throttles %d, paused until %v; want none without feedback", s.Throttles, s.PausedUntil)
	}
}

// rereadCheck is a base transport that checks the request's body can be
// read again before it sends it.
type rereadCheck struct {
	t    *testing.T
	want string
}

func (r rereadCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	for range 2 {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		data, _ := io.ReadAll(body)
		if string(data) != r.want {
			r.t.Errorf("GetBody gave %q, want %q", data, r.want)
		}
	}
	if req.ContentLength != int64(len(r.want)) {
		r.t.Errorf("ContentLength %d, want %d", req.ContentLength, len(r.want))
	}
	return http.DefaultTransport.RoundTrip(req)
}

// The estimate sees the request and its body; the request sent on has a
// body that can be read again; priority and lane are the Transport's.
func TestTransportEstimateAndBody(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6000")
	r := loadResource()
	r.Lanes = []ratequeue.LaneWeight{{Name: "default", Weight: 1}, {Name: "batch", Weight: 1}}
	name := putResource(t, r)
	body := chat("hello", "")
	var seen string
	hc := &http.Client{Transport: &ratequeue.Transport{
		Client:   dial(t, ""),
		Resource: name,
		Base:     rereadCheck{t, body},
		Estimate: func(req *http.Request, b []byte) float64 {
			seen = req.URL.Path + " " + string(b)
			return 7
		},
		Priority: new(int32(50)),
		Lane:     "batch",
	}}
	// Through a reader that is not a bytes.Reader, so net/http sets no GetBody.
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/chat/completions", io.MultiReader(strings.NewReader(body)))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(data, []byte("chat.completion")) {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	if seen != "/v1/chat/completions "+body {
		t.Errorf("the estimate saw %q", seen)
	}
	s := resourceStats(t, name)
	if s.Lanes[1].Name != "batch" || s.Lanes[1].Grants != 1 || s.Lanes[0].Grants != 0 {
		t.Errorf("lanes %+v, want the grant in batch", s.Lanes)
	}
}

// A request that cannot be sent releases its lease and returns the error.
func TestTransportErrorReleases(t *testing.T) {
	t.Parallel()
	name := putResource(t, loadResource())
	hc := &http.Client{Transport: &ratequeue.Transport{Client: dial(t, ""), Resource: name}}
	req, _ := http.NewRequest(http.MethodPost, "http://"+freeAddr(t)+"/v1/chat/completions", strings.NewReader(chat("abcd", "")))
	if _, err := hc.Do(req); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v, want connection refused", err)
	}
	eventually(t, 5*time.Second, "the lease released", func() bool {
		s := resourceStats(t, name)
		return s.Grants == 1 && s.LeasesInFlight == 0
	})
}

// A request's context bounds its wait for a lease.
func TestTransportHonoursTheRequestContext(t *testing.T) {
	t.Parallel()
	r := loadResource()
	r.Concurrency = 1
	name := putResource(t, r)
	c := dial(t, "")
	held := acquire(t, c, name)
	defer held.Release(context.Background())
	hc := &http.Client{Transport: &ratequeue.Transport{Client: c, Resource: name}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+freeAddr(t)+"/", strings.NewReader("{}"))
	if _, err := hc.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	eventually(t, 5*time.Second, "the request withdrawn", func() bool { return resourceStats(t, name).Cancellations == 1 })
}

// Lease.Observe and Report record feedback that goes with the release; a
// report after the release is sent at once; Client.Report reports a call
// made without a lease and returns the pause.
func TestLeaseAndClientReport(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	name := putResource(t, ratequeue.Resource{Limits: []ratequeue.Limit{
		{Dimension: ratequeue.DimensionRequests, Amount: 600, Period: time.Minute},
	}})
	ctx := context.Background()

	// The headers teach a lower limit; no pause.
	l := acquire(t, c, name)
	l.Observe(http.Header{"X-Ratelimit-Limit-Requests": {"60"}, "X-Ratelimit-Remaining-Requests": {"50"}})
	if err := l.Report(ctx, ratequeue.Feedback{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	s := resourceStats(t, name)
	if got := s.Limits[0].LearnedAmount; got == nil || *got != 60 {
		t.Errorf("learned amount %v, want 60 per minute", got)
	}
	if s.Throttles != 0 || !s.PausedUntil.IsZero() {
		t.Errorf("throttles %d, paused until %v; want no pause", s.Throttles, s.PausedUntil)
	}

	// A refusal observed on the response, with the provider's wait.
	l = acquire(t, c, name)
	l.ObserveResponse(&http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"1"}}})
	if err := l.Report(ctx, ratequeue.Feedback{RetryAfter: new(2 * time.Second)}); err != nil { // later values win
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	s = resourceStats(t, name)
	if left := time.Until(s.PausedUntil); s.Throttles != 1 || left < time.Second || left > 2*time.Second {
		t.Errorf("throttles %d, paused for %v more; want 1 and about 2 s", s.Throttles, left)
	}

	// After the release, a report goes at once.
	if err := l.Report(ctx, ratequeue.Feedback{Throttled: true, RetryAfter: new(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	s = resourceStats(t, name)
	if left := time.Until(s.PausedUntil); s.Throttles != 2 || left < 4*time.Second {
		t.Errorf("after a late report: throttles %d, paused for %v more; want 2 and about 5 s", s.Throttles, left)
	}

	// Without a lease.
	until, err := c.Report(ctx, name, ratequeue.Feedback{Throttled: true, RetryAfter: new(8 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(until); left < 7*time.Second || left > 8*time.Second {
		t.Errorf("Report returned paused until %v (%v from now), want 8 s from now", until, left)
	}
	if _, err := c.Report(ctx, name+"-missing", ratequeue.Feedback{Throttled: true}); !errors.Is(err, ratequeue.ErrNotFound) {
		t.Errorf("Report on a missing resource: %v, want ErrNotFound", err)
	}
	// Nothing to say: not paused any longer than before.
	if until2, err := c.Report(ctx, name, ratequeue.Feedback{}); err != nil || !until2.Equal(until) {
		t.Errorf("an empty report: %v, %v; want %v", until2, err, until)
	}
}

// A report that no server answered is sent again on the next session.
func TestReportSentAgainAfterReconnect(t *testing.T) {
	t.Parallel()
	proxy, err := testserver.NewProxy(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	c := dial(t, proxy.Addr)
	name := putResource(t, ratequeue.Resource{Limits: []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: 10, Period: time.Second}}})
	proxy.Pause()
	time.AfterFunc(300*time.Millisecond, proxy.Resume)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	until, err := c.Report(ctx, name, ratequeue.Feedback{Throttled: true, RetryAfter: new(3 * time.Second)})
	if err != nil || until.IsZero() {
		t.Fatalf("Report across a reconnect: %v, %v", until, err)
	}
	if s := resourceStats(t, name); s.Throttles != 1 {
		t.Errorf("throttles %d, want 1", s.Throttles)
	}
}
