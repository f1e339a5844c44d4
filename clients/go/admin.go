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
	// Parent is the resource this one is a child of; "" means a root. A
	// grant here must fit this resource and every ancestor at the same
	// moment, and counts at every level. A parent in another namespace is
	// "NAMESPACE@NAME" and must list this namespace in ChildrenFrom. The
	// parent must exist first (else ErrNotFound); a tree is at most 4
	// levels deep. "NAME/KEY" with Parent NAME overrides NAME's PerKey
	// template for that key.
	Parent string
	// Share is this resource's share of its parent's grants while several
	// children wait, relative to its siblings, 1 to 1000; 0 means 1.
	Share int
	// PerKey is the template of the keyed children that acquires with Key
	// make on first use ("NAME/KEY", with this resource's lanes, lease TTL,
	// queue size and cooldown); nil means none, and such acquires fail with
	// ErrInvalid.
	PerKey *KeyedChildTemplate
	// PerKeyIdle is how long a keyed child back at full budget, with no
	// leases and no waiters, lives on before it is dropped; 0 means 10 min.
	PerKeyIdle time.Duration
	// ChildrenFrom are the namespaces whose admins may declare children of
	// this resource in their own namespace.
	ChildrenFrom []string
	// Keyed is output only: the server made this resource from its
	// parent's PerKey template. PutResource ignores it.
	Keyed bool
}

// KeyedChildTemplate is what each keyed child of a resource gets: its own
// quota inside the parent's limits.
type KeyedChildTemplate struct {
	// Limits are each keyed child's own rate limits; at most 16.
	Limits []Limit
	// Concurrency is the most leases each keyed child holds at once; 0
	// means no cap.
	Concurrency int
	// Share is each keyed child's share of the parent's grants, 1 to 1000;
	// 0 means 1.
	Share int
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
	// Children are the direct children with the most demand (waiting, then
	// in flight, then granted), at most StatsOptions.ChildrenLimit of them
	// (20 by default); ChildrenCount is how many direct children there are
	// now, keyed ones included. A tenant admin sees only its own
	// namespace's children.
	Children      []ChildStats
	ChildrenCount int
	// Parent is the parent's state; nil for a root.
	Parent *ParentStats
}

// ChildStats is one child's demand and grants, its descendants' included.
type ChildStats struct {
	Name  string
	Share int
	// Keyed is true for a child made from the parent's PerKey template.
	Keyed          bool
	LeasesInFlight int
	QueueDepth     int
	// Grants and LoadGranted count since the child was created.
	Grants      uint64
	LoadGranted float64
}

// ParentStats is the state of a resource's parent.
type ParentStats struct {
	// Name is the parent's name ("NAMESPACE@NAME" in another namespace).
	Name string
	// LeasesInFlight and QueueDepth count under the parent, every child's
	// included.
	LeasesInFlight int
	QueueDepth     int
	// Limits are the parent's, in its limit order.
	Limits []LimitStats
}

// ListOptions selects a page of ListResourcesPage.
type ListOptions struct {
	// PageSize is the most resources in the page, at most 1000; 0 means
	// all of them in one page.
	PageSize int
	// PageToken is the next token of the previous page; "" for the first.
	PageToken string
	// Parent lists the direct children of this resource, keyed children
	// included; "" lists the namespace's declared resources (keyed
	// children are listed only through their parent).
	Parent string
}

// StatsOptions tunes ResourceStatsWith.
type StatsOptions struct {
	// ChildrenLimit is the most children ResourceStats.Children describes,
	// at most 1000; 0 means 20.
	ChildrenLimit int
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

// ListResources returns every declared resource of the namespace, ordered
// by name (keyed children are listed by ListResourcesPage with their
// parent).
func (a *AdminClient) ListResources(ctx context.Context) ([]Resource, error) {
	out, _, err := a.ListResourcesPage(ctx, ListOptions{})
	return out, err
}

// ListResourcesPage returns a page of resources ordered by name, and the
// token of the next page, "" after the last one: pass it as the next
// call's ListOptions.PageToken, with the same PageSize and Parent.
//
//	opts := ratequeue.ListOptions{Parent: "openai-gpt4", PageSize: 100}
//	for {
//		page, next, err := admin.ListResourcesPage(ctx, opts)
//		if err != nil {
//			return err
//		}
//		use(page)
//		if next == "" {
//			break
//		}
//		opts.PageToken = next
//	}
func (a *AdminClient) ListResourcesPage(ctx context.Context, o ListOptions) (page []Resource, next string, err error) {
	size, err := uint32Field("page_size", o.PageSize)
	if err != nil {
		return nil, "", err
	}
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.ListResourcesResponse, error) {
		return a.rpc.ListResources(ctx, &pb.ListResourcesRequest{PageSize: size, PageToken: o.PageToken, Parent: o.Parent})
	})
	if err != nil {
		return nil, "", err
	}
	page = make([]Resource, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		page = append(page, resourceFromProto(r))
	}
	return page, resp.GetNextPageToken(), nil
}

// DeleteResource deletes a resource: its waiting acquires fail with
// ErrNotFound and its leases end.
func (a *AdminClient) DeleteResource(ctx context.Context, name string) error {
	_, err := call(ctx, a, func(ctx context.Context) (*pb.DeleteResourceResponse, error) {
		return a.rpc.DeleteResource(ctx, &pb.DeleteResourceRequest{Name: name})
	})
	return err
}

