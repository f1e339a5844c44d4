package ratequeue_test

// The session protocol's rules (proto/ratequeue/v1/ratequeue.proto, "Session
// protocol") against real servers: heartbeats of more than 1,000 leases, the
// codes that end a stream, releases sent again after a reconnect, and how
// long a waiting acquire survives without a stream.

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

// inParallel runs do(ctx, i) for i in [0, n) from 32 goroutines and fails
// the test with the first error, naming what.
func inParallel(t *testing.T, what string, n int, do func(ctx context.Context, i int) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	const workers = 32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := do(ctx, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%s: %v", what, err)
	}
}

// acquireN acquires n leases on name, from several goroutines.
func acquireN(t *testing.T, c *ratequeue.Client, name string, n int) []*ratequeue.Lease {
	t.Helper()
	leases := make([]*ratequeue.Lease, n)
	inParallel(t, "Acquire("+name+")", n, func(ctx context.Context, i int) (err error) {
		leases[i], err = c.Acquire(ctx, name)
		return err
	})
	return leases
}

// releaseAll releases leases, from several goroutines, and fails the test
// unless each release finds its lease held.
func releaseAll(t *testing.T, leases []*ratequeue.Lease) {
	t.Helper()
	inParallel(t, "Release", len(leases), func(ctx context.Context, i int) error { return leases[i].Release(ctx) })
}

// notLost fails the test if any of leases was reported lost.
func notLost(t *testing.T, when string, leases ...*ratequeue.Lease) {
	t.Helper()
	lost := 0
	for _, l := range leases {
		select {
		case <-l.Lost():
			lost++
		default:
		}
	}
	if lost > 0 {
		t.Fatalf("%s: %d of %d leases reported lost", when, lost, len(leases))
	}
}

// A client holding more leases than one heartbeat may name (1,000) keeps
// all of them, for several TTLs and across a reconnect: it heartbeats them
// in several messages.
func TestHeartbeatsOfManyLeases(t *testing.T) {
	t.Parallel()
	const n, ttl = 2500, 3 * time.Second
	admin := dial(t, "")
	name := put(t, admin, resource(t, ttl, 0))
	p := proxy(t, srv.Addr)
	c := dial(t, p.Addr)
	leases := acquireN(t, c, name, n)
	held := func(when string) {
		t.Helper()
		if s := stats(t, admin, name); s.GetLeasesInFlight() != n || s.GetExpirations() != 0 {
			t.Fatalf("%s: %d leases in flight, %d expirations; want %d, 0", when, s.GetLeasesInFlight(), s.GetExpirations(), n)
		}
		notLost(t, when, leases...)
	}

	time.Sleep(3 * ttl) // only heartbeats keep the leases
	held("after 3 TTLs")

	p.Cut()
	eventually(t, 10*time.Second, "the client to reconnect", func() bool { return p.Accepted() >= 2 })
	time.Sleep(2 * ttl) // only heartbeats on the new session keep them
	held("2 TTLs after a reconnect")

	releaseAll(t, leases)
	if s := stats(t, admin, name); s.GetLeasesInFlight() != 0 || s.GetExpirations() != 0 {
		t.Fatalf("after releasing all: %d leases in flight, %d expirations; want 0, 0", s.GetLeasesInFlight(), s.GetExpirations())
	}
}

