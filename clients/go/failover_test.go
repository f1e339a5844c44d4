package ratequeue_test

// Failover against a real group: two nodes on a private redis-server with a
// leader TTL of 1 s. A client dialled with both addresses holds a lease and
// has an acquire waiting when the leader dies (SIGKILL) or hands over
// (SIGTERM). The standby takes over; the client finds it by itself, its
// lease is still held there and its waiting acquire is granted there.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

const groupConfig = `
resources:
  one:
    concurrency: 1
    lease_ttl: 10s
`

// startNode starts a group node on a free port, advertised at that port.
func startNode(t *testing.T, redisURL string) *testserver.Server {
	t.Helper()
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	n, err := testserver.StartWith(testserver.Options{
		Config: groupConfig,
		Port:   port,
		Args:   []string{"--redis", redisURL, "--advertise", fmt.Sprintf("127.0.0.1:%d", port), "--leader-ttl", "1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	return n
}

// startGroup starts redis-server, a node that leads and a standby.
func startGroup(t *testing.T) (r *testserver.Redis, leader, standby *testserver.Server) {
	t.Helper()
	r, err := testserver.StartRedis() // fails when redis-server is missing
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop) // after the nodes (cleanups run last first)
	leader = startNode(t, r.URL)
	if err := leader.WaitLog("leading", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	standby = startNode(t, r.URL)
	if err := standby.WaitLog("standing by", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return r, leader, standby
}

func TestFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*testserver.Server) error
	}{
		{"SIGKILL", func(s *testserver.Server) error { s.Kill(); return nil }},
		{"SIGTERM", func(s *testserver.Server) error {
			if err := s.Stop(); err != nil {
				return err
			}
			if code := s.ExitCode(); code != 0 {
				return fmt.Errorf("exit code %d on SIGTERM, want 0", code)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			redis, leader, standby := startGroup(t)
			// The standby first: the client follows its pointer to the leader.
			c := dial(t, "http://"+standby.Addr+",http://"+leader.Addr)
			held := acquire(t, c, "one")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			waiting := waitAcquire(ctx, c, "one")
			eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, c, "one")) == 1 })
			// The new leader learns of the lease from the last snapshot.
			eventually(t, 10*time.Second, "a snapshot holding the lease", func() bool {
				snap, err := redis.Get("ratequeue:snapshot")
				if err != nil {
					t.Fatalf("reading the snapshot: %v", err)
				}
				return strings.Contains(snap, held.ID())
			})

			stopped := time.Now()
			if err := tc.stop(leader); err != nil {
				t.Fatalf("stopping the leader: %v\n%s", err, leader.Logs())
			}
			if err := standby.WaitLog("leading", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			led := time.Since(stopped)
			// The client re-attached its lease and queued its acquire again on
			// the new leader.
			eventually(t, 10*time.Second, "the lease and the acquire on the new leader", func() bool {
				// Until the client has moved, its admin calls may fail.
				sctx, scancel := context.WithTimeout(ctx, time.Second)
				defer scancel()
				r, err := c.Admin().GetResourceStats(sctx, &pb.GetResourceStatsRequest{Name: "one"})
				return err == nil && r.GetStats().GetLeasesInFlight() == 1 && queueDepth(r.GetStats()) == 1
			})
			select {
			case a := <-waiting:
				t.Fatalf("the waiting acquire returned while the lease was held: %v, %v", a.lease, a.err)
			case <-held.Lost():
				t.Fatal("the held lease was reported lost")
			default:
			}
			// Still held: the release is answered released (nil), not unknown.
			if err := held.Release(ctx); err != nil {
				t.Fatalf("Release of the held lease on the new leader: %v", err)
			}
			a := recv(t, waiting, 10*time.Second)
			if a.err != nil {
				t.Fatalf("the waiting acquire: %v", a.err)
			}
			if a.lease.GrantTime().Before(stopped) {
				t.Errorf("the waiting acquire was granted at %v, before the leader stopped at %v: not by the new leader", a.lease.GrantTime(), stopped)
			}
			t.Logf("the standby led %v after the %s; the waiting acquire was granted %v after it",
				led.Round(time.Millisecond), tc.name, time.Since(stopped).Round(time.Millisecond))
			if n := stats(t, c, "one").GetLeasesInFlight(); n != 1 {
				t.Errorf("%d leases in flight on the new leader, want 1", n)
			}
			if err := a.lease.Release(ctx); err != nil {
				t.Fatalf("Release of the new lease: %v", err)
			}
		})
	}
}
