package ratequeue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// Client is a connection to a ratequeue server. It keeps one session stream
// that all goroutines share, heartbeats held leases in the background, and
// reconnects with backoff, re-sending waiting acquires and re-attaching
// leases. A Client is safe for concurrent use.
type Client struct {
	cfg    config
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hbWake chan struct{}

	mu      sync.Mutex
	closed  bool
	eps     []endpoint // the configured servers
	ep      endpoint   // the server in use
	epIndex int        // ep's index in eps, or -1 for a leader outside the list
	conns   map[endpoint]*grpc.ClientConn
	sess    *session  // the open session, nil while disconnected
	downAt  time.Time // when the last session ended
	nextID  uint64
	ops     map[uint64]*op      // sent, awaiting an answer; re-sent on reconnect
	orphans map[uint64]struct{} // acquires given up while waiting; release if granted
	leases  map[string]*Lease   // held leases, heartbeated
	// refusal is the key refusal (UNAUTHENTICATED, PERMISSION_DENIED) that
	// ended the last stream or attempt, until a stream succeeds.
	refusal   *Error
	wantConn  chan struct{} // a new op while disconnected
	attemptAt time.Time     // the last connection attempt
	lastErr   error         // why the last stream or attempt failed
	expiry    *time.Timer   // fires at expiryAt, the earliest op deadline
	expiryAt  time.Time
}

// Dial connects to a ratequeue server and opens the client's session. addr
// is a comma-separated list of servers, each http://host:port,
// https://host:port (TLS) or a bare host:port; the client uses the first
// that answers and follows a standby's pointer to the leader. An empty addr
// means the RATEQUEUE_URL environment variable, else DefaultURL.
//
// ctx bounds the first connection only. Dial fails with ErrUnavailable when
// no server answers, and with ErrUnauthenticated or ErrPermissionDenied when
// the server refuses the API key.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	c, err := newClient(addr, opts)
	if err != nil {
		return nil, err
	}
	c.attemptAt = time.Now()
	s, err := c.connect(ctx)
	if err != nil {
		c.Close()
		return nil, fromError(err)
	}
	if !c.attach(s) {
		return nil, ErrClosed
	}
	c.wg.Add(2)
	go c.run(s)
	go c.heartbeatLoop()
	return c, nil
}

// newClient applies the options and the environment's defaults to a Client
// that has not connected yet and runs nothing: Dial opens its session,
// NewAdminClient makes unary calls only.
func newClient(addr string, opts []Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.apiKeySet {
		cfg.apiKey = os.Getenv("RATEQUEUE_API_KEY")
	}
	if !cfg.caFileSet && cfg.tls == nil {
		cfg.caFile = os.Getenv("RATEQUEUE_CA_FILE")
	}
	if cfg.caFile != "" {
		tc, err := withCAFile(cfg.tls, cfg.caFile)
		if err != nil {
			return nil, err
		}
		cfg.tls = tc
	}
	if addr == "" {
		addr = os.Getenv("RATEQUEUE_URL")
	}
	if addr == "" {
		addr = DefaultURL
	}
	eps, err := parseURL(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		hbWake:   make(chan struct{}, 1),
		wantConn: make(chan struct{}, 1),
		eps:      eps,
		ep:       eps[0],
		conns:    map[endpoint]*grpc.ClientConn{},
		ops:      map[uint64]*op{},
		orphans:  map[uint64]struct{}{},
		leases:   map[string]*Lease{},
	}
	c.expiry = time.AfterFunc(time.Hour, c.expire)
	c.expiry.Stop()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close ends the session and the connections. Waiting acquires fail with
// ErrClosed. Leases still held are not released: they expire at their TTL,
// so release them first.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	c.cancel()
	if s != nil {
		s.cancel()
	}
	c.failOps(func(*op) bool { return true }, ErrClosed)
	c.wg.Wait()
	c.expiry.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = map[endpoint]*grpc.ClientConn{}
	return nil
}