// A stream that ends with a code other than the retried ones and the key
// refusals (here RESOURCE_EXHAUSTED: the key's sessions are all taken) fails
// the waiting operations with it at once; held leases are kept, and the
// client reconnects by itself to heartbeat them.
func TestSessionLimitFailsWaitingKeepsLeases(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	own, err := testserver.StartWith(testserver.Options{
		Config: "resources:\n  one:\n    concurrency: 1\n    lease_ttl: 10s\n  two: {}\n",
		Args:   []string{"--max-sessions-per-key", "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Stop() })
	p := proxy(t, own.Addr)
	a := dial(t, p.Addr) // the only session the server allows
	held := acquire(t, a, "one")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waiting := waitAcquire(ctx, a, "one")
	// Unary admin calls take no session.
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, a, "one")) == 1 })

	// A second client is refused at once, not retried.
	start := time.Now()
	isCode(t, dialErr(t, own.Addr), ratequeue.ErrQueueFull, codes.ResourceExhausted)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial beyond the session limit failed after %v, want at once", d)
	}

	// Cut a off: its stream ends without a status (retried), and the second
	// client takes the session.
	p.Pause()
	cut := time.Now()
	var b *ratequeue.Client
	eventually(t, 5*time.Second, "the server to free a's session", func() bool {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer dcancel()
		b, err = ratequeue.Dial(dctx, own.Addr)
		return err == nil
	})
	select {
	case r := <-waiting:
		t.Fatalf("the waiting acquire ended while its stream was merely cut: %v", r.err)
	default:
	}

	// a's attempts now end RESOURCE_EXHAUSTED: the waiting acquire fails
	// with it, and so does a new one.
	p.Resume()
	isCode(t, recv(t, waiting, 5*time.Second).err, ratequeue.ErrQueueFull, codes.ResourceExhausted)
	_, err = a.Acquire(ctx, "two")
	isCode(t, err, ratequeue.ErrQueueFull, codes.ResourceExhausted)
	notLost(t, "while the sessions are all taken", held)

	// Once the session is free, a reconnects by itself and heartbeats the
	// lease: past the expiry the lease had when a was cut off, it is held.
	b.Close()
	eventually(t, 10*time.Second, "a to reconnect", func() bool {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		defer acancel()
		l, err := a.Acquire(actx, "two")
		if err == nil {
			l.Release(ctx)
		}
		return err == nil
	})
	time.Sleep(time.Until(cut.Add(ttl + time.Second)))
	if s := stats(t, a, "one"); s.GetLeasesInFlight() != 1 || s.GetExpirations() != 0 {
		t.Fatalf("%d leases in flight, %d expirations; want 1, 0", s.GetLeasesInFlight(), s.GetExpirations())
	}
	notLost(t, "after the reconnect", held)
	if err := held.Release(ctx); err != nil {
		t.Fatalf("Release of the kept lease: %v", err)
	}
}

// A release that no server answered is sent again on the next stream, also
// after the caller's context ended: the slot returns when the client
// reconnects, not at the lease's TTL.
func TestReleaseSentAgainAfterReconnect(t *testing.T) {
	t.Parallel()
	const ttl = 6 * time.Second
	admin := dial(t, "")
	name := put(t, admin, resource(t, ttl, 2))
	p := proxy(t, srv.Addr)
	c := dial(t, p.Addr)
	gaveUp, waited := acquire(t, c, name), acquire(t, c, name)

	p.Pause()
	rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer rcancel()
	isErr(t, gaveUp.Release(rctx), ratequeue.ErrTimeout)
	released := make(chan error, 1)
	go func() { released <- waited.Release(context.Background()) }()
	select {
	case err := <-released:
		t.Fatalf("Release returned while no server was reachable: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	p.Resume()
	select {
	case err := <-released:
		if err != nil {
			t.Fatalf("Release after the reconnect: %v", err)
		}
	case <-time.After(ttl / 3):
		t.Fatal("Release did not return within a third of the TTL after the reconnect")
	}
	// Before the lease's TTL could have run out (its last heartbeat was at
	// most a third of a TTL before the cut).
	eventually(t, ttl/3, "both releases to arrive", func() bool { return stats(t, admin, name).GetLeasesInFlight() == 0 })
	if s := stats(t, admin, name); s.GetExpirations() != 0 {
		t.Fatalf("%d leases expired, want both released", s.GetExpirations())
	}
}

// Without a working stream a waiting acquire survives the reconnect
// timeout, counted from when the stream went down or from the acquire if
// that came later, then fails with ErrUnavailable.
func TestUnavailableAfterReconnectTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	admin := dial(t, "")
	name := put(t, admin, resource(t, 30*time.Second, 1))
	p := proxy(t, srv.Addr)
	c := dial(t, p.Addr, ratequeue.WithReconnectTimeout(timeout))
	held := acquire(t, c, name)
	defer held.Release(context.Background())
	type result struct {
		err error
		at  time.Time
	}
	wait := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			_, err := c.Acquire(context.Background(), name)
			ch <- result{err, time.Now()}
		}()
		return ch
	}
	before := wait()
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, admin, name)) == 1 })
	p.Pause()
	cut := time.Now()
	// The server drops the session with its waiting acquire.
	eventually(t, 5*time.Second, "an empty queue", func() bool { return queueDepth(stats(t, admin, name)) == 0 })
	time.Sleep(timeout / 2)
	laterStart := time.Now()
	later := wait()

	check := func(ch <-chan result, from time.Time, what string) {
		t.Helper()
		select {
		case r := <-ch:
			isErr(t, r.err, ratequeue.ErrUnavailable)
			if d := r.at.Sub(from); d < timeout || d > timeout+2*time.Second {
				t.Errorf("%s failed %v after it could count, want the reconnect timeout %v (and not much later)", what, d, timeout)
			}
		case <-time.After(timeout + 5*time.Second):
			t.Fatalf("%s did not fail", what)
		}
	}
	check(before, cut, "the acquire waiting when the stream went down")
	check(later, laterStart, "the acquire made while the stream was down")
	p.Resume()
}
