package ratequeue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
)

// AdminClient declares and inspects resources and manages API keys, with
// resources in the config file's shape (Resource, Limit) and statistics and
// keys as plain Go values. It is safe for concurrent use.
//
// Its errors are *Error values that match the sentinel errors: a field the
// server refuses, or one the client cannot even encode, is ErrInvalid with a
// message that starts with the field's name ("resource.limits[0].period:
// ..."); an unknown resource is ErrNotFound.
type AdminClient struct {
	c   *Client // never dialed: its options, connections and leader following, no session
	rpc pb.AdminServiceClient
}

// NewAdminClient returns an admin client of the servers at addr, with the
// options and defaults of Dial: an empty addr means RATEQUEUE_URL, else
// DefaultURL; the API key defaults to RATEQUEUE_API_KEY and the CA file to
// RATEQUEUE_CA_FILE; WithNamespace picks a root key's namespace.
//
// It opens no session and connects on its first call, so it fails only for
// a bad address or CA file. A call that a standby refuses is sent once more,
// to the leader it names; after any other ErrUnavailable the next call goes
// to the next server of addr.
func NewAdminClient(addr string, opts ...Option) (*AdminClient, error) {
	c, err := newClient(addr, opts)
	if err != nil {
		return nil, err
	}
	return &AdminClient{c: c, rpc: pb.NewAdminServiceClient(c.Conn())}, nil
}

// Close closes the client's connections.
func (a *AdminClient) Close() error { return a.c.Close() }

// Dimension is what a rate limit counts.
type Dimension string

const (
	// DimensionRequests counts 1 per acquire.
	DimensionRequests Dimension = "requests"
	// DimensionLoad counts each acquire's load.
	DimensionLoad Dimension = "load"
)

// Limit is one rate limit: at most Burst + t·Amount/Period units in any
// interval of length t.
type Limit struct {
	// Dimension is what the limit counts.
	Dimension Dimension
	// Amount is the units per period; it must be positive.
	Amount float64
	// Period is 1 ms to 366 days.
	Period time.Duration
	// Burst is the most units that may be spent at once; 0 means Amount.
	// A stored limit has it filled in.
	Burst float64
	// Unit is what a load limit counts, for provider feedback: "" or
	// "tokens" (Feedback.Load applies), "input_tokens" or "output_tokens"
	// (Feedback.InputTokens, OutputTokens), or another label. Empty on
	// requests limits.
	Unit string
}

// LaneWeight is one lane of a resource and its weight.
type LaneWeight struct {
	// Name is the lane's name.
	Name string
	// Weight is the lane's share of grants relative to the other lanes, 1
	// to 1000; 0 means 1.
	Weight int
}

// Resource is a shared budget and its limits, as the config file declares
// it. Only Name is required; a zero field takes the server's default. A
// resource the server returns has every default filled in, so passing it
// back to PutResource stores the same resource.
type Resource struct {
	// Name is 1 to 128 letters, digits, '.', '_', '-', ':' or '/',
	// starting with a letter or digit.
	Name string
	// Limits must all allow an acquire for it to be granted; at most 16.
	Limits []Limit
	// Concurrency is the most leases held at once; 0 means no cap.
	Concurrency int
	// Lanes are the resource's lanes in order (a slice, not a map, because
	// the order matters: the first lane is the default one). Empty means one
	// lane named "default".
	Lanes []LaneWeight
	// DefaultLane is the lane of acquires that name none; "" means the first
	// lane.
	DefaultLane string
	// LeaseTTL is how long a lease lives without a heartbeat, 100 ms to
	// 24 h; 0 means 30 s.
	LeaseTTL time.Duration
	// MaxQueue is the most waiting requests, beyond which acquires fail with
	// ErrQueueFull; 0 means 10,000.
	MaxQueue int
	// Cooldown is the first pause after the provider refused a call without
	// saying how long to wait, doubling on further refusals; 0 means 1 s,
	// at most 60 s.
	Cooldown time.Duration
	// LearnLimits says whether a provider limit lower than a configured one
	// (Feedback's Limit) becomes the limit's effective amount until the
	// resource is put again; nil means true.
	LearnLimits *bool
}

// LaneStats is one lane's live state and counters.
type LaneStats struct {
	Name   string
	Weight int
	// QueueDepth is the number of requests waiting in the lane now.
	QueueDepth int
	// Grants and LoadGranted count since the resource was created.
	Grants      uint64
	LoadGranted float64
}

