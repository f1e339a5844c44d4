package ratequeue

// The session engine, following the session protocol in
// proto/ratequeue/v1/ratequeue.proto (docs/protocol.md). One goroutine (run)
// owns the stream's receiving side and reconnects; callers register an op (a
// request awaiting its answer) and send it on the open stream. Ops stay
// registered until answered, so a new stream re-sends them: waiting acquires
// queue again and releases are retried (both are harmless to repeat). Leases
// are heartbeated by heartbeatLoop, and all at once on a new stream, which
// re-attaches them to it. A request answered UNAVAILABLE comes from a node
// that is going away (shutting down, or no longer the leader): its op stays
// registered and the stream is dropped, so the request goes again to whoever
// serves next. How the end of a stream affects ops and leases is
// protocol.OnStreamEnd's table. Requests go out through the session's sender
// goroutine, which writes what accumulated while it was busy as one
// SessionRequestBatch; the server's SessionResponseBatch is dispatched as if
// each answer had come alone, in order.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// session is one open Session stream.
type session struct {
	stream grpc.BidiStreamingClient[pb.SessionRequest, pb.SessionResponse]
	ctx    context.Context // the stream's; ends with cancel
	cancel context.CancelFunc
	ep     endpoint
	// out holds the requests sendLoop has yet to write, in order; wake
	// tells it that out is no longer empty.
	outMu sync.Mutex
	out   []*pb.SessionRequest
	wake  chan struct{}
	// departing: the server answered a request UNAVAILABLE, so it is going
	// away; only run reads it.
	departing bool
}

// send queues req for sendLoop. A request that cannot be written is lost
// with the stream: run reconnects, and the new session re-sends every op.
func (s *session) send(req *pb.SessionRequest) {
	s.outMu.Lock()
	s.queueLocked(req)
	s.outMu.Unlock()
}

// queueLocked queues req for sendLoop. s.outMu is held.
func (s *session) queueLocked(req *pb.SessionRequest) {
	s.out = append(s.out, req)
	if len(s.out) == 1 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// sendLoop writes the queued requests until the session ends: what
// accumulated while the last write was under way goes out together, in as
// few messages as the protocol's batch bounds allow.
func (s *session) sendLoop(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
		s.outMu.Lock()
		reqs := s.out
		s.out = nil
		s.outMu.Unlock()
		for _, msg := range batched(reqs) {
			if s.stream.Send(msg) != nil {
				break // the stream is done: run notices and reconnects
			}
		}
	}
}