// Conn returns a connection for the generated service clients, for example
// pb.NewAdminServiceClient(c.Conn()). Its calls carry the API key and go to
// the server the session uses; a call a standby refuses is retried once on
// the leader it names. A unary call's error is an *Error.
func (c *Client) Conn() grpc.ClientConnInterface { return connProxy{c} }

// Admin returns a client of the AdminService (resources, their statistics,
// API keys and namespaces) on Conn. Like the client's own, its errors are
// *Error values that match the sentinel errors with errors.Is, and
// status.Code gives their gRPC code.
func (c *Client) Admin() pb.AdminServiceClient { return pb.NewAdminServiceClient(c.Conn()) }

// withCAFile returns a copy of base (or a new configuration) that trusts the
// CA certificates in the PEM file at path.
func withCAFile(base *tls.Config, path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ratequeue: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ratequeue: CA file %s holds no PEM certificate", path)
	}
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// connFor returns the connection to ep, creating it on first use.
func (c *Client) connFor(ep endpoint) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[ep]; ok {
		return cc, nil
	}
	creds := insecure.NewCredentials()
	if ep.tls {
		cfg := c.cfg.tls
		if cfg == nil {
			cfg = &tls.Config{}
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(c.unaryAuth),
		grpc.WithChainStreamInterceptor(c.streamAuth),
		// The session loop paces reconnects (and resets this backoff before
		// each attempt); between them the connection retries no slower than
		// the protocol's pause, not gRPC's default of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: c.cfg.initialBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: c.cfg.maxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
		// Notice a silently dead connection (the server's grpc-js does not
		// police client pings).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                protocol.KeepaliveTime,
			Timeout:             protocol.KeepaliveTimeout,
			PermitWithoutStream: protocol.KeepalivePermitWithoutStream,
		}),
	}
	cc, err := grpc.NewClient(ep.target, append(opts, c.cfg.dialOptions...)...)
	if err != nil {
		return nil, err
	}
	c.conns[ep] = cc
	return cc, nil
}

func (c *Client) withAuth(ctx context.Context) context.Context {
	if c.cfg.apiKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, protocol.AuthorizationKey, protocol.BearerPrefix+c.cfg.apiKey)
	}
	if c.cfg.namespace != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, protocol.NamespaceKey, c.cfg.namespace)
	}
	return ctx
}

func (c *Client) unaryAuth(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(c.withAuth(ctx), method, req, reply, cc, opts...)
}

func (c *Client) streamAuth(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(c.withAuth(ctx), desc, cc, method, opts...)
}

// current returns the server in use.
func (c *Client) current() endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ep
}

// follow switches to the leader a standby named.
func (c *Client) follow(from endpoint, leader string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ep := range c.eps {
		if ep.target == leader {
			c.ep, c.epIndex = ep, i
			return
		}
	}
	c.ep, c.epIndex = endpoint{target: leader, tls: from.tls}, -1
}

// advance switches to the next server in the list.
func (c *Client) advance() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epIndex = (c.epIndex + 1) % len(c.eps)
	c.ep = c.eps[c.epIndex]
}

// leaderOf returns the leader a standby named in md, or "".
func leaderOf(md metadata.MD) string {
	if v := md.Get(protocol.LeaderKey); len(v) > 0 {
		return v[0]
	}
	return ""
}

// connProxy sends calls to the client's current server.
type connProxy struct{ c *Client }

func (p connProxy) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	for attempt := 0; ; attempt++ {
		ep := p.c.current()
		cc, err := p.c.connFor(ep)
		if err != nil {
			return err
		}
		var trailer metadata.MD
		err = cc.Invoke(ctx, method, args, reply, append(opts, grpc.Trailer(&trailer))...)
		if leader := leaderOf(trailer); attempt == 0 && status.Code(err) == codes.Unavailable && leader != "" {
			p.c.follow(ep, leader)
			continue
		}
		return fromError(err)
	}
}

func (p connProxy) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cc, err := p.c.connFor(p.c.current())
	if err != nil {
		return nil, err
	}
	return cc.NewStream(ctx, desc, method, opts...)
}
