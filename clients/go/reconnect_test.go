package ratequeue_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
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
	const ttl = 1500 * time.Millisecond
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
	time.Sleep(300 * time.Millisecond) // the server drops the session and its waiting acquire
	if d := queueDepth(stats(t, admin, name)); d != 0 {
		t.Errorf("queue depth %d while the client is cut off, want 0", d)
	}
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

// With no server reachable for the reconnect timeout, a waiting acquire
// fails with ErrUnavailable.
func TestUnavailableAfterReconnectTimeout(t *testing.T) {
	t.Parallel()
	admin := dial(t, "")
	name := put(t, admin, resource(t, 5*time.Second, 1))
	p := proxy(t, srv.Addr)
	c := dial(t, p.Addr, ratequeue.WithReconnectTimeout(500*time.Millisecond), ratequeue.WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	held := acquire(t, c, name)
	defer held.Release(context.Background())
	ch := waitAcquire(context.Background(), c, name)
	eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, admin, name)) == 1 })
	p.Pause()
	a := recv(t, ch, 5*time.Second)
	isErr(t, a.err, ratequeue.ErrUnavailable)
	p.Resume()
}

// standby is a server that refuses everything with UNAVAILABLE and names
// the leader in the trailing metadata, as a ratequeue standby does.
type standby struct {
	pb.UnimplementedRateQueueServiceServer
	pb.UnimplementedAdminServiceServer
	leader string
}

func (s standby) refuse(ctx context.Context) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("ratequeue-leader", s.leader))
	return status.Error(codes.Unavailable, "this server is a standby")
}

func (s standby) Session(stream grpc.BidiStreamingServer[pb.SessionRequest, pb.SessionResponse]) error {
	return s.refuse(stream.Context())
}

func (s standby) GetResourceStats(ctx context.Context, _ *pb.GetResourceStatsRequest) (*pb.GetResourceStatsResponse, error) {
	return nil, s.refuse(ctx)
}

// serve runs a gRPC server on a free port until the test ends.
func serve(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// The client follows a standby's pointer to the leader, and skips dead
// servers in its list.
func TestFailover(t *testing.T) {
	t.Parallel()
	sb := standby{leader: srv.Addr}
	sbAddr := serve(t, func(s *grpc.Server) {
		pb.RegisterRateQueueServiceServer(s, sb)
		pb.RegisterAdminServiceServer(s, sb)
	})
	for _, addr := range []string{
		sbAddr,                                   // a standby only: follow its pointer
		"http://" + freeAddr(t) + "," + srv.Addr, // a dead server first: try the next
		freeAddr(t) + ",http://" + sbAddr,        // dead, then a standby
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
	// Admin calls that reach a standby follow it too.
	t.Run("admin", func(t *testing.T) {
		c := dial(t, srv.Addr)
		_ = c
		sbc := dial(t, sbAddr)
		if _, err := sbc.Admin().GetResourceStats(context.Background(), &pb.GetResourceStatsRequest{Name: "boot"}); err != nil {
			t.Fatalf("GetResourceStats through a standby: %v", err)
		}
	})
}

// authServer is a fake ratequeue server that checks API keys: none is
// UNAUTHENTICATED, "good" may do anything, any other PERMISSION_DENIED.
type authServer struct {
	pb.UnimplementedRateQueueServiceServer
}

func checkKey(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	switch v := md.Get("authorization"); {
	case len(v) == 0:
		return status.Error(codes.Unauthenticated, "send authorization: Bearer <api key>")
	case v[0] != "Bearer good":
		return status.Error(codes.PermissionDenied, "this API key may not use ratequeue")
	}
	return nil
}

func (authServer) Session(stream grpc.BidiStreamingServer[pb.SessionRequest, pb.SessionResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		resp := &pb.SessionResponse{RequestId: req.GetRequestId()}
		switch {
		case req.GetHeartbeat() != nil:
			resp.Kind = &pb.SessionResponse_Heartbeat{Heartbeat: &pb.HeartbeatResponse{}}
		case req.GetAcquire() != nil:
			resp.Kind = &pb.SessionResponse_Failure{Failure: &pb.Failure{Code: int32(codes.PermissionDenied), Message: "this key may not acquire " + req.GetAcquire().GetResource()}}
		default:
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func TestAuthErrors(t *testing.T) {
	// Not parallel: it sets environment variables.
	addr := serve(t, func(s *grpc.Server) { pb.RegisterRateQueueServiceServer(s, authServer{}) },
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := checkKey(ss.Context()); err != nil {
				return err
			}
			return handler(srv, ss)
		}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Setenv("RATEQUEUE_API_KEY", "")
	_, err := ratequeue.Dial(ctx, addr)
	isErr(t, err, ratequeue.ErrUnauthenticated)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("status code %v", status.Code(err))
	}
	_, err = ratequeue.Dial(ctx, addr, ratequeue.WithAPIKey("bad"))
	isErr(t, err, ratequeue.ErrPermissionDenied)

	// The key comes from RATEQUEUE_API_KEY by default, the address from
	// RATEQUEUE_URL.
	t.Setenv("RATEQUEUE_API_KEY", "good")
	t.Setenv("RATEQUEUE_URL", "http://"+addr)
	c, err := ratequeue.Dial(ctx, "")
	if err != nil {
		t.Fatalf("Dial with the key from the environment: %v", err)
	}
	defer c.Close()
	_, err = c.Acquire(ctx, "anything")
	isErr(t, err, ratequeue.ErrPermissionDenied)
	var e *ratequeue.Error
	if !errors.As(err, &e) || e.GRPCStatus().Message() == "" {
		t.Errorf("no status message on %v", err)
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
