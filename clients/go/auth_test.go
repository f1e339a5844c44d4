package ratequeue_test

// API keys against a real server with authentication on (RATEQUEUE_ROOT_KEY):
// keys made with the admin RPC, missing, wrong and revoked keys refused with
// ErrUnauthenticated, and calls beyond a key's role or namespace refused
// with ErrPermissionDenied.

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

const rootKey = "go-test-root-key-0123456789abcdefghijklmnop"

const authConfig = `
resources:
  shared:
    concurrency: 5
  one:
    concurrency: 1
    lease_ttl: 30s
namespaces:
  team-b:
    resources:
      secret-b:
        concurrency: 1
`

// startAuthServer starts a server of its own with authentication on. Its
// own, because failed authentication is slowed per peer address: the
// failures here must not slow other tests.
func startAuthServer(t *testing.T) *testserver.Server {
	t.Helper()
	s, err := testserver.StartWith(testserver.Options{Config: authConfig, Env: []string{"RATEQUEUE_ROOT_KEY=" + rootKey}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// createKey makes an API key in the caller's namespace and returns the key
// and its id.
func createKey(t *testing.T, c *ratequeue.Client, role pb.ApiKeyRole) (key, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Admin().CreateApiKey(ctx, &pb.CreateApiKeyRequest{Role: role, Description: "go client test"})
	if err != nil {
		t.Fatalf("CreateApiKey(%v): %v", role, err)
	}
	return resp.GetKey(), resp.GetApiKey().GetId()
}

// dialErr dials addr and returns the error, which must not be nil.
func dialErr(t *testing.T, addr string, opts ...ratequeue.Option) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ratequeue.Dial(ctx, addr, opts...)
	if err == nil {
		c.Close()
		t.Fatalf("Dial(%s) succeeded, want an error", addr)
	}
	return err
}

// isCode fails the test unless err matches target with errors.Is and has
// the gRPC code code.
func isCode(t *testing.T, err, target error, code codes.Code) {
	t.Helper()
	isErr(t, err, target)
	if s, _ := status.FromError(err); s.Code() != code || s.Message() == "" {
		t.Errorf("status %v, want %v with a message", s, code)
	}
}

func TestAuthErrors(t *testing.T) {
	// Not parallel: it sets environment variables.
	own := startAuthServer(t)
	root := dial(t, own.Addr, ratequeue.WithAPIKey(rootKey))
	worker, _ := createKey(t, root, pb.ApiKeyRole_API_KEY_ROLE_WORKER)
	admin, _ := createKey(t, root, pb.ApiKeyRole_API_KEY_ROLE_ADMIN)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("missing key", func(t *testing.T) {
		t.Setenv("RATEQUEUE_API_KEY", "")
		isCode(t, dialErr(t, own.Addr), ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		isCode(t, dialErr(t, own.Addr, ratequeue.WithAPIKey("")), ratequeue.ErrUnauthenticated, codes.Unauthenticated)
	})
	t.Run("wrong key", func(t *testing.T) {
		for _, key := range []string{"nope", worker[:len(worker)-1] + "x"} {
			isCode(t, dialErr(t, own.Addr, ratequeue.WithAPIKey(key)), ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		}
	})
	t.Run("key and address from the environment", func(t *testing.T) {
		// The authorization header carries RATEQUEUE_API_KEY by default.
		t.Setenv("RATEQUEUE_API_KEY", worker)
		t.Setenv("RATEQUEUE_URL", "http://"+own.Addr)
		c, err := ratequeue.Dial(ctx, "")
		if err != nil {
			t.Fatalf("Dial with the key and address from the environment: %v", err)
		}
		defer c.Close()
		l := acquire(t, c, "shared")
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})

	t.Run("beyond the role", func(t *testing.T) {
		w := dial(t, own.Addr, ratequeue.WithAPIKey(worker))
		// A worker may read its namespace's stats, but not change anything.
		if _, err := w.Admin().GetResourceStats(ctx, &pb.GetResourceStatsRequest{Name: "shared"}); err != nil {
			t.Fatalf("GetResourceStats with a worker key: %v", err)
		}
		_, err := w.Admin().PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Name: "go-worker-made", Concurrency: 1}})
		isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)
		var e *ratequeue.Error
		if !errors.As(err, &e) || e.Code() != codes.PermissionDenied {
			t.Errorf("errors.As(*ratequeue.Error) failed on %v", err)
		}
		_, err = w.Admin().CreateApiKey(ctx, &pb.CreateApiKeyRequest{Role: pb.ApiKeyRole_API_KEY_ROLE_WORKER})
		isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)

		// An admin manages its namespace, not namespaces, and makes no root key.
		a := dial(t, own.Addr, ratequeue.WithAPIKey(admin))
		_, err = a.Admin().CreateApiKey(ctx, &pb.CreateApiKeyRequest{Role: pb.ApiKeyRole_API_KEY_ROLE_ROOT})
		isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)
		_, err = a.Admin().ListNamespaces(ctx, &pb.ListNamespacesRequest{})
		isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)
	})

	t.Run("another namespace", func(t *testing.T) {
		inB := metadata.AppendToOutgoingContext(ctx, protocol.NamespaceKey, "team-b")
		// Only a root key picks its namespace.
		if _, err := root.Admin().GetResourceStats(inB, &pb.GetResourceStatsRequest{Name: "secret-b"}); err != nil {
			t.Fatalf("GetResourceStats in team-b with the root key: %v", err)
		}
		for _, key := range []string{worker, admin} {
			c := dial(t, own.Addr, ratequeue.WithAPIKey(key))
			_, err := c.Admin().GetResourceStats(inB, &pb.GetResourceStatsRequest{Name: "secret-b"})
			isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)
			_, err = c.Admin().ListResources(inB, &pb.ListResourcesRequest{})
			isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)
			// Without naming it, another namespace's resource does not exist.
			_, err = c.Acquire(ctx, "secret-b")
			isCode(t, err, ratequeue.ErrNotFound, codes.NotFound)
			// WithNamespace names it on every call, the session included: refused.
			isCode(t, dialErr(t, own.Addr, ratequeue.WithAPIKey(key), ratequeue.WithNamespace("team-b")), ratequeue.ErrPermissionDenied, codes.PermissionDenied)
		}
		// The root key acquires in team-b through its session with WithNamespace.
		rootB := dial(t, own.Addr, ratequeue.WithAPIKey(rootKey), ratequeue.WithNamespace("team-b"))
		lease, err := rootB.Acquire(ctx, "secret-b")
		if err != nil {
			t.Fatalf("Acquire in team-b with the root key and WithNamespace: %v", err)
		}
		if err := lease.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})

	// Last: the revoked client's attempts are failures too.
	t.Run("revoked key", func(t *testing.T) {
		a := dial(t, own.Addr, ratequeue.WithAPIKey(admin))
		key, id := createKey(t, a, pb.ApiKeyRole_API_KEY_ROLE_WORKER)
		p := proxy(t, own.Addr)
		c := dial(t, p.Addr, ratequeue.WithAPIKey(key))
		held := acquire(t, c, "one")
		waiting := waitAcquire(ctx, c, "one")
		eventually(t, 5*time.Second, "one queued request", func() bool { return queueDepth(stats(t, a, "one")) == 1 })

		revoked := time.Now()
		if _, err := a.Admin().RevokeApiKey(ctx, &pb.RevokeApiKeyRequest{Id: id}); err != nil {
			t.Fatalf("RevokeApiKey: %v", err)
		}
		// The server ends the key's session with UNAUTHENTICATED: the waiting
		// acquire fails with it, and the held lease is lost (nobody can
		// heartbeat it with this key).
		isCode(t, recv(t, waiting, 5*time.Second).err, ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		if d := time.Since(revoked); d > 2*time.Second {
			t.Errorf("the waiting acquire failed %v after the revocation, want at once", d)
		}
		select {
		case <-held.Lost():
		case <-time.After(5 * time.Second):
			t.Fatal("the held lease was not reported lost after the key was refused")
		}
		eventually(t, 5*time.Second, "an empty queue", func() bool { return queueDepth(stats(t, a, "one")) == 0 })

		// The refusal is remembered: an acquire whose deadline passes before
		// any answer fails with it, not with a timeout, however short the
		// deadline.
		for _, d := range []time.Duration{0, time.Millisecond, 20 * time.Millisecond} {
			for range 3 {
				actx, acancel := context.WithTimeout(ctx, d)
				_, err := c.Acquire(actx, "shared")
				acancel()
				isCode(t, err, ratequeue.ErrUnauthenticated, codes.Unauthenticated)
			}
		}

		// Without a new operation the client does not try the key again.
		// (Once the connection's own housekeeping, a window update, is done.)
		var sent int64
		changed := time.Now()
		eventually(t, 5*time.Second, "the connection to fall quiet", func() bool {
			if n := p.Sent(); n != sent {
				sent, changed = n, time.Now()
			}
			return time.Since(changed) > 500*time.Millisecond
		})
		time.Sleep(2 * time.Second)
		if now := p.Sent(); now != sent {
			t.Errorf("the refused client sent %d bytes while idle, want none: it connects again only for a new operation", now-sent)
		}
		// A new operation tries once more, and fails soon.
		start := time.Now()
		_, err := c.Acquire(ctx, "shared")
		isCode(t, err, ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("an acquire after the revocation failed after %v, want about the reconnect backoff", d)
		}
		if p.Sent() == sent {
			t.Error("the acquire failed without trying the key again")
		}
		// Releasing the lost lease is harmless: the server refuses the key.
		isCode(t, held.Release(ctx), ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		c.Close()
		isCode(t, dialErr(t, own.Addr, ratequeue.WithAPIKey(key)), ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		// The lease lives on at the server until its TTL.
		if n := stats(t, a, "one").GetLeasesInFlight(); n != 1 {
			t.Errorf("%d leases in flight after the revocation, want 1 (until the TTL)", n)
		}
	})
}
