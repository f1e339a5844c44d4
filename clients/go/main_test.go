package ratequeue_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

// srv is the real server process all tests of the package share; each test
// creates its own resources.
var srv *testserver.Server

// workerDir holds the example worker binary the tests build.
var workerDir string

const bootConfig = `
resources:
  boot:
    limits:
      - { dimension: requests, amount: 100, period: 1s }
`

func TestMain(m *testing.M) {
	s, err := testserver.Start(bootConfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratequeue tests: cannot start the server:", err)
		os.Exit(1)
	}
	srv = s
	if workerDir, err = os.MkdirTemp("", "ratequeue-go-worker-*"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(workerDir)
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// dial connects to addr (the shared server when empty) and closes the client
// when the test ends.
func dial(t *testing.T, addr string, opts ...ratequeue.Option) *ratequeue.Client {
	t.Helper()
	if addr == "" {
		addr = srv.Addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ratequeue.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// resource returns a resource definition named after the test.
func resource(t *testing.T, ttl time.Duration, concurrency uint32, limits ...*pb.Limit) *pb.Resource {
	return &pb.Resource{
		Name:        fmt.Sprintf("go-%s-%d", sanitize(t.Name()), time.Now().UnixNano()%1e9),
		Limits:      limits,
		Concurrency: concurrency,
		LeaseTtl:    durationpb.New(ttl),
	}
}

func sanitize(s string) string {
	if len(s) > 80 {
		s = s[:80]
	}
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

func limit(dim pb.Dimension, amount float64, period time.Duration, burst float64) *pb.Limit {
	return &pb.Limit{Dimension: dim, Amount: amount, Period: durationpb.New(period), Burst: burst}
}

// put creates r on the server.
func put(t *testing.T, c *ratequeue.Client, r *pb.Resource) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Admin().PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
		t.Fatalf("PutResource(%s): %v", r.GetName(), err)
	}
	return r.GetName()
}

func stats(t *testing.T, c *ratequeue.Client, name string) *pb.ResourceStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Admin().GetResourceStats(ctx, &pb.GetResourceStatsRequest{Name: name})
	if err != nil {
		t.Fatalf("GetResourceStats(%s): %v", name, err)
	}
	return resp.GetStats()
}

func queueDepth(s *pb.ResourceStats) uint32 {
	var n uint32
	for _, l := range s.GetLanes() {
		n += l.GetQueueDepth()
	}
	return n
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// grantAt is one grant: its server grant time in whole milliseconds (the
// server's clock has millisecond resolution, so this is exact) and the units
// it spent on the checked limit.
type grantAt struct {
	ms    int64
	units int64
}

// gcra is a limit of amount units per periodMs milliseconds with burst.
type gcra struct{ amount, periodMs, burst int64 }

// check fails the test unless, in every interval between two grants, the
// units granted are at most burst + length·amount/period: the invariant,
// checked exactly (in integers: units·period ≤ burst·period + length·amount).
func (l gcra) check(t *testing.T, grants []grantAt) {
	t.Helper()
	if len(grants) < 2 {
		t.Fatalf("only %d grants", len(grants))
	}
	g := slices.Clone(grants)
	slices.SortFunc(g, func(a, b grantAt) int { return cmp.Compare(a.ms, b.ms) })
	for i := range g {
		var units int64
		for j := i; j < len(g); j++ {
			units += g[j].units
			if span := g[j].ms - g[i].ms; units*l.periodMs > l.burst*l.periodMs+span*l.amount {
				t.Fatalf("limit broken: %d units granted in %d ms (grants %d..%d), allowed %d + %d ms × %d/%d ms",
					units, span, i, j, l.burst, span, l.amount, l.periodMs)
			}
		}
	}
}

// use fails the test unless the units granted in the fixed window
// [fromMs, fromMs+windowMs] are at least 90% of what the limit allows in it,
// burst + window·amount/period (and at most that).
func (l gcra) use(t *testing.T, grants []grantAt, fromMs, windowMs int64) {
	t.Helper()
	var units int64
	for _, g := range grants {
		if g.ms >= fromMs && g.ms <= fromMs+windowMs {
			units += g.units
		}
	}
	allowed := l.burst + windowMs*l.amount/l.periodMs
	t.Logf("%d units granted in the %d ms window of %d allowed (%.1f%%)", units, windowMs, allowed, 100*float64(units)/float64(allowed))
	if units*10 < allowed*9 || units > allowed {
		t.Errorf("%d units granted in the %d ms window, want at least 90%% of the %d allowed and no more", units, windowMs, allowed)
	}
}

// freeAddr returns a 127.0.0.1 address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// isErr fails the test unless errors.Is(err, target).
func isErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v (%T), want one matching %v", err, err, target)
	}
}
