package ratequeue_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

func proxy(t *testing.T, target string) *testserver.Proxy {
	t.Helper()
	p, err := testserver.NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// When the connection breaks, the client reconnects, re-sends its waiting
// acquire and heartbeats its lease back onto the new session before the
// TTL runs out.
func TestReconnectReattaches(t *testing.T) {
	t.Parallel()
	// Long enough that the cut-off (a poll and a reconnect) fits well within
	// one TTL on a loaded machine.
	const ttl = 3 * time.Second
	admin := dial(t, "")
	name := put(t, admin, resource(t, ttl, 1))
	p := proxy(t, srv.Addr)
	c := dial(t, p.Addr)
	held := acquire(t, c, name)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waiting := waitAcquire(ctx, c, name)
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, admin, name)) == 1 })

	p.Pause()
	// The server drops the session and its waiting acquire.
	eventually(t, 5*time.Second, "an empty queue while the client is cut off", func() bool { return queueDepth(stats(t, admin, name)) == 0 })
	p.Resume()
	eventually(t, 5*time.Second, "the acquire queued again", func() bool { return queueDepth(stats(t, admin, name)) == 1 })
	time.Sleep(2 * ttl) // past the TTL: only heartbeats on the new session keep the lease
	if s := stats(t, admin, name); s.GetLeasesInFlight() != 1 || s.GetExpirations() != 0 {
		t.Fatalf("%d leases in flight, %d expirations; want 1, 0", s.GetLeasesInFlight(), s.GetExpirations())
	}
	if err := held.Release(context.Background()); err != nil {
		t.Fatalf("Release after the reconnect: %v", err)
	}
	a := recv(t, waiting, 5*time.Second)
	if a.err != nil {
		t.Fatalf("the waiting acquire: %v", a.err)
	}
	a.lease.Release(context.Background())
}

// A lease whose client is cut off for longer than its TTL is lost: Lost
// closes after the reconnect and Release reports ErrLeaseExpired.
func TestLeaseLostWhileCutOff(t *testing.T) {
	t.Parallel()
	const ttl = 500 * time.Millisecond
	admin := dial(t, "")
	name := put(t, admin, resource(t, ttl, 1))
	p := proxy(t, srv.Addr)
	c := dial(t, p.Addr)
	l := acquire(t, c, name)
	p.Pause()
	eventually(t, 5*time.Second, "the lease to expire", func() bool { return stats(t, admin, name).GetExpirations() == 1 })
	p.Resume()
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost did not close after the reconnect")
	}
	err := l.Release(context.Background())
	isErr(t, err, ratequeue.ErrLeaseExpired)
}

// A dead server in the list is skipped: the client tries the next one.
// (Following a standby to the leader, and failover, are in
// failover_test.go, against a real group.)
func TestDeadServerSkipped(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{
		"http://" + freeAddr(t) + "," + srv.Addr,
		freeAddr(t) + "," + freeAddr(t) + ",http://" + srv.Addr,
	} {
		t.Run(addr, func(t *testing.T) {
			c := dial(t, addr)
			name := put(t, c, resource(t, 5*time.Second, 1))
			l := acquire(t, c, name)
			if n := stats(t, c, name).GetLeasesInFlight(); n != 1 {
				t.Errorf("%d leases in flight, want 1", n)
			}
			if err := l.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A server shutting down gracefully answers every waiting acquire
// UNAVAILABLE and ends the sessions. The client keeps the acquire and sends
// it again to the server that takes over on the same address, which grants
// it; the caller never sees the error.
func TestWaitingAcquireRidesThroughGracefulShutdown(t *testing.T) {
	t.Parallel()
	const config = `
resources:
  one:
    concurrency: 1
    lease_ttl: 30s
`
	own, err := testserver.Start(config)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Stop()
	c := dial(t, own.Addr)
	acquire(t, c, "one") // the only slot; the server that takes over knows nothing of it

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waiting := waitAcquire(ctx, c, "one")
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, c, "one")) == 1 })

	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	if code := own.ExitCode(); code != 0 {
		t.Fatalf("the server exited %d on SIGTERM, want 0:\n%s", code, own.Logs())
	}
	select {
	case a := <-waiting:
		t.Fatalf("the waiting acquire returned while no server was up: %v", a.err)
	case <-time.After(300 * time.Millisecond):
	}

	_, port, _ := net.SplitHostPort(own.Addr)
	p, _ := strconv.Atoi(port)
	next, err := testserver.StartOn(config, p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := next.Stop(); err != nil || next.ExitCode() != 0 {
			t.Errorf("the second server: %v, exit %d", err, next.ExitCode())
		}
	}()
	started := time.Now()
	a := recv(t, waiting, 10*time.Second)
	if a.err != nil {
		t.Fatalf("the waiting acquire: %v", a.err)
	}
	if d := time.Since(started); d > 3*time.Second {
		t.Errorf("granted %v after the new server started; want about a second at most", d)
	}
	if err := a.lease.Release(context.Background()); err != nil {
		t.Fatalf("Release on the new server: %v", err)
	}
}