// batched returns the messages that carry reqs, in order: runs of them
// joined as SessionRequestBatch messages of at most
// protocol.MaxBatchMessages requests and protocol.MaxBatchBytes bytes (a
// run of one, or a request too large to share, goes as itself).
func batched(reqs []*pb.SessionRequest) []*pb.SessionRequest {
	if len(reqs) == 1 {
		return reqs
	}
	var msgs []*pb.SessionRequest
	join := func(run []*pb.SessionRequest) {
		if len(run) == 1 {
			msgs = append(msgs, run[0])
			return
		}
		msgs = append(msgs, &pb.SessionRequest{Kind: &pb.SessionRequest_Batch{Batch: &pb.SessionRequestBatch{Requests: run}}})
	}
	start, size := 0, 0
	for i, req := range reqs {
		n := proto.Size(req)
		if i > start && (i-start == protocol.MaxBatchMessages || size+n > protocol.MaxBatchBytes) {
			join(reqs[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(reqs) {
		join(reqs[start:])
	}
	return msgs
}

// op is a request awaiting its answer.
type op struct {
	req   *pb.SessionRequest
	since time.Time // when it was registered
	// until, for a release, is when the lease's TTL has passed: the release
	// is sent again on every new stream until then.
	until time.Time
	// done receives the answer; nil when nobody waits for it. Guarded by
	// Client.mu once the op is registered.
	done func(*pb.SessionResponse, error)
	// broken, for a report, counts the streams that had answered and broke
	// with it unanswered: at two it fails (feedback is news about a moment
	// that has passed). Guarded by Client.mu.
	broken int
}

// connect opens a session on the current server, or on the next ones in
// the list, following standbys' pointers to the leader. It tries each
// server once, and stops at a status that is not retried: the server
// refused the session for a reason another server shares.
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
		if protocol.OnStreamEnd(status.Code(err)) != protocol.Retry || ctx.Err() != nil {
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
	if ctx.Err() != nil && protocol.OnStreamEnd(status.Code(lastErr)) == protocol.Retry {
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

// open opens a session on ep and checks it with an empty heartbeat. On
// failure it returns the leader a standby named, if any.
func (c *Client) open(ctx context.Context, ep endpoint) (*session, string, error) {
	cc, err := c.connFor(ep)
	if err != nil {
		return nil, "", err
	}
	// The session loop's pause is the protocol's backoff: the connection's
	// own backoff must not add to it.
	cc.ResetConnectBackoff()
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
				return &session{stream: stream, ctx: sctx, cancel: cancel, ep: ep, wake: make(chan struct{}, 1)}, "", nil
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

// attach makes s the open session, starts its sender and re-attaches
// everything to it, in the protocol's order: the waiting acquires in
// request-id order, the releases not yet answered, the reports not yet
// answered (each until two working streams broke without answering it),
// then heartbeats naming every held lease. It reports false when the client
// has closed.
func (c *Client) attach(s *session) bool {
	// Holding s's queue while s becomes visible keeps a new op, which
	// callers queue themselves, behind the ones re-sent here.
	s.outMu.Lock()
	defer s.outMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.cancel()
		return false
	}
	c.sess = s
	c.wg.Add(1)
	go s.sendLoop(&c.wg)
	c.downAt = time.Time{}
	c.refusal = nil
	var acquires, releases, reports []*op
	var givenUp []func(*pb.SessionResponse, error)
	for id, o := range c.ops {
		switch o.req.GetKind().(type) {
		case *pb.SessionRequest_Acquire:
			acquires = append(acquires, o)
		case *pb.SessionRequest_Release:
			releases = append(releases, o)
		case *pb.SessionRequest_Report:
			// A report unanswered on the old stream may have been applied
			// there: sending it again can at worst lengthen a pause, while
			// losing it lets the fleet run into the provider's limit. After
			// two working streams broke without answering it, it is stale.
			if o.broken >= 2 {
				delete(c.ops, id)
				if o.done != nil {
					givenUp = append(givenUp, o.done)
				}
				continue
			}
			reports = append(reports, o)
		default:
			delete(c.ops, id) // a heartbeat: the ones below name every lease
		}
	}
	beats := c.heartbeatsLocked(func(*Lease) bool { return true })
	lastErr := c.lastErr
	c.mu.Unlock()
	for _, done := range givenUp {
		done(nil, newError(codes.Unavailable, "two streams broke before a server answered the report: "+errString(lastErr)))
	}
	byID := func(a, b *op) int { return cmp.Compare(a.req.GetRequestId(), b.req.GetRequestId()) }
	slices.SortFunc(acquires, byID)
	slices.SortFunc(releases, byID)
	slices.SortFunc(reports, byID)
	for _, req := range slices.Concat(resendable(acquires), resendable(releases), resendable(reports), beats) {
		s.queueLocked(req)
	}
	c.wakeHeartbeats()
	return true
}

// resendable returns the requests of ops to send again: an acquire carries
// what is left of its timeout.
func resendable(ops []*op) []*pb.SessionRequest {
	reqs := make([]*pb.SessionRequest, len(ops))
	for i, o := range ops {
		reqs[i] = o.req
		if a := o.req.GetAcquire(); a != nil && a.GetTimeout() != nil {
			left := max(0, time.Until(o.since.Add(a.GetTimeout().AsDuration())))
			req := proto.Clone(o.req).(*pb.SessionRequest)
			req.GetAcquire().Timeout = durationpb.New(left)
			reqs[i] = req
		}
	}
	return reqs
}

// run receives on the open session and reconnects when it ends.
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
			// s answered (its probe at least): every report still unanswered was on it.
			for _, o := range c.ops {
				if o.req.GetReport() != nil {
					o.broken++
				}
			}
		}
		closed := c.closed
		// Acquires given up on the ended stream are cancelled with it.
		clear(c.orphans)
		c.mu.Unlock()
		if closed {
			return
		}
		c.ended(err)
		// s answered (its probe at least), so the pause starts again; but a
		// departing server keeps the backoff growing, so that a node that
		// answers UNAVAILABLE yet stays up is not retried in a tight loop.
		if !s.departing {
			backoff = c.cfg.initialBackoff
		}
		if leader != "" && leader != s.ep.target {
			c.follow(s.ep, leader)
		} else if len(c.eps) > 1 {
			c.advance()
		}
		if s = c.reconnect(&backoff); s == nil {
			return
		}
	}
}

// reconnect opens a new session, pausing between attempts, and attaches it.
// After a key refusal it waits for a new op before it tries. It returns nil
// when the client closes.
func (c *Client) reconnect(backoff *time.Duration) *session {
	for {
		if !c.awaitOp() {
			return nil
		}
		// The pause runs between attempts: time spent parked counts.
		c.mu.Lock()
		pause := protocol.Jitter(*backoff) - time.Since(c.attemptAt)
		c.mu.Unlock()
		if !c.sleep(pause) {
			return nil
		}
		c.mu.Lock()
		idle := c.refusal != nil && len(c.ops) == 0 // the op ended during the pause
		if !idle {
			c.attemptAt = time.Now()
		}
		c.mu.Unlock()
		if idle {
			continue
		}
		*backoff = min(*backoff*2, c.cfg.maxBackoff)
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.probeTimeout)
		next, err := c.connect(ctx)
		cancel()
		if err == nil {
			if !c.attach(next) {
				return nil
			}
			return next
		}
		c.ended(err)
	}
}

// awaitOp returns at once unless the key was refused, and then when there
// is an op to connect for. It reports false when the client closes.
func (c *Client) awaitOp() bool {
	for {
		c.mu.Lock()
		park := c.refusal != nil && len(c.ops) == 0
		c.mu.Unlock()
		if !park {
			return true
		}
		select {
		case <-c.wantConn:
		case <-c.ctx.Done():
			return false
		}
	}
}

// ended applies the protocol's rule for a stream that ended, or could not
// be opened, with err.
func (c *Client) ended(err error) {
	switch protocol.OnStreamEnd(status.Code(err)) {
	case protocol.Retry:
		// Ops wait for the next stream, at most the reconnect timeout.
		c.mu.Lock()
		c.lastErr = err
		c.armExpiryLocked()
		c.mu.Unlock()
	case protocol.KeyRefused:
		// Nobody can heartbeat the leases with this key: they are lost (the
		// server frees them at their TTL).
		var e *Error
		if !errors.As(fromError(err), &e) {
			e = newError(status.Code(err), err.Error())
		}
		c.mu.Lock()
		c.refusal = e
		lost := c.leases
		c.leases = map[string]*Lease{}
		c.mu.Unlock()
		c.failOps(func(*op) bool { return true }, e)
		for _, l := range lost {
			l.markLost()
		}
	default:
		// Waiting acquires fail; releases are sent again and leases kept:
		// the next stream carries them.
		c.failOps(func(o *op) bool { return o.req.GetRelease() == nil }, fromError(err))
		c.mu.Lock()
		c.lastErr = err
		c.armExpiryLocked()
		c.mu.Unlock()
	}
}

// receive dispatches the session's answers until the stream ends. When the
// server answers a request UNAVAILABLE it is going away: the session is
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
		if c.dispatch(resp) && !s.departing {
			s.departing = true
			grace = time.AfterFunc(protocol.DepartureGrace, s.cancel)
		}
	}
}

