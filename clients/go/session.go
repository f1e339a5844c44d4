package ratequeue

// The session engine. One goroutine (run) owns the stream's receiving side
// and reconnects; callers register an op (a request awaiting its answer)
// and send it on the open stream. Ops stay registered until answered, so a
// reconnect re-sends all of them on the new stream: waiting acquires queue
// again and releases are retried (both are harmless to repeat). Leases are
// heartbeated by heartbeatLoop, and all at once after a reconnect, which
// re-attaches them to the new session. A request answered UNAVAILABLE comes
// from a node that is going away (shutting down, or no longer the leader):
// its op stays registered and the session is dropped, so the request goes
// again to whoever serves next.

import (
	"cmp"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
)

// session is one open Session stream.
type session struct {
	stream   grpc.BidiStreamingClient[pb.SessionRequest, pb.SessionResponse]
	cancel   context.CancelFunc
	ep       endpoint
	sendMu   sync.Mutex
	received bool // an answer came after the probe; only run reads it
	// departing: the server answered a request UNAVAILABLE, so it is going
	// away; only run reads it.
	departing bool
}

// departureGrace is how long a departing server may take to end the
// session itself (its status may name the next leader) before the client
// drops it.
const departureGrace = 250 * time.Millisecond

func (s *session) send(req *pb.SessionRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(req)
}

// op is a request awaiting its answer.
type op struct {
	req   *pb.SessionRequest
	since time.Time // when it was registered
	done  func(*pb.SessionResponse, error)
}

// connect opens a session on the current server, or on the next ones in
// the list, following standbys' pointers to the leader. It tries each
// server once.
func (c *Client) connect(ctx context.Context) (*session, error) {
	var lastErr error
	hops := 0
	for i := 0; i < len(c.eps); i++ {
		ep := c.current()
		s, leader, err := c.open(ctx, ep)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if terminal(status.Code(err)) || ctx.Err() != nil {
			break
		}
		if leader != "" && leader != ep.target && hops < 3 {
			hops++
			i--
			c.follow(ep, leader)
			continue
		}
		c.advance()
	}
	if ctx.Err() != nil && status.Code(lastErr) != codes.Unauthenticated && status.Code(lastErr) != codes.PermissionDenied {
		return nil, newError(codes.Unavailable, "no ratequeue server answered before the context ended: "+errString(lastErr), ctx.Err())
	}
	return nil, lastErr
}

func errString(err error) string {
	if err == nil {
		return "no attempt"
	}
	return err.Error()
}

// terminal reports whether a stream error means retrying cannot help.
func terminal(c codes.Code) bool {
	return c == codes.Unauthenticated || c == codes.PermissionDenied || c == codes.Unimplemented
}

// open opens a session on ep and checks it with an empty heartbeat. On
// failure it returns the leader a standby named, if any.
func (c *Client) open(ctx context.Context, ep endpoint) (*session, string, error) {
	cc, err := c.connFor(ep)
	if err != nil {
		return nil, "", err
	}
	sctx, cancel := context.WithCancel(c.ctx)
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	stream, err := pb.NewRateQueueServiceClient(cc).Session(sctx)
	if err != nil {
		cancel()
		return nil, "", err
	}
	c.mu.Lock()
	c.nextID++
	probe := c.nextID
	c.mu.Unlock()
	err = stream.Send(&pb.SessionRequest{RequestId: probe, Kind: &pb.SessionRequest_Heartbeat{Heartbeat: &pb.HeartbeatRequest{}}})
	if errors.Is(err, io.EOF) {
		// The server ended the stream; Recv returns its status.
		err = nil
	}
	for err == nil {
		var resp *pb.SessionResponse
		if resp, err = stream.Recv(); err == nil {
			if resp.GetRequestId() == probe {
				s := &session{stream: stream, cancel: cancel, ep: ep}
				return s, "", nil
			}
			c.dispatch(resp)
		}
	}
	if errors.Is(err, io.EOF) {
		err = status.Error(codes.Unavailable, "the server closed the session")
	}
	leader := leaderOf(stream.Trailer())
	cancel()
	return nil, leader, err
}

