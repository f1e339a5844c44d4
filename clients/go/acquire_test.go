package ratequeue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
)

func acquire(t *testing.T, c *ratequeue.Client, name string, opts ...ratequeue.AcquireOption) *ratequeue.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := c.Acquire(ctx, name, opts...)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", name, err)
	}
	return l
}

// waitAcquire starts an Acquire in the background and returns its result.
func waitAcquire(ctx context.Context, c *ratequeue.Client, name string, opts ...ratequeue.AcquireOption) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		l, err := c.Acquire(ctx, name, opts...)
		ch <- acquired{l, err}
	}()
	return ch
}

type acquired struct {
	lease *ratequeue.Lease
	err   error
}

func recv(t *testing.T, ch <-chan acquired, within time.Duration) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(within):
		t.Fatalf("Acquire did not return within %v", within)
		return acquired{}
	}
}

// A cancelled context ends the wait at once and frees the queue place: the
// next release goes to the next request, not to the cancelled one.
func TestCancelFreesQueuePlace(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	name := put(t, c, resource(t, 10*time.Second, 1))
	held := acquire(t, c, name)

	ctx, cancel := context.WithCancel(context.Background())
	ch := waitAcquire(ctx, c, name)
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, c, name)) == 1 })
	cancel()
	a := recv(t, ch, time.Second)
	isErr(t, a.err, context.Canceled)
	if status.Code(a.err) != codes.Canceled {
		t.Errorf("status code %v, want Canceled", status.Code(a.err))
	}
	eventually(t, 5*time.Second, "an empty queue", func() bool {
		s := stats(t, c, name)
		return queueDepth(s) == 0 && s.GetCancellations() == 1
	})

	if err := held.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	l, err := c.Acquire(ctx2, name)
	if err != nil {
		t.Fatalf("Acquire after the release: %v", err)
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, c, name); s.GetGrants() != 2 || s.GetLeasesInFlight() != 0 {
		t.Errorf("stats: %d grants, %d in flight; want 2, 0", s.GetGrants(), s.GetLeasesInFlight())
	}
}

// The context's deadline ends the wait with ErrTimeout and frees the place.
func TestDeadlineTimesOut(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	name := put(t, c, resource(t, 10*time.Second, 1))
	held := acquire(t, c, name)
	defer held.Release(context.Background())

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(ctx, name)
	took := time.Since(start)
	isErr(t, err, ratequeue.ErrTimeout)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("status code %v, want DeadlineExceeded", status.Code(err))
	}
	// Not before the deadline: the server counts the timeout from when the
	// request arrived, after the client sent it.
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("Acquire returned after %v, want 300ms (and not much more)", took)
	}
	// The server enforces the timeout it was sent: it decides, and counts a
	// timeout, not a cancellation racing it.
	eventually(t, 5*time.Second, "an empty queue", func() bool { return queueDepth(stats(t, c, name)) == 0 })
	if s := stats(t, c, name); s.GetTimeouts() != 1 || s.GetCancellations() != 0 {
		t.Errorf("the server counted %d timeouts and %d cancellations, want 1 and 0", s.GetTimeouts(), s.GetCancellations())
	}
}

// A context whose deadline has already passed makes one attempt, like the
// protocol's timeout of zero: a free slot is granted, and otherwise the
// server answers at once.
func TestPassedDeadlineMakesOneAttempt(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	r := resource(t, 10*time.Second, 1)
	r.MaxQueue = 1
	name := put(t, c, r)
	passed, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()

	held, err := c.Acquire(passed, name)
	if err != nil {
		t.Fatalf("Acquire of a free slot with a passed deadline: %v", err)
	}
	start := time.Now()
	_, err = c.Acquire(passed, name)
	isCode(t, err, ratequeue.ErrTimeout, codes.DeadlineExceeded)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the attempt took %v, want at once", d)
	}
	if s := stats(t, c, name); s.GetTimeouts() != 1 {
		t.Errorf("the server counted %d timeouts, want 1: it decided", s.GetTimeouts())
	}
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	waiting := waitAcquire(wctx, c, name)
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, c, name)) == 1 })
	_, err = c.Acquire(passed, name)
	isCode(t, err, ratequeue.ErrQueueFull, codes.ResourceExhausted)
	wcancel()
	isErr(t, recv(t, waiting, 5*time.Second).err, context.Canceled)
	if err := held.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Each sentinel error for its cause, against the real server.
