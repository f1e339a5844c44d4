package ratequeue

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"

	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// Option configures a Client; pass options to Dial.
type Option func(*config)

type config struct {
	apiKey           string
	apiKeySet        bool
	namespace        string
	tls              *tls.Config
	caFile           string
	caFileSet        bool
	dialOptions      []grpc.DialOption
	reconnectTimeout time.Duration
	initialBackoff   time.Duration
	maxBackoff       time.Duration
	probeTimeout     time.Duration
}

func defaultConfig() config {
	return config{
		reconnectTimeout: protocol.ReconnectTimeout,
		initialBackoff:   protocol.InitialBackoff,
		maxBackoff:       protocol.MaxBackoff,
		probeTimeout:     10 * time.Second,
	}
}

// WithAPIKey sends "authorization: Bearer <key>" on every call. An empty key
// sends none. Without this option the key comes from the RATEQUEUE_API_KEY
// environment variable.
func WithAPIKey(key string) Option {
	return func(c *config) { c.apiKey, c.apiKeySet = key, true }
}

// WithNamespace makes every call act in namespace ns by sending
// "ratequeue-namespace: <ns>" metadata. Only root keys may choose; other
// keys act in their own namespace and are refused another one with
// ErrPermissionDenied.
func WithNamespace(ns string) Option {
	return func(c *config) { c.namespace = ns }
}

// WithTLSConfig sets the TLS configuration for https:// addresses. The
// default trusts the system roots. For a server whose certificate a private
// CA signed, WithCAFile is simpler.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}

// WithCAFile trusts the CA certificates in the PEM file at path, instead of
// the system roots, for https:// addresses. Combined with WithTLSConfig it
// replaces that configuration's RootCAs. Dial reads the file and fails when
// it holds no certificate. Without this option the file comes from the
// RATEQUEUE_CA_FILE environment variable, unless WithTLSConfig is given; an
// empty path trusts the system roots.
func WithCAFile(path string) Option {
	return func(c *config) { c.caFile, c.caFileSet = path, true }
}

// WithReconnectTimeout sets how long a waiting acquire survives without a
// working session, counted from when the session went down or from the
// acquire if that came later, before it fails with ErrUnavailable. The
// default is 30 s. (An unanswered release is kept until its lease's TTL
// has passed instead.)
func WithReconnectTimeout(d time.Duration) Option {
	return func(c *config) { c.reconnectTimeout = d }
}

// WithBackoff sets the first and the longest pause between reconnect
// attempts; the pause doubles from the first to the longest, each jittered
// to 0.5–1 times, and starts again at the first after a session that
// answered. The defaults are 50 ms and 1 s: short enough that a server
// taking over (after a failover or a graceful shutdown) is found within
// about a second.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.initialBackoff, c.maxBackoff = initial, max }
}

// WithDialOptions adds gRPC dial options, for example interceptors.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// AcquireOption configures one Acquire or Do.
type AcquireOption func(*acquireOptions)

type acquireOptions struct {
	load     *float64
	priority *int32
	lane     string
	key      string
	// keySet: Key was given, so an empty key is a mistake (a missing
	// customer id), not "the resource itself".
	keySet bool
}

// Load sets what the call costs on the resource's load limits (tokens,
// bytes, any unit). The default is 1. Request limits count 1 per acquire
// whatever the load.
func Load(n float64) AcquireOption {
	return func(o *acquireOptions) { o.load = &n }
}

// Priority orders requests within a lane: higher goes first. The default
// is 10.
func Priority(p int32) AcquireOption {
	return func(o *acquireOptions) { o.priority = &p }
}

// Lane names the lane to wait in. The default is the resource's default
// lane.
func Lane(name string) AcquireOption {
	return func(o *acquireOptions) { o.lane = name }
}

// Key charges the acquire to a key inside the resource, for example a
// customer or tenant id: 1 to 128 characters, no '@', whitespace or control
// characters. The lease is then on the keyed child "RESOURCE/KEY", which
// the server makes from the resource's per_key template on first use, and
// the grant counts against the child's own quota and against the resource
// and its ancestors at once. The resource must have a per_key template
// (else the acquire fails with ErrInvalid), unless "RESOURCE/KEY" is
// declared as a child of its own. Without Key the acquire is on the
// resource itself; Key("") fails with ErrInvalid, so that a missing id
// never silently skips the key's quota.
func Key(key string) AcquireOption {
	return func(o *acquireOptions) { o.key, o.keySet = key, true }
}

// ReleaseOption configures one Release.
type ReleaseOption func(*releaseOptions)

type releaseOptions struct {
	actualLoad *float64
}

// ActualLoad reports the load the call really used when it differs from the
// estimate given to Acquire; the resource's load limits are charged or
// refunded by the difference.
func ActualLoad(n float64) ReleaseOption {
	return func(o *releaseOptions) { o.actualLoad = &n }
}