// ResourceStats returns a resource's live state and counters, with its 20
// busiest children.
func (a *AdminClient) ResourceStats(ctx context.Context, name string) (ResourceStats, error) {
	return a.ResourceStatsWith(ctx, name, StatsOptions{})
}

// ResourceStatsWith is ResourceStats as o says, for example with more
// children described.
func (a *AdminClient) ResourceStatsWith(ctx context.Context, name string, o StatsOptions) (ResourceStats, error) {
	childrenLimit, err := uint32Field("children_limit", o.ChildrenLimit)
	if err != nil {
		return ResourceStats{}, err
	}
	resp, err := call(ctx, a, func(ctx context.Context) (*pb.GetResourceStatsResponse, error) {
		return a.rpc.GetResourceStats(ctx, &pb.GetResourceStatsRequest{Name: name, ChildrenLimit: childrenLimit})
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
		ChildrenCount:  int(s.GetChildrenCount()),
	}
	if s.GetPausedUntil() != nil {
		out.PausedUntil = s.GetPausedUntil().AsTime()
	}
	for _, l := range s.GetLanes() {
		out.Lanes = append(out.Lanes, LaneStats{Name: l.GetName(), Weight: int(l.GetWeight()), QueueDepth: int(l.GetQueueDepth()), Grants: l.GetGrants(), LoadGranted: l.GetLoadGranted()})
	}
	out.Limits = limitStatsFromProto(s.GetLimits())
	for _, ch := range s.GetChildren() {
		out.Children = append(out.Children, ChildStats{
			Name: ch.GetName(), Share: int(ch.GetShare()), Keyed: ch.GetKeyed(), LeasesInFlight: int(ch.GetLeasesInFlight()),
			QueueDepth: int(ch.GetQueueDepth()), Grants: ch.GetGrants(), LoadGranted: ch.GetLoadGranted(),
		})
	}
	if p := s.GetParent(); p != nil {
		out.Parent = &ParentStats{Name: p.GetName(), LeasesInFlight: int(p.GetLeasesInFlight()), QueueDepth: int(p.GetQueueDepth()), Limits: limitStatsFromProto(p.GetLimits())}
	}
	return out, nil
}

func limitStatsFromProto(ls []*pb.LimitStats) []LimitStats {
	var out []LimitStats
	for _, l := range ls {
		out = append(out, LimitStats{Limit: limitFromProto(l.GetLimit()), Available: l.GetAvailable(), Utilisation: l.GetUtilisation(), UsedLastPeriod: l.GetUsedLastPeriod(), LearnedAmount: l.LearnedAmount})
	}
	return out
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

// limitsToProto encodes the limits of field (for example
// "resource.limits").
func limitsToProto(field string, ls []Limit) ([]*pb.Limit, error) {
	var out []*pb.Limit
	for i, l := range ls {
		dim, ok := dimensions[l.Dimension]
		if !ok {
			return nil, invalidField(fmt.Sprintf("%s[%d].dimension", field, i), "must be %q or %q, got %q", DimensionRequests, DimensionLoad, l.Dimension)
		}
		out = append(out, &pb.Limit{Dimension: dim, Amount: l.Amount, Period: durationpb.New(l.Period), Burst: l.Burst, Unit: l.Unit})
	}
	return out, nil
}

func resourceToProto(r Resource) (*pb.Resource, error) {
	msg := &pb.Resource{Name: r.Name, DefaultLane: r.DefaultLane, Parent: r.Parent, ChildrenFrom: r.ChildrenFrom}
	var err error
	if msg.Limits, err = limitsToProto("resource.limits", r.Limits); err != nil {
		return nil, err
	}
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
	if msg.Share, err = uint32Field("resource.share", r.Share); err != nil {
		return nil, err
	}
	if t := r.PerKey; t != nil {
		msg.PerKey = &pb.KeyedChildTemplate{}
		if msg.PerKey.Limits, err = limitsToProto("resource.per_key.limits", t.Limits); err != nil {
			return nil, err
		}
		if msg.PerKey.Concurrency, err = uint32Field("resource.per_key.concurrency", t.Concurrency); err != nil {
			return nil, err
		}
		if msg.PerKey.Share, err = uint32Field("resource.per_key.share", t.Share); err != nil {
			return nil, err
		}
	}
	if r.PerKeyIdle != 0 {
		msg.PerKeyIdle = durationpb.New(r.PerKeyIdle)
	}
	return msg, nil
}

func limitsFromProto(ls []*pb.Limit) []Limit {
	var out []Limit
	for _, l := range ls {
		out = append(out, limitFromProto(l))
	}
	return out
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
		Name:         m.GetName(),
		Concurrency:  int(m.GetConcurrency()),
		DefaultLane:  m.GetDefaultLane(),
		LeaseTTL:     m.GetLeaseTtl().AsDuration(),
		MaxQueue:     int(m.GetMaxQueue()),
		Cooldown:     m.GetCooldown().AsDuration(),
		LearnLimits:  m.LearnLimits,
		Parent:       m.GetParent(),
		Share:        int(m.GetShare()),
		PerKeyIdle:   m.GetPerKeyIdle().AsDuration(),
		Keyed:        m.GetKeyed(),
		Limits:       limitsFromProto(m.GetLimits()),
		ChildrenFrom: m.GetChildrenFrom(),
	}
	if t := m.GetPerKey(); t != nil {
		r.PerKey = &KeyedChildTemplate{Limits: limitsFromProto(t.GetLimits()), Concurrency: int(t.GetConcurrency()), Share: int(t.GetShare())}
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
