// Command session measures the Go client's session path: acquire+release
// pairs per second with -inflight goroutines each looping Acquire then
// Release through one Client (one session stream), and the process's CPU
// time per pair (steadier than pairs/s on a busy machine), against a real server
// started here (server/dist/main.js, `npm run build` first; one resource
// "bench" without limits, so every acquire is granted at once) or the one
// at -addr. Each run prints one JSON line; the last line has the best run.
//
// Run it from clients/go: go run ./internal/bench/session [-inflight 64]
// [-seconds 5] [-runs 2], or bench/go-session from the repository root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

const config = `
resources:
  bench:
    max_queue: 100000
`

func main() {
	inflight := flag.Int("inflight", 64, "acquire+release loops in flight")
	seconds := flag.Float64("seconds", 5, "length of each run, after a warm-up")
	runs := flag.Int("runs", 2, "runs")
	addr := flag.String("addr", "", "a running server with a resource \"bench\" (instead of starting one)")
	flag.Parse()
	if err := bench(*addr, *inflight, time.Duration(*seconds*float64(time.Second)), *runs); err != nil {
		fmt.Fprintln(os.Stderr, "go-session:", err)
		os.Exit(1)
	}
}

func bench(addr string, inflight int, d time.Duration, runs int) error {
	if addr == "" {
		srv, err := testserver.StartWith(testserver.Options{Config: config, Args: []string{"--http-port", "off"}})
		if err != nil {
			return err
		}
		defer srv.Stop()
		addr = srv.Addr
	}
	best := 0.0
	for range runs {
		pairs, cpu, err := run(addr, inflight, d)
		if err != nil {
			return err
		}
		best = max(best, pairs)
		print(map[string]any{"mode": "session", "inflight": inflight, "pairsPerSec": int(pairs + 0.5),
			"cpuUsPerPair": float64(cpu.Nanoseconds()/100) / 10})
	}
	print(map[string]any{
		"machine":             map[string]any{"cpus": runtime.NumCPU(), "go": runtime.Version()},
		"inflight":            inflight,
		"seconds":             d.Seconds(),
		"runs":                runs,
		"session_pairsPerSec": int(best + 0.5),
	})
	return nil
}

// run measures one client's pairs per second over d, after a warm-up, and
// the process's CPU time per pair.
func run(addr string, inflight int, d time.Duration) (float64, time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := ratequeue.Dial(ctx, addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l, err := c.Acquire(context.Background(), "bench")
				if err == nil {
					err = l.Release(context.Background())
				}
				if err != nil {
					errs <- err
					cancel()
					return
				}
				count.Add(1)
			}
		}()
	}
	time.Sleep(min(time.Second, d/4))
	from, start, cpu := count.Load(), time.Now(), cpuTime()
	time.Sleep(d)
	done := count.Load() - from
	pairs := float64(done) / time.Since(start).Seconds()
	perPair := (cpuTime() - cpu) / time.Duration(max(done, 1))
	cancel()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	return pairs, perPair, nil
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func print(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}
