package ratequeue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// defaultTTL is the lease TTL assumed when the server names none.
const defaultTTL = 30 * time.Second

// Lease is a granted slot on a resource. The client heartbeats it in the
// background until it is released; release it when the guarded call is
// done. A Lease is safe for concurrent use.
type Lease struct {
	c        *Client
	id       string
	resource string
	load     float64
	ttl      time.Duration
	wait     time.Duration
	granted  time.Time
	beat     time.Time // last heartbeat; guarded by c.mu

	lostOnce sync.Once
	lost     chan struct{}

	mu       sync.Mutex
	released bool

	fbMu     sync.Mutex
	feedback Feedback // recorded by Report and Observe, sent with the release
	fbSent   bool     // the release has taken feedback
}

// ID returns the lease's server-side id.
func (l *Lease) ID() string { return l.id }

// Resource returns the resource the lease is on: "RESOURCE/KEY", the keyed
// child, for an acquire with Key.
func (l *Lease) Resource() string { return l.resource }

// Load returns the load charged for the lease.
func (l *Lease) Load() float64 { return l.load }

// TTL returns the resource's lease TTL.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Wait returns how long the request waited in the server's queue.
func (l *Lease) Wait() time.Duration { return l.wait }

// GrantTime returns when the server granted the lease, on the server's
// clock (the zero time if the server did not say).
func (l *Lease) GrantTime() time.Time { return l.granted }

// Lost returns a channel that is closed when the server reports the lease
// expired, for example after the client could not reach it for a TTL. The
// slot is then no longer held.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// Acquire waits for a lease on resource (with Key, on the resource's keyed
// child). It honours ctx: the deadline is
// sent to the server as the request's timeout, and when ctx ends the wait
// ends at once, with an error matching ErrTimeout (deadline) or
// context.Canceled; a cancelled request is withdrawn from the queue, and
// the server ends one whose deadline passed. A deadline that has already
// passed makes one attempt, as a timeout of zero does: the server grants a
// free slot or answers at once (Acquire waits for that answer at most
// protocol.TimeoutSlack, 2 s).
//
// When the server refused the API key and no session has succeeded since,
// a deadline that passes without an answer returns that refusal
// (ErrUnauthenticated or ErrPermissionDenied) instead: a timeout never
// hides the real reason. Other failures match ErrNotFound, ErrInvalid,
// ErrQueueFull, ErrUnavailable or ErrClosed.
func (c *Client) Acquire(ctx context.Context, resource string, opts ...AcquireOption) (*Lease, error) {
	var o acquireOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.keySet && o.key == "" {
		return nil, newError(codes.InvalidArgument, "key: must not be empty; leave Key out to acquire the resource itself")
	}
	what := "acquire " + resource
	if o.key != "" {
		what += "/" + o.key
	}
	req := &pb.AcquireRequest{Resource: resource, Load: o.load, Priority: o.priority, Lane: o.lane, Key: o.key}
	wait := ctx // ends the wait
	switch err := ctx.Err(); {
	case err == nil:
		if dl, ok := ctx.Deadline(); ok {
			req.Timeout = durationpb.New(max(0, time.Until(dl)))
		}
	case errors.Is(err, context.DeadlineExceeded):
		if r := c.refused(); r != nil {
			return nil, r
		}
		req.Timeout = durationpb.New(0)
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(context.WithoutCancel(ctx), protocol.TimeoutSlack)
		defer cancel()
	default:
		return nil, ctxError(ctx, what)
	}
	type answer struct {
		resp *pb.SessionResponse
		err  error
	}
	ch := make(chan answer, 1)
	id, err := c.start(&pb.SessionRequest{Kind: &pb.SessionRequest_Acquire{Acquire: req}}, time.Time{},
		func(resp *pb.SessionResponse, err error) { ch <- answer{resp, err} })
	if err != nil {
		return nil, err
	}
	var a answer
	select {
	case a = <-ch:
	case <-wait.Done():
		// At the deadline it was sent the server ends the wait itself, and
		// counts a timeout: a cancel would only race it.
		serverEnds := wait == ctx && errors.Is(ctx.Err(), context.DeadlineExceeded)
		if c.abandon(id, !serverEnds) {
			return nil, c.ctxError(ctx, what)
		}
		a = <-ch
		if l := a.resp.GetGranted().GetLease(); l != nil {
			c.releaseID(l.GetLeaseId(), l.GetTtl().AsDuration())
			return nil, c.ctxError(ctx, what)
		}
	}
	if a.err != nil {
		return nil, a.err
	}
	if f := a.resp.GetFailure(); f != nil {
		var extra error
		if codes.Code(f.GetCode()) == codes.DeadlineExceeded {
			extra = ctx.Err()
		}
		return nil, newError(codes.Code(f.GetCode()), f.GetMessage(), extra)
	}
	g := a.resp.GetGranted()
	if g.GetLease() == nil {
		return nil, newError(codes.Internal, fmt.Sprintf("%s: unexpected answer %v", what, a.resp))
	}
	return c.hold(g), nil
}