// attach makes s the open session, re-sends every registered op on it and
// heartbeats every held lease.
func (c *Client) attach(s *session) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.cancel()
		return
	}
	c.sess = s
	c.downAt = time.Time{}
	pending := make([]*op, 0, len(c.ops))
	for _, o := range c.ops {
		pending = append(pending, o)
	}
	c.mu.Unlock()
	// In the order they were made, acquires with what is left of their timeout.
	slices.SortFunc(pending, func(a, b *op) int {
		return cmp.Compare(a.req.GetRequestId(), b.req.GetRequestId())
	})
	for _, o := range pending {
		if s.send(resendable(o)) != nil {
			return // run notices the broken stream and reconnects
		}
	}
	c.heartbeat(true)
	c.wakeHeartbeats()
}

// resendable returns o's request to send again: an acquire carries what is
// left of its timeout.
func resendable(o *op) *pb.SessionRequest {
	a := o.req.GetAcquire()
	if a == nil || a.GetTimeout() == nil {
		return o.req
	}
	left := max(0, time.Until(o.since.Add(a.GetTimeout().AsDuration())))
	req := proto.Clone(o.req).(*pb.SessionRequest)
	req.GetAcquire().Timeout = durationpb.New(left)
	return req
}

// run receives on the open session and reconnects when it breaks.
func (c *Client) run(s *session) {
	defer c.wg.Done()
	backoff := c.cfg.initialBackoff
	for {
		err := c.receive(s)
		leader := leaderOf(s.stream.Trailer())
		s.cancel()
		c.mu.Lock()
		if c.sess == s {
			c.sess = nil
			c.downAt = time.Now()
		}
		closed := c.closed
		// Acquires given up on the broken stream are cancelled with it.
		clear(c.orphans)
		c.mu.Unlock()
		if closed {
			return
		}
		if code := status.Code(err); terminal(code) {
			c.failOps(func(*op) bool { return true }, fromError(err))
		}
		// A departing server keeps the backoff growing: a node that answers
		// UNAVAILABLE yet stays up is not retried in a tight loop.
		if s.received && !s.departing {
			backoff = c.cfg.initialBackoff
		}
		if leader != "" && leader != s.ep.target {
			c.follow(s.ep, leader)
		} else if len(c.eps) > 1 {
			c.advance()
		}
		for {
			if !c.sleep(jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, c.cfg.maxBackoff)
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.probeTimeout)
			next, err := c.connect(ctx)
			cancel()
			if err == nil {
				s = next
				c.attach(s)
				break
			}
			c.expireOps(err)
		}
	}
}

// receive dispatches the session's answers until the stream breaks. When
// the server answers a request UNAVAILABLE it is going away: the session is
// dropped shortly after, if the server has not ended it by then.
func (c *Client) receive(s *session) error {
	var grace *time.Timer
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the server closed the session")
			}
			return err
		}
		s.received = true
		if c.dispatch(resp) && !s.departing {
			s.departing = true
			grace = time.AfterFunc(departureGrace, s.cancel)
		}
	}
}

// sleep waits d or until the client closes; it reports whether to go on.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// expireOps fails the ops that have had no connection for longer than the
// reconnect timeout, and every op when the server refused the session for
// good (a revoked API key, say): waiting cannot help them.
func (c *Client) expireOps(cause error) {
	if terminal(status.Code(cause)) {
		c.failOps(func(*op) bool { return true }, fromError(cause))
		return
	}
	c.mu.Lock()
	down := c.downAt
	c.mu.Unlock()
	if down.IsZero() {
		return
	}
	limit := time.Now().Add(-c.cfg.reconnectTimeout)
	err := newError(codes.Unavailable, "no ratequeue server reachable for "+c.cfg.reconnectTimeout.String()+": "+errString(cause))
	c.failOps(func(o *op) bool { return o.since.Before(limit) && down.Before(limit) }, err)
}

// failOps fails the registered ops that match.
func (c *Client) failOps(match func(*op) bool, err error) {
	c.mu.Lock()
	var failed []*op
	for id, o := range c.ops {
		if match(o) {
			failed = append(failed, o)
			delete(c.ops, id)
		}
	}
	c.mu.Unlock()
	for _, o := range failed {
		if o.done != nil {
			o.done(nil, err)
		}
	}
}

