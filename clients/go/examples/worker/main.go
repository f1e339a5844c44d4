// Command worker is a ratequeue worker: it acquires count leases on a
// resource, holds each for -hold, releases it, and prints one JSON line per
// grant to stdout.
//
//	go run ./examples/worker -addr localhost:7070 -resource openai-gpt4 -count 100 -load 2000
//
// Each line looks like
//
//	{"client":"go","pid":4242,"seq":1,"resource":"openai-gpt4","lease_id":"…","load":2000,"ts":"2026-01-02T15:04:05.123456789Z","t_ms":1767366245123.456,"grant_ms":1767366245122,"wait_ms":12.5}
//
// where ts and t_ms are the worker's clock when the grant arrived and
// grant_ms the server's grant time in whole Unix milliseconds (exact: the
// server's clock has millisecond resolution). The address defaults to
// RATEQUEUE_URL, the API key to RATEQUEUE_API_KEY.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
)

type grant struct {
	Client   string  `json:"client"`
	PID      int     `json:"pid"`
	Seq      int64   `json:"seq"`
	Resource string  `json:"resource"`
	LeaseID  string  `json:"lease_id"`
	Load     float64 `json:"load"`
	TS       string  `json:"ts"`
	TMs      float64 `json:"t_ms"`
	GrantMs  int64   `json:"grant_ms,omitempty"`
	WaitMs   float64 `json:"wait_ms"`
}

func ms(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

func main() {
	addr := flag.String("addr", "", "server address list (default $RATEQUEUE_URL, else "+ratequeue.DefaultURL+")")
	resource := flag.String("resource", "", "resource to acquire (required)")
	count := flag.Int("count", 10, "number of leases to acquire")
	load := flag.Float64("load", 1, "load of each acquire")
	lane := flag.String("lane", "", "lane to wait in (default: the resource's default lane)")
	priority := flag.Int("priority", 10, "priority within the lane")
	parallel := flag.Int("parallel", 1, "goroutines acquiring at once")
	hold := flag.Duration("hold", 0, "how long to hold each lease before releasing it")
	flag.Parse()
	if *resource == "" || *count < 0 || *parallel < 1 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := ratequeue.Dial(ctx, *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	defer c.Close()

	var (
		next   atomic.Int64
		outMu  sync.Mutex
		enc    = json.NewEncoder(os.Stdout)
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	opts := []ratequeue.AcquireOption{ratequeue.Load(*load), ratequeue.Priority(int32(*priority))}
	if *lane != "" {
		opts = append(opts, ratequeue.Lane(*lane))
	}
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := next.Add(1)
				if seq > int64(*count) {
					return
				}
				l, err := c.Acquire(ctx, *resource, opts...)
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintln(os.Stderr, "worker: acquire:", err)
						failed.Store(true)
					}
					return
				}
				now := time.Now()
				g := grant{Client: "go", PID: os.Getpid(), Seq: seq, Resource: l.Resource(), LeaseID: l.ID(), Load: l.Load(),
					TS: now.UTC().Format(time.RFC3339Nano), TMs: ms(now), WaitMs: float64(l.Wait()) / 1e6}
				if t := l.GrantTime(); !t.IsZero() {
					g.GrantMs = t.UnixMilli()
				}
				outMu.Lock()
				_ = enc.Encode(g)
				outMu.Unlock()
				if *hold > 0 {
					select {
					case <-time.After(*hold):
					case <-ctx.Done():
					}
				}
				if err := l.Release(context.Background()); err != nil {
					fmt.Fprintln(os.Stderr, "worker: release:", err)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		os.Exit(1)
	}
}