// sleep waits d or until the client closes; it reports whether to go on.
func (c *Client) sleep(d time.Duration) bool {
	if d <= 0 {
		return c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// deadlineLocked returns when o fails for want of an answer, or the zero
// time: a release when its lease's TTL has passed; any other op after the
// reconnect timeout without a working stream, counted from when the stream
// went down or from the op if that came later. c.mu is held.
func (c *Client) deadlineLocked(o *op) time.Time {
	if !o.until.IsZero() {
		return o.until
	}
	if c.sess != nil || c.downAt.IsZero() {
		return time.Time{}
	}
	return maxTime(c.downAt, o.since).Add(c.cfg.reconnectTimeout)
}

// armExpiryLocked sets the expiry timer to the earliest op deadline. c.mu
// is held.
func (c *Client) armExpiryLocked() {
	var next time.Time
	for _, o := range c.ops {
		if d := c.deadlineLocked(o); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	c.expiryAt = next
	if next.IsZero() {
		c.expiry.Stop()
	} else {
		c.expiry.Reset(time.Until(next))
	}
}

// expire fails the ops whose deadline has passed, with ErrUnavailable.
func (c *Client) expire() {
	now := time.Now()
	c.mu.Lock()
	type failed struct {
		done func(*pb.SessionResponse, error)
		err  error
	}
	var fail []failed
	for id, o := range c.ops {
		d := c.deadlineLocked(o)
		if d.IsZero() || d.After(now) {
			continue
		}
		delete(c.ops, id)
		if o.done == nil {
			continue
		}
		msg := fmt.Sprintf("no ratequeue server reachable for %v: %s", c.cfg.reconnectTimeout, errString(c.lastErr))
		if r := o.req.GetRelease(); r != nil {
			msg = fmt.Sprintf("release %s: no ratequeue server answered before the lease's TTL passed; the server has freed the slot by now (%s)", r.GetLeaseId(), errString(c.lastErr))
		}
		fail = append(fail, failed{o.done, newError(codes.Unavailable, msg)})
	}
	c.armExpiryLocked()
	c.mu.Unlock()
	for _, f := range fail {
		f.done(nil, f.err)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// failOps fails the registered ops that match.
func (c *Client) failOps(match func(*op) bool, err error) {
	c.mu.Lock()
	var done []func(*pb.SessionResponse, error)
	for id, o := range c.ops {
		if match(o) {
			delete(c.ops, id)
			if o.done != nil {
				done = append(done, o.done)
			}
		}
	}
	c.mu.Unlock()
	for _, d := range done {
		d(nil, err)
	}
}

// start registers req as an op and sends it when a session is open (else
// the next session sends it). done, if not nil, receives the answer; until
// is a release's deadline (zero for other ops).
func (c *Client) start(req *pb.SessionRequest, until time.Time, done func(*pb.SessionResponse, error)) (uint64, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	o := c.registerLocked(req, until, done)
	s := c.sess
	if s == nil {
		// A client parked after a key refusal connects again for a new op.
		select {
		case c.wantConn <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	if s != nil {
		s.send(req)
	}
	return o.req.GetRequestId(), nil
}

// registerLocked numbers req and registers it as an op. c.mu is held.
func (c *Client) registerLocked(req *pb.SessionRequest, until time.Time, done func(*pb.SessionResponse, error)) *op {
	c.nextID++
	req.RequestId = c.nextID
	o := &op{req: req, since: time.Now(), until: until, done: done}
	c.ops[req.RequestId] = o
	if d := c.deadlineLocked(o); !d.IsZero() && (c.expiryAt.IsZero() || d.Before(c.expiryAt)) {
		c.expiryAt = d
		c.expiry.Reset(time.Until(d))
	}
	return o
}

// abandon stops waiting for an acquire and, when cancel is set, withdraws
// it from the server's queue. A grant that crosses is released. It reports
// false when the acquire was already answered (its done has run or is
// about to).
func (c *Client) abandon(id uint64, cancel bool) bool {
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
	if s != nil && cancel {
		s.send(&pb.SessionRequest{RequestId: cancelID, Kind: &pb.SessionRequest_Cancel{Cancel: &pb.SessionCancel{AcquireRequestId: id}}})
	}
	return true
}

// detach stops waiting for an op's answer but leaves the op registered, so
// that it is still sent again on a new stream. It reports false when the
// answer has come (done has run or is about to).
func (c *Client) detach(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.ops[id]
	if ok {
		o.done = nil
	}
	return ok
}

// dispatch hands an answer to its op. It reports true when the answer is
// UNAVAILABLE for a registered op: the server is going away (shutting down
// or no longer the leader), and the op stays registered to be sent again on
// the next session.
func (c *Client) dispatch(resp *pb.SessionResponse) (departing bool) {
	if b := resp.GetBatch(); b != nil {
		// Each answer as if it came alone, in order, all of them even after
		// one said the server is going away.
		for _, r := range b.GetResponses() {
			departing = c.dispatch(r) || departing
		}
		return departing
	}
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
	var done func(*pb.SessionResponse, error)
	if ok {
		delete(c.ops, id)
		done = o.done
	}
	_, orphan := c.orphans[id]
	delete(c.orphans, id)
	c.mu.Unlock()
	switch {
	case done != nil:
		done(resp, nil)
	case orphan:
		// An acquire granted before its cancel arrived: give the lease back.
		if l := resp.GetGranted().GetLease(); l != nil {
			c.releaseID(l.GetLeaseId(), l.GetTtl().AsDuration())
		}
	}
	return false
}

// releaseID sends a release nobody waits for, until the lease's TTL has
// passed.
func (c *Client) releaseID(id string, ttl time.Duration) {
	if ttl <= 0 {
		ttl = defaultTTL
	}
	req := &pb.SessionRequest{Kind: &pb.SessionRequest_Release{Release: &pb.ReleaseRequest{LeaseId: id}}}
	_, _ = c.start(req, time.Now().Add(ttl), nil)
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

// heartbeat sends heartbeats for the held leases that are due; it returns
// when the next one is due.
func (c *Client) heartbeat() time.Time {
	now := time.Now()
	next := now.Add(time.Hour)
	c.mu.Lock()
	s := c.sess
	var beats []*pb.SessionRequest
	if s != nil {
		// Leases due within a tenth of their heartbeat interval go now, so
		// that leases granted close together share messages.
		beats = c.heartbeatsLocked(func(l *Lease) bool {
			return !l.beat.Add(l.ttl / protocol.HeartbeatsPerTTL).After(now.Add(l.ttl / (10 * protocol.HeartbeatsPerTTL)))
		})
		for _, l := range c.leases {
			next = minTime(next, l.beat.Add(l.ttl/protocol.HeartbeatsPerTTL))
		}
	}
	c.mu.Unlock()
	for _, req := range beats {
		s.send(req) // if the stream breaks, the new session heartbeats every lease
	}
	return next
}

// heartbeatsLocked registers heartbeats for the held leases that due
// selects, at most protocol.MaxLeaseIDsPerHeartbeat ids each, and returns
// them to send. c.mu is held.
func (c *Client) heartbeatsLocked(due func(*Lease) bool) []*pb.SessionRequest {
	now := time.Now()
	var ids []string
	for id, l := range c.leases {
		if due(l) {
			ids = append(ids, id)
			l.beat = now
		}
	}
	var reqs []*pb.SessionRequest
	for chunk := range slices.Chunk(ids, protocol.MaxLeaseIDsPerHeartbeat) {
		req := &pb.SessionRequest{Kind: &pb.SessionRequest_Heartbeat{Heartbeat: &pb.HeartbeatRequest{LeaseIds: chunk}}}
		c.registerLocked(req, time.Time{}, c.onHeartbeat)
		reqs = append(reqs, req)
	}
	return reqs
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
		next := c.heartbeat()
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-c.hbWake:
		case <-c.ctx.Done():
			return
		}
	}
}
