package ratequeue_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

// Many goroutines on one client share a resource: the grants keep to its
// rate limit and concurrency cap while using at least 90% of the rate.
func TestGoroutinesShareResource(t *testing.T) {
	t.Parallel()
	const (
		rate, burst = 20.0, 5.0
		concurrency = 4
		run         = 3 * time.Second
	)
	c := dial(t, "")
	name := put(t, c, resource(t, 5*time.Second, concurrency, limit(pb.Dimension_DIMENSION_REQUESTS, rate, time.Second, burst)))

	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var (
		mu          sync.Mutex
		grants      []grantAt
		inFlight    atomic.Int32
		maxInFlight atomic.Int32
		wg          sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l, err := c.Acquire(ctx, name)
				if err != nil {
					// The server may notice the deadline a moment before ctx does.
					if ctx.Err() == nil && !errors.Is(err, ratequeue.ErrTimeout) {
						t.Errorf("Acquire: %v", err)
					}
					return
				}
				n := inFlight.Add(1)
				for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
				}
				mu.Lock()
				grants = append(grants, grantAt{l.GrantTime(), 1})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				inFlight.Add(-1)
				if err := l.Release(context.Background()); err != nil {
					t.Errorf("Release: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if m := maxInFlight.Load(); m > concurrency {
		t.Errorf("%d leases held at once, the cap is %d", m, concurrency)
	}
	if util := checkGCRA(t, grants, rate, burst, 1); util < 0.9 {
		t.Errorf("used %.1f%% of the rate, want at least 90%%", 100*util)
	}
	eventually(t, 5*time.Second, "no leases in flight", func() bool { return stats(t, c, name).GetLeasesInFlight() == 0 })
}

// buildWorker builds the example worker once per test binary.
// TestMain removes workerDir.
var buildWorker = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(workerDir, "worker")
	out, err := exec.Command("go", "build", "-o", bin, "./examples/worker").CombinedOutput()
	if err != nil {
		return "", errors.New("go build ./examples/worker: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func worker(t *testing.T) string {
	t.Helper()
	bin, err := buildWorker()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// workerGrant is one line of the example worker's output.
type workerGrant struct {
	Client  string  `json:"client"`
	PID     int     `json:"pid"`
	LeaseID string  `json:"lease_id"`
	Load    float64 `json:"load"`
	TMs     float64 `json:"t_ms"`
	GrantMs float64 `json:"grant_ms"`
}

func msTime(ms float64) time.Time { return time.UnixMicro(int64(ms * 1000)) }

// Several worker processes (the example program) share a resource by load:
// together they keep to its load limit and concurrency cap while using at
// least 90% of it.
func TestProcessesShareResource(t *testing.T) {
	t.Parallel()
	const (
		rate, burst = 30.0, 6.0 // load units per second; each grant is load 2
		concurrency = 4
		procs       = 3
		perProc     = 16
	)
	bin := worker(t)
	c := dial(t, "")
	name := put(t, c, resource(t, 5*time.Second, concurrency, limit(pb.Dimension_DIMENSION_LOAD, rate, time.Second, burst)))

	var (
		mu     sync.Mutex
		grants []grantAt
		pids   = map[int]int{}
		wg     sync.WaitGroup
	)
	for range procs {
		cmd := exec.Command(bin, "-addr", srv.Addr, "-resource", name, "-count", strconv.Itoa(perProc),
			"-load", "2", "-parallel", "3", "-hold", "30ms")
		cmd.Stderr = os.Stderr
		testserver.DieWithParent(cmd)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var g workerGrant
				if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
					t.Errorf("worker output %q: %v", sc.Text(), err)
					continue
				}
				mu.Lock()
				grants = append(grants, grantAt{msTime(g.GrantMs), g.Load})
				pids[g.PID]++
				mu.Unlock()
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("worker: %v", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("workers did not finish within 30s")
	}
	if len(grants) != procs*perProc || len(pids) != procs {
		t.Fatalf("got %d grants from %d processes, want %d from %d", len(grants), len(pids), procs*perProc, procs)
	}
	if util := checkGCRA(t, grants, rate, burst, 2); util < 0.9 {
		t.Errorf("used %.1f%% of the load limit, want at least 90%%", 100*util)
	}
	// Every lease was released: none in flight, none expired.
	s := stats(t, c, name)
	if s.GetLeasesInFlight() != 0 || s.GetExpirations() != 0 || s.GetGrants() != procs*perProc {
		t.Errorf("stats after the run: %v", s)
	}
}

// A worker process killed while it holds a lease: the lease returns to the
// resource at its TTL, not before.
func TestKilledProcessLeaseReturnsAtTTL(t *testing.T) {
	t.Parallel()
	const ttl = 1500 * time.Millisecond
	bin := worker(t)
	c := dial(t, "")
	name := put(t, c, resource(t, ttl, 1))

	cmd := exec.Command(bin, "-addr", srv.Addr, "-resource", name, "-count", "1", "-hold", "1h")
	cmd.Stderr = os.Stderr
	testserver.DieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatal("worker exited without a grant")
		}
		t.Logf("worker: %s", l)
	case <-time.After(10 * time.Second):
		t.Fatal("worker got no grant within 10s")
	}
	// Heartbeats keep the lease past its TTL while the worker lives.
	time.Sleep(2 * ttl)
	if s := stats(t, c, name); s.GetLeasesInFlight() != 1 || s.GetExpirations() != 0 {
		t.Fatalf("while the worker lives: %d leases in flight, %d expirations; want 1, 0", s.GetLeasesInFlight(), s.GetExpirations())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = cmd.Wait()
	eventually(t, ttl+3*time.Second, "the lease to expire", func() bool { return stats(t, c, name).GetLeasesInFlight() == 0 })
	took := time.Since(killed)
	t.Logf("lease returned %v after the kill (TTL %v)", took.Round(time.Millisecond), ttl)
	if took < ttl/2 {
		t.Errorf("the lease returned %v after the kill, before its TTL %v could have run out", took, ttl)
	}
	if s := stats(t, c, name); s.GetExpirations() != 1 {
		t.Errorf("%d expirations, want 1", s.GetExpirations())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := c.Acquire(ctx, name)
	if err != nil {
		t.Fatalf("Acquire after the expiry: %v", err)
	}
	l.Release(context.Background())
}