// LimitStats is one limit's current use.
type LimitStats struct {
	// Limit is the limit as stored.
	Limit Limit
	// Available is the units that could be granted at once now.
	Available float64
	// Utilisation is the share of the burst in use now, 0 to 1.
	Utilisation float64
	// UsedLastPeriod is the units charged over the period that ends now,
	// refunds taken off (what ratequeue_limit_utilisation_ratio divides by
	// the amount).
	UsedLastPeriod float64
	// LearnedAmount is the amount per period the provider's feedback
	// taught, when lower than Limit.Amount: the limit admits at this rate.
	// Nil when nothing was learned.
	LearnedAmount *float64
}

// ResourceStats is a resource's live state and counters.
type ResourceStats struct {
	Name string
	// LeasesInFlight is the number of leases held now.
	LeasesInFlight int
	// Lanes are in the resource's lane order, Limits in its limit order.
	Lanes  []LaneStats
	Limits []LimitStats
	// Grants counts acquires granted; Rejections those refused at once
	// (queue full, or a load that can never fit); Timeouts those that
	// reached their deadline while waiting; Cancellations those withdrawn
	// while waiting; Expirations leases that expired unheartbeated.
	Grants, Rejections, Timeouts, Cancellations, Expirations uint64
	// The waits of recent grants: median, 90th and 99th percentile, longest.
	WaitP50, WaitP90, WaitP99, WaitMax time.Duration
	// PausedUntil is until when the resource grants nothing after the
	// provider refused a call; the zero time when it is not paused.
	PausedUntil time.Time
	// Throttles counts the calls the provider refused, as releases and
	// reports said.
	Throttles uint64
}

// Role is what an API key may do.
type Role string

const (
	// RoleWorker may acquire, release and heartbeat, and read its
	// namespace's resources and statistics.
	RoleWorker Role = "worker"
	// RoleAdmin may also change its namespace's resources and keys.
	RoleAdmin Role = "admin"
	// RoleRoot may do everything in every namespace.
	RoleRoot Role = "root"
)

// APIKey describes an API key; it never holds the secret.
type APIKey struct {
	// ID is the key's public id, the part after "rq_"; revoke it by this.
	ID string
	// Namespace is the namespace the key acts in.
	Namespace   string
	Role        Role
	Description string
	CreateTime  time.Time
}

// KeySpec describes a key to create.
type KeySpec struct {
	// Namespace is the key's namespace; "" means the caller's. A root key
	// creates the namespace when it does not exist yet.
	Namespace string
	// Role must be set.
	Role Role
	// Description is a note for people, at most 256 characters.
	Description string
}

var (
	dimensions = map[Dimension]pb.Dimension{DimensionRequests: pb.Dimension_DIMENSION_REQUESTS, DimensionLoad: pb.Dimension_DIMENSION_LOAD}
	roles      = map[Role]pb.ApiKeyRole{RoleWorker: pb.ApiKeyRole_API_KEY_ROLE_WORKER, RoleAdmin: pb.ApiKeyRole_API_KEY_ROLE_ADMIN, RoleRoot: pb.ApiKeyRole_API_KEY_ROLE_ROOT}
)

// call runs one admin RPC. A standby's leader hint is already followed by
// Conn; any other unavailability moves the next call on to the next server.
func call[T any](ctx context.Context, a *AdminClient, rpc func(context.Context) (T, error)) (T, error) {
	resp, err := rpc(ctx)
	if errors.Is(err, ErrUnavailable) {
		a.c.advance()
	}
	return resp, err
}

// PutResource creates a resource or replaces an existing one's definition.
// It returns the resource as stored, with the server's defaults filled in,
// and whether it did not exist before.
func (a *AdminClient) PutResource(ctx context.Context, r Resource) (Resource, bool, error) {
	msg, err := resourceToProto(r)
	if err != nil {
		return Resource{}, false, err
	}
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.PutResourceResponse, error) {
		return a.rpc.PutResource(ctx, &pb.PutResourceRequest{Resource: msg})
	})
	if err != nil {
		return Resource{}, false, err
	}
	return resourceFromProto(resp.GetResource()), resp.GetCreated(), nil
}