// start registers req as an op and sends it when a session is open (else
// the next session sends it). done, if not nil, receives the answer.
func (c *Client) start(req *pb.SessionRequest, done func(*pb.SessionResponse, error)) (uint64, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	c.nextID++
	req.RequestId = c.nextID
	c.ops[req.RequestId] = &op{req: req, since: time.Now(), done: done}
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		_ = s.send(req) // on failure run reconnects and re-sends
	}
	return req.RequestId, nil
}

// abandon withdraws a waiting acquire. It reports false when the acquire
// was already answered (its done has run or is about to).
func (c *Client) abandon(id uint64) bool {
	c.mu.Lock()
	if _, ok := c.ops[id]; !ok {
		c.mu.Unlock()
		return false
	}
	delete(c.ops, id)
	s := c.sess
	if s != nil {
		c.orphans[id] = struct{}{}
		c.nextID++
	}
	cancelID := c.nextID
	c.mu.Unlock()
	if s != nil {
		_ = s.send(&pb.SessionRequest{RequestId: cancelID, Kind: &pb.SessionRequest_Cancel{Cancel: &pb.SessionCancel{AcquireRequestId: id}}})
	}
	return true
}

// dispatch hands an answer to its op. It reports true when the answer is
// UNAVAILABLE for a registered op: the server is going away (shutting down
// or no longer the leader), and the op stays registered to be sent again on
// the next session.
func (c *Client) dispatch(resp *pb.SessionResponse) (departing bool) {
	if e := resp.GetLeaseExpired(); e != nil {
		c.lose(e.GetLeaseId())
		return false
	}
	id := resp.GetRequestId()
	c.mu.Lock()
	o, ok := c.ops[id]
	if ok && resp.GetFailure() != nil && codes.Code(resp.GetFailure().GetCode()) == codes.Unavailable {
		c.mu.Unlock()
		return true
	}
	delete(c.ops, id)
	_, orphan := c.orphans[id]
	delete(c.orphans, id)
	c.mu.Unlock()
	switch {
	case ok && o.done != nil:
		o.done(resp, nil)
	case orphan:
		// An acquire granted before its cancel arrived: give the lease back.
		if l := resp.GetGranted().GetLease(); l != nil {
			c.releaseID(l.GetLeaseId())
		}
	}
	return false
}

// releaseID sends a release nobody waits for.
func (c *Client) releaseID(id string) {
	_, _ = c.start(&pb.SessionRequest{Kind: &pb.SessionRequest_Release{Release: &pb.ReleaseRequest{LeaseId: id}}}, nil)
}

// lose forgets a lease the server no longer holds.
func (c *Client) lose(id string) {
	c.mu.Lock()
	l := c.leases[id]
	delete(c.leases, id)
	c.mu.Unlock()
	if l != nil {
		l.markLost()
	}
}

// heartbeat sends one heartbeat for the held leases that are due, or for
// all of them; it returns when the next one is due.
func (c *Client) heartbeat(all bool) time.Time {
	now := time.Now()
	next := now.Add(time.Hour)
	c.mu.Lock()
	s := c.sess
	var ids []string
	if s != nil {
		for id, l := range c.leases {
			due := l.beat.Add(l.ttl / 3)
			if all || !due.After(now.Add(l.ttl/30)) {
				ids = append(ids, id)
				l.beat = now
				due = now.Add(l.ttl / 3)
			}
			next = minTime(next, due)
		}
	}
	c.mu.Unlock()
	if len(ids) > 0 {
		req := &pb.SessionRequest{Kind: &pb.SessionRequest_Heartbeat{Heartbeat: &pb.HeartbeatRequest{LeaseIds: ids}}}
		_, _ = c.start(req, c.onHeartbeat)
	}
	return next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// onHeartbeat forgets the leases the server no longer holds.
func (c *Client) onHeartbeat(resp *pb.SessionResponse, err error) {
	for _, st := range resp.GetHeartbeat().GetLeases() {
		if !st.GetHeld() {
			c.lose(st.GetLeaseId())
		}
	}
}

// wakeHeartbeats makes heartbeatLoop recompute its schedule.
func (c *Client) wakeHeartbeats() {
	select {
	case c.hbWake <- struct{}{}:
	default:
	}
}

// heartbeatLoop heartbeats each held lease about every third of its TTL.
func (c *Client) heartbeatLoop() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := c.heartbeat(false)
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-c.hbWake:
		case <-c.ctx.Done():
			return
		}
	}
}
