package ratequeue_test

// The AdminClient against real servers: resources in the config file's
// shape in and out (the server's defaults filled in, so Get then Put stores
// the same resource), statistics and keys as Go values, the environment's
// defaults, moving on past a dead address, and input refused with ErrInvalid
// naming the field.

import (
	"context"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
)

// newAdmin returns an admin client of addr (the shared server when empty),
// closed when the test ends.
func newAdmin(t *testing.T, addr string, opts ...ratequeue.Option) *ratequeue.AdminClient {
	t.Helper()
	if addr == "" {
		addr = srv.Addr
	}
	a, err := ratequeue.NewAdminClient(addr, opts...)
	if err != nil {
		t.Fatalf("NewAdminClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func adminCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sameResource(t *testing.T, got, want ratequeue.Resource) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resource\n got %+v\nwant %+v", got, want)
	}
}

func TestAdminPutReturnsTheResourceAsStored(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	definition := ratequeue.Resource{
		Name: "admin-openai-gpt4",
		Limits: []ratequeue.Limit{
			{Dimension: ratequeue.DimensionRequests, Amount: 500, Period: time.Minute, Burst: 20},
			{Dimension: ratequeue.DimensionLoad, Amount: 30000, Period: time.Minute, Unit: "input_tokens"},
		},
		Concurrency: 8,
		Lanes:       []ratequeue.LaneWeight{{Name: "user-facing", Weight: 3}, {Name: "batch", Weight: 1}},
		DefaultLane: "batch",
		LeaseTTL:    90 * time.Second,
		MaxQueue:    100,
		Cooldown:    2 * time.Second,
		LearnLimits: new(false),
	}
	stored := definition
	stored.Limits = slices.Clone(definition.Limits)
	stored.Limits[1].Burst = 30000 // filled in
	got, created, err := a.PutResource(ctx, definition)
	if err != nil || !created {
		t.Fatalf("PutResource = %v, %v; want created", created, err)
	}
	sameResource(t, got, stored)
	if got, err = a.GetResource(ctx, definition.Name); err != nil {
		t.Fatal(err)
	}
	sameResource(t, got, stored)
	if _, created, err = a.PutResource(ctx, definition); err != nil || created {
		t.Fatalf("PutResource again = %v, %v; want not created", created, err)
	}
}

func TestAdminDefaultsAreFilledInAndGetThenPutRoundTrips(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	if _, _, err := a.PutResource(ctx, ratequeue.Resource{Name: "admin-bare"}); err != nil {
		t.Fatal(err)
	}
	got, err := a.GetResource(ctx, "admin-bare")
	if err != nil {
		t.Fatal(err)
	}
	sameResource(t, got, ratequeue.Resource{
		Name: "admin-bare", Lanes: []ratequeue.LaneWeight{{Name: "default", Weight: 1}}, DefaultLane: "default",
		LeaseTTL: 30 * time.Second, MaxQueue: 10000, Cooldown: time.Second, LearnLimits: new(true),
	})
	again, created, err := a.PutResource(ctx, got)
	if err != nil || created {
		t.Fatalf("PutResource(GetResource()) = %v, %v; want not created", created, err)
	}
	sameResource(t, again, got)
}