// GetResource returns one resource as stored, or ErrNotFound.
func (a *AdminClient) GetResource(ctx context.Context, name string) (Resource, error) {
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.GetResourceResponse, error) {
		return a.rpc.GetResource(ctx, &pb.GetResourceRequest{Name: name})
	})
	if err != nil {
		return Resource{}, err
	}
	return resourceFromProto(resp.GetResource()), nil
}

// ListResources returns every resource of the namespace, ordered by name.
func (a *AdminClient) ListResources(ctx context.Context) ([]Resource, error) {
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.ListResourcesResponse, error) {
		return a.rpc.ListResources(ctx, &pb.ListResourcesRequest{})
	})
	if err != nil {
		return nil, err
	}
	out := make([]Resource, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		out = append(out, resourceFromProto(r))
	}
	return out, nil
}

// DeleteResource deletes a resource: its waiting acquires fail with
// ErrNotFound and its leases end.
func (a *AdminClient) DeleteResource(ctx context.Context, name string) error {
	_, err := call(ctx, a, func(ctx context.Context) (*pb.DeleteResourceResponse, error) {
		return a.rpc.DeleteResource(ctx, &pb.DeleteResourceRequest{Name: name})
	})
	return err
}

// ResourceStats returns a resource's live state and counters.
func (a *AdminClient) ResourceStats(ctx context.Context, name string) (ResourceStats, error) {
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.GetResourceStatsResponse, error) {
		return a.rpc.GetResourceStats(ctx, &pb.GetResourceStatsRequest{Name: name})
	})
	if err != nil {
		return ResourceStats{}, err
	}
	s := resp.GetStats()
	out := ResourceStats{
		Name:           s.GetName(),
		LeasesInFlight: int(s.GetLeasesInFlight()),
		Grants:         s.GetGrants(),
		Rejections:     s.GetRejections(),
		Timeouts:       s.GetTimeouts(),
		Cancellations:  s.GetCancellations(),
		Expirations:    s.GetExpirations(),
		WaitP50:        s.GetWaitP50().AsDuration(),
		WaitP90:        s.GetWaitP90().AsDuration(),
		WaitP99:        s.GetWaitP99().AsDuration(),
		WaitMax:        s.GetWaitMax().AsDuration(),
		Throttles:      s.GetThrottles(),
	}
	if s.GetPausedUntil() != nil {
		out.PausedUntil = s.GetPausedUntil().AsTime()
	}
	for _, l := range s.GetLanes() {
		out.Lanes = append(out.Lanes, LaneStats{Name: l.GetName(), Weight: int(l.GetWeight()), QueueDepth: int(l.GetQueueDepth()), Grants: l.GetGrants(), LoadGranted: l.GetLoadGranted()})
	}
	for _, l := range s.GetLimits() {
		out.Limits = append(out.Limits, LimitStats{Limit: limitFromProto(l.GetLimit()), Available: l.GetAvailable(), Utilisation: l.GetUtilisation(), UsedLastPeriod: l.GetUsedLastPeriod(), LearnedAmount: l.LearnedAmount})
	}
	return out, nil
}

// CreateKey makes an API key. It returns the key itself, "rq_<id>_<secret>",
// shown only here (send it with WithAPIKey), and its description.
func (a *AdminClient) CreateKey(ctx context.Context, spec KeySpec) (key string, info APIKey, err error) {
	role, ok := roles[spec.Role]
	if !ok {
		return "", APIKey{}, newError(codes.InvalidArgument, fmt.Sprintf("role: must be %q, %q or %q, got %q", RoleWorker, RoleAdmin, RoleRoot, spec.Role))
	}
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.CreateApiKeyResponse, error) {
		return a.rpc.CreateApiKey(ctx, &pb.CreateApiKeyRequest{Namespace: spec.Namespace, Role: role, Description: spec.Description})
	})
	if err != nil {
		return "", APIKey{}, err
	}
	return resp.GetKey(), apiKeyFromProto(resp.GetApiKey()), nil
}

// ListKeys returns keys without their secrets, ordered by namespace and id:
// those of namespace, or, when it is "", every key the caller may see.
func (a *AdminClient) ListKeys(ctx context.Context, namespace string) ([]APIKey, error) {
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.ListApiKeysResponse, error) {
		return a.rpc.ListApiKeys(ctx, &pb.ListApiKeysRequest{Namespace: namespace})
	})
	if err != nil {
		return nil, err
	}
	out := make([]APIKey, 0, len(resp.GetApiKeys()))
	for _, k := range resp.GetApiKeys() {
		out = append(out, apiKeyFromProto(k))
	}
	return out, nil
}