// refused returns the remembered key refusal, or nil.
func (c *Client) refused() *Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusal
}

// ctxError is the error of an acquire whose ctx ended without an answer:
// the remembered key refusal when the deadline passed, else ctxError's.
func (c *Client) ctxError(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if r := c.refused(); r != nil {
			return r
		}
	}
	return ctxError(ctx, what)
}

// hold registers a granted lease for heartbeats.
func (c *Client) hold(g *pb.AcquireResponse) *Lease {
	pl := g.GetLease()
	ttl := pl.GetTtl().AsDuration()
	if ttl <= 0 {
		ttl = time.Until(pl.GetExpireTime().AsTime())
	}
	if ttl <= 0 {
		ttl = defaultTTL
	}
	l := &Lease{
		c:        c,
		id:       pl.GetLeaseId(),
		resource: pl.GetResource(),
		load:     pl.GetLoad(),
		ttl:      ttl,
		wait:     g.GetWaitTime().AsDuration(),
		beat:     time.Now(),
		granted:  grantTime(pl),
		lost:     make(chan struct{}),
	}
	c.mu.Lock()
	c.leases[l.id] = l
	c.mu.Unlock()
	c.wakeHeartbeats()
	return l
}

// Release returns the lease's slot; ActualLoad reconciles its load, and the
// feedback recorded by Report and Observe goes with it. Releasing
// a lease again is harmless and returns nil. Release fails with
// ErrLeaseExpired when the lease had expired first. A release that no
// server answers is sent again on every new session until the lease's TTL
// has passed (by then the server has freed the slot anyway), also after ctx
// ended; Release waits for it until ctx ends, at most that long, and then
// fails with ErrUnavailable.
func (l *Lease) Release(ctx context.Context, opts ...ReleaseOption) error {
	var o releaseOptions
	for _, opt := range opts {
		opt(&o)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	c := l.c
	c.mu.Lock()
	delete(c.leases, l.id) // stop heartbeating
	c.mu.Unlock()
	type answer struct {
		resp *pb.SessionResponse
		err  error
	}
	ch := make(chan answer, 1)
	req := &pb.ReleaseRequest{LeaseId: l.id, ActualLoad: o.actualLoad, Feedback: l.takeFeedback().toProto()}
	id, err := c.start(&pb.SessionRequest{Kind: &pb.SessionRequest_Release{Release: req}}, time.Now().Add(l.ttl),
		func(resp *pb.SessionResponse, err error) { ch <- answer{resp, err} })
	if err != nil {
		return err
	}
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		if c.detach(id) {
			return ctxError(ctx, "release "+l.id)
		}
		a = <-ch
	}
	if a.err != nil {
		return a.err
	}
	if f := a.resp.GetFailure(); f != nil {
		return newError(codes.Code(f.GetCode()), f.GetMessage())
	}
	r := a.resp.GetReleased()
	l.released = true
	switch r.GetOutcome() {
	case pb.ReleaseOutcome_RELEASE_OUTCOME_EXPIRED:
		return &Error{status: status.Newf(codes.FailedPrecondition, "release %s on %q: %s", l.id, l.resource, r.GetMessage()), errs: []error{ErrLeaseExpired}}
	case pb.ReleaseOutcome_RELEASE_OUTCOME_UNKNOWN:
		return newError(codes.NotFound, fmt.Sprintf("release %s on %q: %s", l.id, l.resource, r.GetMessage()))
	}
	return nil
}

// releaseNoWait sends the lease's release, with its feedback, and returns
// without waiting for the answer: the release is on the session stream
// before any acquire sent after it, and is sent again on every new session
// until the lease's TTL has passed. Its outcome is not reported.
func (l *Lease) releaseNoWait(actualLoad *float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	c := l.c
	c.mu.Lock()
	delete(c.leases, l.id) // stop heartbeating
	c.mu.Unlock()
	req := &pb.ReleaseRequest{LeaseId: l.id, ActualLoad: actualLoad, Feedback: l.takeFeedback().toProto()}
	_, _ = c.start(&pb.SessionRequest{Kind: &pb.SessionRequest_Release{Release: req}}, time.Now().Add(l.ttl), nil)
}

// Do acquires a lease on resource, runs fn and releases the lease, even
// when fn panics. It returns Acquire's error, else fn's, else Release's.
func (c *Client) Do(ctx context.Context, resource string, fn func(ctx context.Context) error, opts ...AcquireOption) (err error) {
	l, err := c.Acquire(ctx, resource, opts...)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := l.Release(context.WithoutCancel(ctx)); err == nil {
			err = rerr
		}
	}()
	return fn(ctx)
}

func grantTime(pl *pb.Lease) time.Time {
	if pl.GetGrantTime() == nil {
		return time.Time{}
	}
	return pl.GetGrantTime().AsTime()
}