func TestSentinelErrors(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("NotFound", func(t *testing.T) {
		_, err := c.Acquire(ctx, "go-no-such-resource")
		isErr(t, err, ratequeue.ErrNotFound)
		if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() == "" {
			t.Errorf("status %v, want NotFound with a message", s)
		}
		var e *ratequeue.Error
		if !errors.As(err, &e) || e.Code() != codes.NotFound {
			t.Errorf("errors.As(*ratequeue.Error) failed on %v", err)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		name := put(t, c, resource(t, 10*time.Second, 1))
		_, err := c.Acquire(ctx, name, ratequeue.Load(-1))
		isErr(t, err, ratequeue.ErrInvalid)
		_, err = c.Acquire(ctx, "")
		isErr(t, err, ratequeue.ErrInvalid)
	})
	t.Run("QueueFull", func(t *testing.T) {
		r := resource(t, 10*time.Second, 1)
		r.MaxQueue = 1
		name := put(t, c, r)
		held := acquire(t, c, name)
		defer held.Release(context.Background())
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		ch := waitAcquire(wctx, c, name)
		eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, c, name)) == 1 })
		_, err := c.Acquire(ctx, name)
		isErr(t, err, ratequeue.ErrQueueFull)
		wcancel()
		isErr(t, recv(t, ch, time.Second).err, context.Canceled)
	})
	t.Run("Timeout", func(t *testing.T) {
		name := put(t, c, resource(t, 10*time.Second, 1))
		held := acquire(t, c, name)
		defer held.Release(context.Background())
		tctx, tcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer tcancel()
		_, err := c.Acquire(tctx, name)
		isErr(t, err, ratequeue.ErrTimeout)
	})
	t.Run("Unavailable", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		_, err := ratequeue.Dial(dctx, freeAddr(t))
		isErr(t, err, ratequeue.ErrUnavailable)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("status code %v, want Unavailable", status.Code(err))
		}
	})
	t.Run("DeletedResource", func(t *testing.T) {
		// Deleting a resource ends its leases silently: the next heartbeat
		// finds the lease gone (Lost closes), and Release finds it unknown.
		// (ErrLeaseExpired: TestLeaseLostWhileCutOff.)
		const ttl = 600 * time.Millisecond
		c2 := dial(t, "")
		name := put(t, c2, resource(t, ttl, 1))
		l := acquire(t, c2, name)
		if _, err := c2.Admin().DeleteResource(ctx, &pb.DeleteResourceRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.Lost():
		case <-time.After(ttl/3 + 5*time.Second):
			t.Fatal("Lost did not close after the resource was deleted")
		}
		isCode(t, l.Release(ctx), ratequeue.ErrNotFound, codes.NotFound)
	})
	t.Run("Closed", func(t *testing.T) {
		c2 := dial(t, "")
		c2.Close()
		_, err := c2.Acquire(ctx, "boot")
		isErr(t, err, ratequeue.ErrClosed)
	})
}

