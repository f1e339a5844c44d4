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
// rate limit and concurrency cap, and in the run's fixed window use at least
// 90% of what the limit allows.
func TestGoroutinesShareResource(t *testing.T) {
	t.Parallel()
	const (
		concurrency = 4
		run         = 3 * time.Second
	)
	lim := gcra{amount: 20, periodMs: 1000, burst: 5} // 50 ms per grant: exact on the server's clock
	c := dial(t, "")
	name := put(t, c, resource(t, 5*time.Second, concurrency, limit(pb.Dimension_DIMENSION_REQUESTS, float64(lim.amount), time.Second, float64(lim.burst))))

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(run))
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
				grants = append(grants, grantAt{l.GrantTime().UnixMilli(), 1})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // the guarded call
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
	lim.check(t, grants)
	lim.use(t, grants, start.UnixMilli(), run.Milliseconds())
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
	GrantMs int64   `json:"grant_ms"`
}

// Several worker processes (the example program) share a resource by load:
// together they keep to its load limit, and in a fixed window use at least
// 90% of what it allows.
func TestProcessesShareResource(t *testing.T) {
	t.Parallel()
	const (
		load        = 2
		concurrency = 4
		procs       = 3
		parallel    = 3
		perProc     = 30 // 180 units, 4.3 s at the rate: more than the window
		window      = 3 * time.Second
	)
	lim := gcra{amount: 40, periodMs: 1000, burst: 8} // 25 ms per unit: exact on the server's clock
	bin := worker(t)
	c := dial(t, "")
	// The resource opens only once every worker waits on it, so that the
	// window measures sharing, not process start-up: until then it has one
	// slot, which the test holds.
	closed := resource(t, 5*time.Second, 1)
	name := put(t, c, closed)
	gate := acquire(t, c, name)

	var (
		mu     sync.Mutex
		grants []grantAt
		pids   = map[int]int{}
		wg     sync.WaitGroup
	)
	for range procs {
		cmd := exec.Command(bin, "-addr", srv.Addr, "-resource", name, "-count", strconv.Itoa(perProc),
			"-load", strconv.Itoa(load), "-parallel", strconv.Itoa(parallel), "-hold", "30ms")
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
				grants = append(grants, grantAt{g.GrantMs, int64(g.Load)})
				pids[g.PID]++
				mu.Unlock()
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("worker: %v", err)
			}
		}()
	}
	eventually(t, 20*time.Second, "every worker goroutine waiting", func() bool { return queueDepth(stats(t, c, name)) == procs*parallel })
	open := resource(t, 5*time.Second, concurrency, limit(pb.Dimension_DIMENSION_LOAD, float64(lim.amount), time.Second, float64(lim.burst)))
	open.Name = name
	start := time.Now()
	put(t, c, open)
	if err := gate.Release(context.Background()); err != nil {
		t.Fatal(err)
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
	lim.check(t, grants)
	lim.use(t, grants, start.UnixMilli(), window.Milliseconds())
	// Every lease was released: none in flight, none expired.
	s := stats(t, c, name)
	if s.GetLeasesInFlight() != 0 || s.GetExpirations() != 0 || s.GetGrants() != procs*perProc+1 {
		t.Errorf("stats after the run: %v", s)
	}
}

// A worker process killed while it holds a lease: the lease returns to the
// resource at its TTL, not before.
func TestKilledProcessLeaseReturnsAtTTL(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
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
	// The worker heartbeated every ttl/3, so the lease had at least 2/3 of
	// its TTL left at the kill (less a moment for timer and scheduling lag),
	// and at most all of it.
	if took < 2*ttl/3-100*time.Millisecond || took > ttl+time.Second {
		t.Errorf("the lease returned %v after the kill, want between 2/3 of its TTL %v and the TTL", took, ttl)
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