func TestAdminListResourcesOrderedByName(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	for _, r := range []ratequeue.Resource{
		{Name: "admin-list-b", Concurrency: 2},
		{Name: "admin-list-a", Limits: []ratequeue.Limit{{Dimension: ratequeue.DimensionLoad, Amount: 10, Period: time.Second}}},
	} {
		if _, _, err := a.PutResource(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	all, err := a.ListResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed []ratequeue.Resource
	for _, r := range all {
		if strings.HasPrefix(r.Name, "admin-list-") {
			listed = append(listed, r)
		}
	}
	if len(listed) != 2 || listed[0].Name != "admin-list-a" || listed[1].Name != "admin-list-b" {
		t.Fatalf("listed %+v, want admin-list-a then admin-list-b", listed)
	}
	for _, r := range listed {
		got, err := a.GetResource(ctx, r.Name)
		if err != nil {
			t.Fatal(err)
		}
		sameResource(t, r, got)
	}
	if want := []ratequeue.Limit{{Dimension: ratequeue.DimensionLoad, Amount: 10, Period: time.Second, Burst: 10}}; !reflect.DeepEqual(listed[0].Limits, want) {
		t.Fatalf("limits %+v, want %+v", listed[0].Limits, want)
	}
}

func TestAdminResourceStats(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	day := 24 * time.Hour
	_, _, err := a.PutResource(ctx, ratequeue.Resource{
		Name:   "admin-measured",
		Limits: []ratequeue.Limit{{Dimension: ratequeue.DimensionLoad, Amount: 100, Period: day}},
		Lanes:  []ratequeue.LaneWeight{{Name: "fast", Weight: 2}, {Name: "slow", Weight: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, "")
	lease := acquire(t, c, "admin-measured", ratequeue.Load(40), ratequeue.Lane("slow"))
	s, err := a.ResourceStats(ctx, "admin-measured")
	if err != nil {
		t.Fatal(err)
	}
	wantLanes := []ratequeue.LaneStats{{Name: "fast", Weight: 2}, {Name: "slow", Weight: 1, Grants: 1, LoadGranted: 40}}
	if s.Name != "admin-measured" || s.LeasesInFlight != 1 || !reflect.DeepEqual(s.Lanes, wantLanes) {
		t.Fatalf("stats %+v, want 1 lease and lanes %+v", s, wantLanes)
	}
	if s.Grants != 1 || s.Rejections != 0 || s.Timeouts != 0 || s.Cancellations != 0 || s.Expirations != 0 {
		t.Fatalf("counters %+v, want one grant and nothing else", s)
	}
	if len(s.Limits) != 1 {
		t.Fatalf("limit stats %+v, want one", s.Limits)
	}
	l := s.Limits[0]
	if want := (ratequeue.Limit{Dimension: ratequeue.DimensionLoad, Amount: 100, Period: day, Burst: 100}); l.Limit != want {
		t.Fatalf("limit %+v, want %+v", l.Limit, want)
	}
	if math.Abs(l.Available-60) > 0.5 || math.Abs(l.Utilisation-0.4) > 0.005 || l.UsedLastPeriod != 40 {
		t.Fatalf("available %v, utilisation %v, used over the period %v; want about 60, 0.4 and 40", l.Available, l.Utilisation, l.UsedLastPeriod)
	}
	for _, w := range []time.Duration{s.WaitP50, s.WaitP90, s.WaitP99, s.WaitMax} {
		if w < 0 || w > s.WaitMax {
			t.Fatalf("waits %v %v %v %v: negative or above the longest", s.WaitP50, s.WaitP90, s.WaitP99, s.WaitMax)
		}
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err = a.ResourceStats(ctx, "admin-measured"); err != nil || s.LeasesInFlight != 0 {
		t.Fatalf("after release: %+v, %v; want no lease", s, err)
	}
}

func TestAdminDeleteResource(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	if _, _, err := a.PutResource(ctx, ratequeue.Resource{Name: "admin-doomed", Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteResource(ctx, "admin-doomed"); err != nil {
		t.Fatal(err)
	}
	_, err := a.GetResource(ctx, "admin-doomed")
	isCode(t, err, ratequeue.ErrNotFound, codes.NotFound)
	_, err = dial(t, "").Acquire(ctx, "admin-doomed")
	isCode(t, err, ratequeue.ErrNotFound, codes.NotFound)
	isCode(t, a.DeleteResource(ctx, "admin-doomed"), ratequeue.ErrNotFound, codes.NotFound)
}

func TestAdminBadInputIsErrInvalidNamingTheField(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	requests := func(amount float64, period time.Duration) []ratequeue.Limit {
		return []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: amount, Period: period}}
	}
	for _, tc := range []struct {
		what    string
		r       ratequeue.Resource
		message string
	}{
		// Refused by the client: it cannot encode these.
		{"an unknown dimension", ratequeue.Resource{Limits: []ratequeue.Limit{{Dimension: "rps", Amount: 1, Period: time.Second}}}, `resource.limits[0].dimension: must be "requests" or "load"`},
		{"a negative concurrency", ratequeue.Resource{Concurrency: -1}, "resource.concurrency: must be an integer of at least 0"},
		{"a negative lane weight", ratequeue.Resource{Lanes: []ratequeue.LaneWeight{{Name: "a", Weight: -1}}}, "resource.lanes[0].weight: must be an integer of at least 0"},
		{"a negative share", ratequeue.Resource{Share: -1}, "resource.share: must be an integer of at least 0"},
		{"an unknown per_key dimension", ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{Limits: []ratequeue.Limit{{Dimension: "rps", Amount: 1, Period: time.Second}}}}, `resource.per_key.limits[0].dimension: must be "requests" or "load"`},
		{"a negative per_key concurrency", ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{Concurrency: -1}}, "resource.per_key.concurrency: must be an integer of at least 0"},
		// Refused by the server's validation.
		{"a zero amount", ratequeue.Resource{Limits: requests(0, time.Second)}, "resource.limits[0].amount: must be greater than 0"},
		{"a zero period", ratequeue.Resource{Limits: requests(1, 0)}, "resource.limits[0].period:"},
		{"a lane weight over 1000", ratequeue.Resource{Lanes: []ratequeue.LaneWeight{{Name: "a", Weight: 5000}}}, "resource.lanes[0].weight:"},
		{"a default lane that is not a lane", ratequeue.Resource{Lanes: []ratequeue.LaneWeight{{Name: "a", Weight: 1}}, DefaultLane: "b"}, "resource.default_lane: 'b' is not one of the lanes"},
		{"a lease TTL under 100 ms", ratequeue.Resource{LeaseTTL: 10 * time.Millisecond}, "resource.lease_ttl:"},
		{"a unit on a requests limit", ratequeue.Resource{Limits: []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: 1, Period: time.Second, Unit: "tokens"}}}, "resource.limits[0].unit:"},
		{"a cooldown over 60 s", ratequeue.Resource{Cooldown: 2 * time.Minute}, "resource.cooldown:"},
		{"a share over 1000", ratequeue.Resource{Share: 1001}, "resource.share:"},
		{"a per_key share over 1000", ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{Share: 1001}}, "resource.per_key.share:"},
		{"a per_key limit with a zero amount", ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{Limits: requests(0, time.Second)}}, "resource.per_key.limits[0].amount: must be greater than 0"},
		{"a per_key_idle under 100 ms", ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{}, PerKeyIdle: time.Millisecond}, "resource.per_key_idle:"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			tc.r.Name = "admin-refused"
			_, _, err := a.PutResource(ctx, tc.r)
			isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tc.message) {
				t.Fatalf("message %q, want it to start with %q", msg, tc.message)
			}
			_, err = a.GetResource(ctx, "admin-refused")
			isCode(t, err, ratequeue.ErrNotFound, codes.NotFound)
		})
	}
}