// RevokeKey revokes a key by its id; it stops working at once.
func (a *AdminClient) RevokeKey(ctx context.Context, id string) error {
	_, err := call(ctx, a, func(ctx context.Context) (*pb.RevokeApiKeyResponse, error) {
		return a.rpc.RevokeApiKey(ctx, &pb.RevokeApiKeyRequest{Id: id})
	})
	return err
}

// invalidField is the error of a field the client cannot encode, in the
// server's "field: rule" form.
func invalidField(field, rule string, args ...any) error {
	return newError(codes.InvalidArgument, field+": "+fmt.Sprintf(rule, args...))
}

// uint32Field checks that n fits its message field; the server checks the
// range.
func uint32Field(field string, n int) (uint32, error) {
	if n < 0 || uint64(n) > math.MaxUint32 {
		return 0, invalidField(field, "must be an integer of at least 0, got %d", n)
	}
	return uint32(n), nil
}

func resourceToProto(r Resource) (*pb.Resource, error) {
	msg := &pb.Resource{Name: r.Name, DefaultLane: r.DefaultLane}
	for i, l := range r.Limits {
		dim, ok := dimensions[l.Dimension]
		if !ok {
			return nil, invalidField(fmt.Sprintf("resource.limits[%d].dimension", i), "must be %q or %q, got %q", DimensionRequests, DimensionLoad, l.Dimension)
		}
		msg.Limits = append(msg.Limits, &pb.Limit{Dimension: dim, Amount: l.Amount, Period: durationpb.New(l.Period), Burst: l.Burst, Unit: l.Unit})
	}
	var err error
	if msg.Concurrency, err = uint32Field("resource.concurrency", r.Concurrency); err != nil {
		return nil, err
	}
	for i, lane := range r.Lanes {
		weight, err := uint32Field(fmt.Sprintf("resource.lanes[%d].weight", i), lane.Weight)
		if err != nil {
			return nil, err
		}
		msg.Lanes = append(msg.Lanes, &pb.Lane{Name: lane.Name, Weight: weight})
	}
	if r.LeaseTTL != 0 {
		msg.LeaseTtl = durationpb.New(r.LeaseTTL)
	}
	if msg.MaxQueue, err = uint32Field("resource.max_queue", r.MaxQueue); err != nil {
		return nil, err
	}
	if r.Cooldown != 0 {
		msg.Cooldown = durationpb.New(r.Cooldown)
	}
	msg.LearnLimits = r.LearnLimits
	return msg, nil
}

func limitFromProto(l *pb.Limit) Limit {
	dim := DimensionRequests
	if l.GetDimension() == pb.Dimension_DIMENSION_LOAD {
		dim = DimensionLoad
	}
	return Limit{Dimension: dim, Amount: l.GetAmount(), Period: l.GetPeriod().AsDuration(), Burst: l.GetBurst(), Unit: l.GetUnit()}
}

func resourceFromProto(m *pb.Resource) Resource {
	r := Resource{
		Name:        m.GetName(),
		Concurrency: int(m.GetConcurrency()),
		DefaultLane: m.GetDefaultLane(),
		LeaseTTL:    m.GetLeaseTtl().AsDuration(),
		MaxQueue:    int(m.GetMaxQueue()),
		Cooldown:    m.GetCooldown().AsDuration(),
		LearnLimits: m.LearnLimits,
	}
	for _, l := range m.GetLimits() {
		r.Limits = append(r.Limits, limitFromProto(l))
	}
	for _, l := range m.GetLanes() {
		r.Lanes = append(r.Lanes, LaneWeight{Name: l.GetName(), Weight: int(l.GetWeight())})
	}
	return r
}

func apiKeyFromProto(k *pb.ApiKey) APIKey {
	var role Role
	for name, value := range roles {
		if value == k.GetRole() {
			role = name
		}
	}
	return APIKey{ID: k.GetId(), Namespace: k.GetNamespace(), Role: role, Description: k.GetDescription(), CreateTime: k.GetCreateTime().AsTime()}
}