// Heartbeats keep a lease past its TTL; Release then finds it held.
func TestHeartbeatsKeepLease(t *testing.T) {
	t.Parallel()
	// Long enough that a stall of the race-instrumented test process is not
	// mistaken for a missed heartbeat (they go every ttl/3).
	const ttl = 1500 * time.Millisecond
	c := dial(t, "")
	name := put(t, c, resource(t, ttl, 1))
	l := acquire(t, c, name)
	if l.TTL() != ttl {
		t.Errorf("TTL %v, want %v", l.TTL(), ttl)
	}
	time.Sleep(4 * ttl) // only heartbeats keep the lease
	if s := stats(t, c, name); s.GetLeasesInFlight() != 1 || s.GetExpirations() != 0 {
		t.Fatalf("%d leases in flight, %d expirations; want 1, 0", s.GetLeasesInFlight(), s.GetExpirations())
	}
	select {
	case <-l.Lost():
		t.Fatal("lease reported lost")
	default:
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(context.Background()); err != nil {
		t.Errorf("second Release: %v", err)
	}
}

// Load, ActualLoad, Lane and Priority reach the server.
func TestOptions(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	t.Run("ActualLoadRefunds", func(t *testing.T) {
		name := put(t, c, resource(t, 10*time.Second, 0, limit(pb.Dimension_DIMENSION_LOAD, 1, time.Hour, 10)))
		l := acquire(t, c, name, ratequeue.Load(10))
		if l.Load() != 10 {
			t.Errorf("lease load %v, want 10", l.Load())
		}
		if err := l.Release(context.Background(), ratequeue.ActualLoad(3)); err != nil {
			t.Fatal(err)
		}
		// 7 units refunded: a load of 7 fits at once, with an hour-long period.
		l = acquire(t, c, name, ratequeue.Load(7))
		if l.Wait() != 0 {
			t.Errorf("the refunded load waited %v in the queue, want 0", l.Wait())
		}
		if err := l.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("LaneAndPriority", func(t *testing.T) {
		r := resource(t, 10*time.Second, 1)
		r.Lanes = []*pb.Lane{{Name: "user-facing", Weight: 3}, {Name: "batch", Weight: 1}}
		name := put(t, c, r)
		held := acquire(t, c, name, ratequeue.Lane("batch"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		low := waitAcquire(ctx, c, name, ratequeue.Priority(1))
		eventually(t, 5*time.Second, "one queued", func() bool { return queueDepth(stats(t, c, name)) == 1 })
		high := waitAcquire(ctx, c, name, ratequeue.Priority(100))
		eventually(t, 5*time.Second, "two queued", func() bool { return queueDepth(stats(t, c, name)) == 2 })
		held.Release(context.Background())
		a := recv(t, high, 5*time.Second)
		if a.err != nil {
			t.Fatalf("high priority: %v", a.err)
		}
		select {
		case <-low:
			t.Fatal("the low priority request was granted while the high one held the only slot")
		default:
		}
		a.lease.Release(context.Background())
		b := recv(t, low, 5*time.Second)
		if b.err != nil {
			t.Fatalf("low priority: %v", b.err)
		}
		b.lease.Release(context.Background())
		s := stats(t, c, name)
		for _, ln := range s.GetLanes() {
			if want := map[string]uint64{"user-facing": 2, "batch": 1}[ln.GetName()]; ln.GetGrants() != want {
				t.Errorf("lane %s: %d grants, want %d", ln.GetName(), ln.GetGrants(), want)
			}
		}
		_, err := c.Acquire(ctx, name, ratequeue.Lane("no-such-lane"))
		isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)
	})
}

// Do acquires, runs the function and releases, also when it fails.
func TestDo(t *testing.T) {
	t.Parallel()
	c := dial(t, "")
	name := put(t, c, resource(t, 10*time.Second, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ran := false
	if err := c.Do(ctx, name, func(context.Context) error {
		ran = true
		if n := stats(t, c, name).GetLeasesInFlight(); n != 1 {
			t.Errorf("%d leases in flight inside Do, want 1", n)
		}
		return nil
	}); err != nil || !ran {
		t.Fatalf("Do: %v (ran %v)", err, ran)
	}
	boom := errors.New("boom")
	if err := c.Do(ctx, name, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Do returned %v, want boom", err)
	}
	if s := stats(t, c, name); s.GetLeasesInFlight() != 0 || s.GetGrants() != 2 {
		t.Errorf("%d in flight, %d grants; want 0, 2", s.GetLeasesInFlight(), s.GetGrants())
	}
	if err := c.Do(ctx, "go-no-such-resource", func(context.Context) error { return nil }); !errors.Is(err, ratequeue.ErrNotFound) {
		t.Errorf("Do on a missing resource: %v", err)
	}
}
