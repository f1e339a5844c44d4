package ratequeue_test

// A fleet of workers, each with its own ratequeue client (as separate
// processes would have), calls the fake provider through net/http and
// Transport. The provider's real limit is half the one configured in
// ratequeue: with feedback the fleet learns it, stops collecting 429s after
// the first second and still uses the provider's whole budget; without
// feedback (the control) it keeps running into the provider.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
)

const (
	fleetWorkers     = 4 // clients
	fleetGoroutines  = 4 // per client
	providerRPM      = 1200
	configuredPerSec = 40 // twice the provider's 20 per second
)

// fleetRun is what the provider saw of one run.
type fleetRun struct {
	answers, throttled int     // after the first second
	okInWindow         int     // successes in the window
	allowedInWindow    float64 // what the provider's limit allows in it
}

func (r fleetRun) throttledShare() float64 { return float64(r.throttled) / float64(max(1, r.answers)) }

// runFleet has the fleet finish tasks calls against p through Transport on
// a new resource, retrying each refused call as an SDK does (after the
// provider's retry-after-ms), and measures the provider's log from its
// first call: the 429s after the first second, and the successes in the
// window [1 s, 1 s + window].
func runFleet(t *testing.T, p *provider, style string, tasks int, window time.Duration, disableFeedback bool) fleetRun {
	t.Helper()
	name := putResource(t, ratequeue.Resource{Limits: []ratequeue.Limit{
		{Dimension: ratequeue.DimensionRequests, Amount: configuredPerSec, Period: time.Second},
	}})
	p.reset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errMu      sync.Mutex
		firstErr   error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for w := range fleetWorkers {
		c := dial(t, "")
		base := &http.Transport{MaxIdleConnsPerHost: fleetGoroutines}
		t.Cleanup(base.CloseIdleConnections)
		hc := &http.Client{Transport: &ratequeue.Transport{Client: c, Resource: name, Base: base, DisableFeedback: disableFeedback}}
		for g := range fleetGoroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(tasks) {
					if err := fleetTask(ctx, hc, p.URL, style, fmt.Sprintf("worker %d.%d", w, g)); err != nil {
						fail(err)
						return
					}
					done.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("a task failed: %v", firstErr)
	}
	if n := done.Load(); n != int64(tasks) {
		t.Fatalf("%d of %d tasks finished", n, tasks)
	}
	log := p.stats(t).Log
	if len(log) == 0 {
		t.Fatal("the provider saw no calls")
	}
	t0 := log[0].T
	from, to := t0+1000, t0+1000+window.Milliseconds()
	r := fleetRun{allowedInWindow: providerRPM / 60 * window.Seconds()}
	for _, call := range log {
		if call.T < from {
			continue
		}
		r.answers++
		if call.Status == http.StatusTooManyRequests {
			r.throttled++
		}
		if call.Status == http.StatusOK && call.T <= to {
			r.okInWindow++
		}
	}
	if last := log[len(log)-1].T; last < to {
		t.Fatalf("the run ended %d ms after its first call, before the window's end at %d ms: give it more tasks", last-t0, to-t0)
	}
	return r
}

// fleetTask makes one call in the API of style, retrying it after each 429
// as an SDK does.
func fleetTask(ctx context.Context, hc *http.Client, url, style, who string) error {
	path, body := "/v1/chat/completions", chat("Say hello to "+who+".", "")
	if style == "anthropic" {
		path = "/v1/messages"
		body = fmt.Sprintf(`{"model":"claude-fake","max_tokens":64,"messages":[{"role":"user","content":%q}]}`, "Say hello to "+who+".")
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return err
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode != http.StatusTooManyRequests:
			return fmt.Errorf("%s: status %d", who, resp.StatusCode)
		case attempt == 100:
			return errors.New(who + ": still refused after 100 attempts")
		}
		wait := 100 * time.Millisecond
		if ra := ratequeue.ParseRateLimitHeaders(resp.StatusCode, resp.Header, time.Now()).RetryAfter; ra != nil {
			wait = min(*ra, 2*time.Second)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestFleetFollowsProviderFeedback(t *testing.T) {
	p := startProvider(t, "--rpm", strconv.Itoa(providerRPM), "--latency-ms", "20")
	const window = 3 * time.Second
	// The first second takes about 40 calls (the provider's burst and a
	// second's rate), then 20 a second: 120 tasks outlast the window.
	with := runFleet(t, p, "openai", 120, window, false)
	without := runFleet(t, p, "openai", 70, 1500*time.Millisecond, true)
	t.Logf("with feedback:    %d of %d answers after the first second were 429 (%.1f%%); %d successes in %v, %.0f%% of the provider's %.0f",
		with.throttled, with.answers, 100*with.throttledShare(), with.okInWindow, window, 100*float64(with.okInWindow)/with.allowedInWindow, with.allowedInWindow)
	t.Logf("without feedback: %d of %d answers after the first second were 429 (%.1f%%)",
		without.throttled, without.answers, 100*without.throttledShare())
	if with.throttledShare() > 0.02 {
		t.Errorf("with feedback %.1f%% of the answers after the first second were 429, want at most 2%%", 100*with.throttledShare())
	}
	if float64(with.okInWindow) < 0.9*with.allowedInWindow {
		t.Errorf("with feedback %d successes in the window, want at least 90%% of the provider's %.0f", with.okInWindow, with.allowedInWindow)
	}
	// The control: the same fleet without feedback keeps hitting the
	// provider's limit, so the figures above are the feedback's doing.
	if without.throttledShare() < 0.2 {
		t.Errorf("without feedback only %.1f%% of the answers after the first second were 429, want at least 20%%: the control shows nothing", 100*without.throttledShare())
	}
}

// The same with Anthropic's headers (RFC 3339 resets) and API, feedback on.
func TestFleetFollowsAnthropicFeedback(t *testing.T) {
	p := startProvider(t, "--rpm", strconv.Itoa(providerRPM), "--latency-ms", "20", "--style", "anthropic")
	const window = 2 * time.Second
	r := runFleet(t, p, "anthropic", 90, window, false)
	t.Logf("%d of %d answers after the first second were 429 (%.1f%%); %d successes in %v, %.0f%% of the provider's %.0f",
		r.throttled, r.answers, 100*r.throttledShare(), r.okInWindow, window, 100*float64(r.okInWindow)/r.allowedInWindow, r.allowedInWindow)
	if r.throttledShare() > 0.02 {
		t.Errorf("%.1f%% of the answers after the first second were 429, want at most 2%%", 100*r.throttledShare())
	}
	if float64(r.okInWindow) < 0.9*r.allowedInWindow {
		t.Errorf("%d successes in the window, want at least 90%% of the provider's %.0f", r.okInWindow, r.allowedInWindow)
	}
}
