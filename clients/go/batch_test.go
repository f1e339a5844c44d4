package ratequeue_test

// Batches on the session stream against a real server: what accumulates
// while the client's sender is busy goes out as one SessionRequestBatch, and
// the server's SessionResponseBatch reaches each waiter as if its answer had
// come alone. A stream interceptor (WithDialOptions) watches the messages.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// watched records the session messages a client writes and reads.
type watched struct {
	mu sync.Mutex
	// sent holds how many requests each written message carried (1 for
	// one alone); mixed counts the answer batches holding both grants and
	// failures.
	sent  []int
	mixed int
}

// option installs the watch on a client.
func (w *watched) option() ratequeue.Option {
	return ratequeue.WithDialOptions(grpc.WithChainStreamInterceptor(
		func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			return watchedStream{s, w}, err
		}))
}

type watchedStream struct {
	grpc.ClientStream
	w *watched
}

func (s watchedStream) SendMsg(m any) error {
	if req, ok := m.(*pb.SessionRequest); ok {
		n := 1
		if b := req.GetBatch(); b != nil {
			n = len(b.GetRequests())
		}
		s.w.mu.Lock()
		s.w.sent = append(s.w.sent, n)
		s.w.mu.Unlock()
	}
	return s.ClientStream.SendMsg(m)
}

func (s watchedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if resp, ok := m.(*pb.SessionResponse); ok && err == nil && resp.GetBatch() != nil {
		var granted, failed bool
		for _, r := range resp.GetBatch().GetResponses() {
			granted = granted || r.GetGranted() != nil
			failed = failed || r.GetFailure() != nil
		}
		if granted && failed {
			s.w.mu.Lock()
			s.w.mixed++
			s.w.mu.Unlock()
		}
	}
	return err
}

// 2,500 acquires started at once on a resource that holds 100 go out in
// batches of at most 1,000; each is granted a lease of its own in turn, and
// each release finds its lease.
func TestManyAcquiresAtOnceAreAnsweredThroughBatches(t *testing.T) {
	t.Parallel()
	var w watched
	c := dial(t, "", w.option())
	r := resource(t, 30*time.Second, 100)
	r.MaxQueue = 10000
	name := put(t, c, r)
	const n = 2500
	ids := make([]string, n)
	var held, most atomic.Int32
	inParallelAtOnce(t, n, func(ctx context.Context, i int) error {
		l, err := c.Acquire(ctx, name)
		if err != nil {
			return err
		}
		ids[i] = l.ID()
		now := held.Add(1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		held.Add(-1)
		return l.Release(ctx)
	})
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(seen) != n || most.Load() > 100 {
		t.Fatalf("%d distinct leases of %d, at most %d held at once (concurrency 100)", len(seen), n, most.Load())
	}
	if s := stats(t, c, name); s.GetGrants() != n || s.GetLeasesInFlight() != 0 || s.GetRejections() != 0 {
		t.Fatalf("grants %d, in flight %d, rejections %d; want %d, 0, 0", s.GetGrants(), s.GetLeasesInFlight(), s.GetRejections(), n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	total, largest := 0, 0
	for _, k := range w.sent {
		total += k
		largest = max(largest, k)
	}
	t.Logf("%d requests in %d messages, the largest batch %d", total, len(w.sent), largest)
	if largest > protocol.MaxBatchMessages || largest < 2 || len(w.sent) >= 2*n || total < 2*n {
		t.Fatalf("%d requests in %d messages, the largest batch %d: want batches of 2 to %d, fewer messages than the %d acquires and releases",
			total, len(w.sent), largest, protocol.MaxBatchMessages, 2*n)
	}
}

// Acquires sent together that the server answers in one batch, some
// granted, some refused (unknown resource, unknown lane, a full resource
// with a deadline already passed): each caller gets its own answer.
func TestAnswerBatchMixingGrantsAndFailures(t *testing.T) {
	t.Parallel()
	var w watched
	c := dial(t, "", w.option())
	free := put(t, c, resource(t, 30*time.Second, 0))
	full := put(t, c, resource(t, 30*time.Second, 1))
	blocker := acquire(t, c, full)
	defer blocker.Release(context.Background())
	const n = 200
	leases := make([]*ratequeue.Lease, n)
	passed, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	inParallelAtOnce(t, n, func(ctx context.Context, i int) error {
		var err error
		want := []error{nil, ratequeue.ErrNotFound, ratequeue.ErrInvalid, ratequeue.ErrTimeout}[i%4]
		switch i % 4 {
		case 0:
			leases[i], err = c.Acquire(ctx, free)
		case 1:
			_, err = c.Acquire(ctx, "go-no-such-resource-"+free)
		case 2:
			_, err = c.Acquire(ctx, free, ratequeue.Lane("no-such-lane"))
		case 3:
			_, err = c.Acquire(passed, full)
		}
		if want == nil && (err != nil || leases[i].Resource() != free) {
			return fmt.Errorf("acquire %d: %v, want a lease on %s", i, err, free)
		}
		if want != nil && !errors.Is(err, want) {
			return fmt.Errorf("acquire %d: %v, want %v", i, err, want)
		}
		return nil
	})
	seen := map[string]bool{}
	for _, l := range leases {
		if l != nil {
			seen[l.ID()] = true
			if err := l.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != n/4 {
		t.Fatalf("%d distinct leases, want %d", len(seen), n/4)
	}
	if s := stats(t, c, full); s.GetTimeouts() != n/4 {
		t.Fatalf("%d timeouts on the full resource, want %d", s.GetTimeouts(), n/4)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mixed == 0 {
		t.Fatal("no answer batch held both grants and failures")
	}
}

// inParallelAtOnce runs do(ctx, i) for i in [0, n), each in its own
// goroutine, all let go at once, and fails the test with the first error.
func inParallelAtOnce(t *testing.T, n int, do func(ctx context.Context, i int) error) {
	t.Helper()
	start := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := do(ctx, i); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
