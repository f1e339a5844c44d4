// Package protocol holds the session protocol's names, numbers and rules
// (proto/ratequeue/v1/ratequeue.proto, "Session protocol"; docs/protocol.md),
// defined once for the Go client and its conformance adapter.
package protocol

import (
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
)

// Metadata names.
const (
	// AuthorizationKey carries the API key on every call, as BearerPrefix+key.
	AuthorizationKey = "authorization"
	// BearerPrefix precedes the API key in AuthorizationKey's value.
	BearerPrefix = "Bearer "
	// NamespaceKey names the namespace a root key acts in.
	NamespaceKey = "ratequeue-namespace"
	// LeaderKey is the trailer in which a node that cannot serve (a standby)
	// names the leader's host:port.
	LeaderKey = "ratequeue-leader"
)

// Defaults every client shares.
const (
	// DefaultPort is the server's default port, also assumed for an
	// http:// address without one.
	DefaultPort = "7070"
	// DefaultURL is used when no address is given and RATEQUEUE_URL is unset:
	// the server's default bind.
	DefaultURL = "http://127.0.0.1:" + DefaultPort
	// KeepaliveTime is how often an idle connection is pinged, also without
	// calls in flight; KeepaliveTimeout is how long a ping may go unanswered.
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
	// KeepalivePermitWithoutStream: ping also when no call is in flight.
	KeepalivePermitWithoutStream = true
	// InitialBackoff is the first pause between reconnect attempts; it
	// doubles up to MaxBackoff, and each pause is jittered to 0.5–1 times.
	// It starts again at InitialBackoff after a stream that answered.
	InitialBackoff = 50 * time.Millisecond
	MaxBackoff     = time.Second
	// ReconnectTimeout is how long a waiting acquire survives without a
	// working stream.
	ReconnectTimeout = 30 * time.Second
	// TimeoutSlack is how long past an acquire's own timeout a client waits
	// for the server's answer before giving up by itself. The Go client ends
	// the wait when the caller's context ends instead, so it never waits past
	// the timeout; the value is the protocol's and the conformance adapter
	// reports it.
	TimeoutSlack = 2 * time.Second
	// DepartureGrace is how long a node that answered an operation
	// UNAVAILABLE (it is going away) may take to end the stream itself, its
	// status possibly naming the next leader, before the client drops it.
	DepartureGrace = 250 * time.Millisecond
	// MaxLeaseIDsPerHeartbeat is the most lease ids one HeartbeatRequest
	// names; the server refuses more with INVALID_ARGUMENT.
	MaxLeaseIDsPerHeartbeat = 1000
	// HeartbeatsPerTTL: a held lease is heartbeated about every ttl/3.
	HeartbeatsPerTTL = 3
	// A client joins the requests it has to send at once into one
	// SessionRequestBatch (a single request goes alone): at most
	// MaxBatchMessages of them and MaxBatchBytes encoded, well under the
	// server's largest message (1 MiB by default); a request larger than
	// that goes alone.
	MaxBatchMessages = 1000
	MaxBatchBytes    = 256 << 10
)

// Jitter returns the reconnect pause for backoff d: d jittered to 0.5–1
// times, so that a fleet cut off at once does not reconnect at once.
func Jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// StreamEnd says what a client does when its session stream ends with a
// status code (the protocol's "The stream ending").
type StreamEnd int

const (
	// Retry: waiting operations are kept and sent again, held leases are
	// kept and re-attached, and the client reconnects at once with backoff.
	Retry StreamEnd = iota
	// KeyRefused: the API key is refused. Waiting operations fail with the
	// code, held leases are lost, and the client connects again only for a
	// new operation. The refusal is remembered until a stream succeeds.
	KeyRefused
	// Fail: waiting acquires fail with the code; unanswered releases and held
	// leases are kept and the client reconnects with backoff to send and
	// heartbeat them.
	Fail
)

// OnStreamEnd classifies a stream's final status code; codes.OK stands for
// an end without an error status.
func OnStreamEnd(c codes.Code) StreamEnd {
	switch c {
	case codes.OK, codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown:
		return Retry
	case codes.Unauthenticated, codes.PermissionDenied:
		return KeyRefused
	}
	return Fail
}