func TestAdminMovesOnPastAnAddressThatDoesNotAnswer(t *testing.T) {
	a, ctx := newAdmin(t, freeAddr(t)+","+srv.Addr), adminCtx(t)
	_, err := a.ListResources(ctx)
	isCode(t, err, ratequeue.ErrUnavailable, codes.Unavailable)
	if _, err := a.ListResources(ctx); err != nil {
		t.Fatalf("the second call, to the second address: %v", err)
	}
}

func TestAdminKeysAndNamespaces(t *testing.T) {
	// Not parallel: it sets environment variables.
	own := startAuthServer(t)
	root := newAdmin(t, own.Addr, ratequeue.WithAPIKey(rootKey))
	ctx := adminCtx(t)

	t.Run("a root key creates, lists and revokes keys", func(t *testing.T) {
		before := time.Now()
		key, info, err := root.CreateKey(ctx, ratequeue.KeySpec{Namespace: "team-k", Role: ratequeue.RoleAdmin, Description: "go admin test"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, "rq_"+info.ID+"_") {
			t.Fatalf("key %q does not carry its id %q", key, info.ID)
		}
		if info.Namespace != "team-k" || info.Role != ratequeue.RoleAdmin || info.Description != "go admin test" {
			t.Fatalf("key %+v, want an admin key of team-k", info)
		}
		if info.CreateTime.Before(before.Add(-time.Second)) || info.CreateTime.After(time.Now().Add(time.Second)) {
			t.Fatalf("created at %v, want about now (%v)", info.CreateTime, before)
		}
		listed, err := root.ListKeys(ctx, "team-k")
		if err != nil || !reflect.DeepEqual(listed, []ratequeue.APIKey{info}) {
			t.Fatalf("ListKeys(team-k) = %+v, %v; want [%+v]", listed, err, info)
		}
		all, err := root.ListKeys(ctx, "")
		if err != nil || !slices.Contains(all, info) {
			t.Fatalf("ListKeys() = %+v, %v; want it to hold %+v", all, err, info)
		}

		// The new key acts in its own namespace, until it is revoked.
		team := newAdmin(t, own.Addr, ratequeue.WithAPIKey(key))
		if _, _, err := team.PutResource(ctx, ratequeue.Resource{Name: "team-only"}); err != nil {
			t.Fatal(err)
		}
		if rs, err := team.ListResources(ctx); err != nil || len(rs) != 1 || rs[0].Name != "team-only" {
			t.Fatalf("the team's resources %+v, %v; want team-only", rs, err)
		}
		if err := root.RevokeKey(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		if listed, err := root.ListKeys(ctx, "team-k"); err != nil || len(listed) != 0 {
			t.Fatalf("ListKeys after revoke = %+v, %v; want none", listed, err)
		}
		_, err = team.ListResources(ctx)
		isCode(t, err, ratequeue.ErrUnauthenticated, codes.Unauthenticated)

		_, _, err = root.CreateKey(ctx, ratequeue.KeySpec{Role: "boss"})
		isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)
		if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "role: ") {
			t.Fatalf("message %q, want it to name the role", msg)
		}
	})

	t.Run("WithNamespace picks a root key's namespace", func(t *testing.T) {
		inB := newAdmin(t, own.Addr, ratequeue.WithAPIKey(rootKey), ratequeue.WithNamespace("team-b"))
		rs, err := inB.ListResources(ctx)
		if err != nil || len(rs) != 1 || rs[0].Name != "secret-b" {
			t.Fatalf("team-b's resources %+v, %v; want secret-b", rs, err)
		}
		_, err = root.GetResource(ctx, "secret-b")
		isCode(t, err, ratequeue.ErrNotFound, codes.NotFound)
	})

	t.Run("the address and the key default to the environment", func(t *testing.T) {
		t.Setenv("RATEQUEUE_URL", "http://"+own.Addr)
		fromEnv := func() *ratequeue.AdminClient {
			a, err := ratequeue.NewAdminClient("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			return a
		}
		t.Setenv("RATEQUEUE_API_KEY", "")
		_, err := fromEnv().ListResources(ctx)
		isCode(t, err, ratequeue.ErrUnauthenticated, codes.Unauthenticated)
		t.Setenv("RATEQUEUE_API_KEY", rootKey)
		if _, err := fromEnv().GetResource(ctx, "shared"); err != nil {
			t.Fatalf("with RATEQUEUE_API_KEY: %v", err)
		}
	})
}
