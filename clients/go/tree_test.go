package ratequeue_test

// Resource trees against a real server: acquires with a key charged to
// their keyed child (Acquire, Do and Transport), keys the server refuses,
// the admin client's parent, share and per_key fields in and out, children
// listed a page at a time, and children and parent in the statistics.

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
)

// putAs creates or replaces r as named, failing the test on an error.
func putAs(t *testing.T, a *ratequeue.AdminClient, r ratequeue.Resource) ratequeue.Resource {
	t.Helper()
	stored, _, err := a.PutResource(adminCtx(t), r)
	if err != nil {
		t.Fatalf("PutResource(%s): %v", r.Name, err)
	}
	return stored
}

// childStats returns the stats of parent's child named name, if listed.
func childStats(s ratequeue.ResourceStats, name string) (ratequeue.ChildStats, bool) {
	for _, c := range s.Children {
		if c.Name == name {
			return c, true
		}
	}
	return ratequeue.ChildStats{}, false
}

func requestsPerMinute(n float64) []ratequeue.Limit {
	return []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: n, Period: time.Minute}}
}

// A key's acquire is granted on the keyed child "RESOURCE/KEY": with the
// template's concurrency of 1, a second acquire of the same key waits (and
// times out) while another key is granted, and gets the slot when the first
// lease is released.
func TestKeyAcquireIsChargedToTheKeyedChild(t *testing.T) {
	t.Parallel()
	name := putResource(t, ratequeue.Resource{Limits: requestsPerMinute(6000), PerKey: &ratequeue.KeyedChildTemplate{Concurrency: 1}})
	c := dial(t, "")
	first := acquire(t, c, name, ratequeue.Key("cust-a"))
	if first.Resource() != name+"/cust-a" {
		t.Fatalf("lease on %q, want %q", first.Resource(), name+"/cust-a")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(ctx, name, ratequeue.Key("cust-a"))
	isErr(t, err, ratequeue.ErrTimeout)

	other := acquire(t, c, name, ratequeue.Key("cust-b"))
	if other.Resource() != name+"/cust-b" {
		t.Fatalf("lease on %q, want %q", other.Resource(), name+"/cust-b")
	}

	wait, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWait()
	ch := waitAcquire(wait, c, name, ratequeue.Key("cust-a"))
	eventually(t, 5*time.Second, "cust-a's acquire waiting", func() bool {
		ch, ok := childStats(resourceStats(t, name), name+"/cust-a")
		return ok && ch.QueueDepth == 1
	})
	select {
	case a := <-ch:
		t.Fatalf("cust-a's second acquire returned (%v, %v) while its first lease is held", a.lease, a.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := first.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := recv(t, ch, 5*time.Second)
	if got.err != nil || got.lease.Resource() != name+"/cust-a" {
		t.Fatalf("after the release: %v, %v; want a lease on %s/cust-a", got.lease, got.err, name)
	}

	// Do takes the key too.
	var ran bool
	err = c.Do(wait, name, func(context.Context) error {
		ran = true
		return nil
	}, ratequeue.Key("cust-c"))
	if err != nil || !ran {
		t.Fatalf("Do with a key: ran %v, %v", ran, err)
	}
	for _, l := range []*ratequeue.Lease{got.lease, other} {
		if err := l.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s := resourceStats(t, name)
	if s.Grants != 4 || s.LeasesInFlight != 0 {
		t.Fatalf("the resource counted %d grants, %d in flight; want every key's 4 grants and none in flight", s.Grants, s.LeasesInFlight)
	}
}

// A key the server refuses, or a key on a resource without a per_key
// template, fails with ErrInvalid (INVALID_ARGUMENT).
func TestKeyRefused(t *testing.T) {
	t.Parallel()
	keyed := putResource(t, ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{}})
	c := dial(t, "")
	// An empty key is refused before it is sent: a missing customer id must not skip its quota.
	for _, key := range []string{"", "two words", "team@acme", strings.Repeat("k", 129), "tab\there"} {
		_, err := c.Acquire(adminCtx(t), keyed, ratequeue.Key(key))
		isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)
		if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "key:") {
			t.Errorf("key %q: message %q, want it to name the key", key, msg)
		}
	}
	plain := put(t, c, resource(t, 10*time.Second, 0))
	_, err := c.Acquire(adminCtx(t), plain, ratequeue.Key("cust-a"))
	isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)
}

// Transport.Key picks each request's key: every customer's requests are
// granted on its own keyed child.
func TestTransportKey(t *testing.T) {
	t.Parallel()
	p := startProvider(t, "--rpm", "6000")
	r := loadResource()
	r.PerKey = &ratequeue.KeyedChildTemplate{Concurrency: 1}
	name := putResource(t, r)
	hc := &http.Client{Transport: &ratequeue.Transport{
		Client:   dial(t, ""),
		Resource: name,
		Key:      func(req *http.Request) string { return req.Header.Get("X-Customer") },
	}}
	for _, customer := range []string{"cust-a", "cust-b", "cust-a", ""} {
		req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/chat/completions", strings.NewReader(chat("hi", "")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Customer", customer)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	eventually(t, 5*time.Second, "the leases released", func() bool { return resourceStats(t, name).LeasesInFlight == 0 })
	s := resourceStats(t, name)
	a, okA := childStats(s, name+"/cust-a")
	b, okB := childStats(s, name+"/cust-b")
	if !okA || !okB || a.Grants != 2 || b.Grants != 1 || !a.Keyed || s.ChildrenCount != 2 || s.Grants != 4 {
		t.Fatalf("stats %+v: want cust-a's 2 grants and cust-b's 1 on keyed children, and 4 on the resource", s)
	}
}

// A tree in the config file's shape: what is put comes back with the
// defaults filled in, and putting it again stores the same. A parent must
// exist before its child, and cannot be deleted while it has one.
func TestAdminResourceTreeRoundTrip(t *testing.T) {
	a, ctx := newAdmin(t, ""), adminCtx(t)
	root := ratequeue.Resource{
		Name: "tree-openai-gpt4",
		Limits: []ratequeue.Limit{
			{Dimension: ratequeue.DimensionRequests, Amount: 500, Period: time.Minute, Burst: 20},
			{Dimension: ratequeue.DimensionLoad, Amount: 30000, Period: time.Minute},
		},
		Concurrency: 16,
		PerKey: &ratequeue.KeyedChildTemplate{
			Limits:      []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: 60, Period: time.Minute, Burst: 5}},
			Concurrency: 4,
			Share:       1,
		},
		PerKeyIdle:   5 * time.Minute,
		ChildrenFrom: []string{"team-a"},
	}
	defaults := func(r ratequeue.Resource) ratequeue.Resource {
		r.Lanes = []ratequeue.LaneWeight{{Name: "default", Weight: 1}}
		r.DefaultLane = "default"
		r.LeaseTTL = 30 * time.Second
		r.MaxQueue = 10000
		r.Cooldown = time.Second
		r.LearnLimits = new(true)
		return r
	}
	wantRoot := defaults(root)
	wantRoot.Limits = []ratequeue.Limit{root.Limits[0], {Dimension: ratequeue.DimensionLoad, Amount: 30000, Period: time.Minute, Burst: 30000}}
	child := ratequeue.Resource{Name: "tree-openai-gpt4/enterprise-42", Parent: root.Name, Share: 4, Limits: requestsPerMinute(200)}
	wantChild := defaults(child)
	wantChild.Limits = []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: 200, Period: time.Minute, Burst: 200}}
	// Zero share, per_key share and per_key_idle take their defaults.
	bareRoot := ratequeue.Resource{Name: "tree-bare", PerKey: &ratequeue.KeyedChildTemplate{}}
	wantBareRoot := defaults(bareRoot)
	wantBareRoot.PerKey = &ratequeue.KeyedChildTemplate{Share: 1}
	wantBareRoot.PerKeyIdle = 10 * time.Minute
	bareChild := ratequeue.Resource{Name: "tree-bare-child", Parent: bareRoot.Name}
	wantBareChild := defaults(bareChild)
	wantBareChild.Share = 1

	for _, tc := range []struct{ put, want ratequeue.Resource }{{root, wantRoot}, {child, wantChild}, {bareRoot, wantBareRoot}, {bareChild, wantBareChild}} {
		sameResource(t, putAs(t, a, tc.put), tc.want)
		got, err := a.GetResource(ctx, tc.put.Name)
		if err != nil {
			t.Fatal(err)
		}
		sameResource(t, got, tc.want)
		again, created, err := a.PutResource(ctx, got)
		if err != nil || created {
			t.Fatalf("PutResource(GetResource(%s)) = %v, %v; want not created", tc.put.Name, created, err)
		}
		sameResource(t, again, tc.want)
	}

	_, _, err := a.PutResource(ctx, ratequeue.Resource{Name: "tree-orphan", Parent: "tree-nowhere"})
	isCode(t, err, ratequeue.ErrNotFound, codes.NotFound)
	isCode(t, a.DeleteResource(ctx, root.Name), ratequeue.ErrInvalid, codes.FailedPrecondition)
	for _, name := range []string{child.Name, root.Name, bareChild.Name, bareRoot.Name} {
		if err := a.DeleteResource(ctx, name); err != nil {
			t.Fatalf("DeleteResource(%s): %v", name, err)
		}
	}
}

// ListResourcesPage lists a parent's children, declared and keyed, a page
// at a time; ListResources lists the declared resources only.
func TestAdminListResourcesPage(t *testing.T) {
	t.Parallel()
	a, ctx := newAdmin(t, ""), adminCtx(t)
	parent := putResource(t, ratequeue.Resource{PerKey: &ratequeue.KeyedChildTemplate{}})
	for _, n := range []string{"c1", "c2", "c3"} {
		putAs(t, a, ratequeue.Resource{Name: parent + "/" + n, Parent: parent})
	}
	c := dial(t, "")
	for _, key := range []string{"k2", "k1"} {
		if err := acquire(t, c, parent, ratequeue.Key(key)).Release(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var names []string
	pages := 0
	opts := ratequeue.ListOptions{Parent: parent, PageSize: 2}
	for {
		page, next, err := a.ListResourcesPage(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page) > 2 {
			t.Fatalf("page %d holds %d resources, want at most 2", pages, len(page))
		}
		for _, r := range page {
			names = append(names, strings.TrimPrefix(r.Name, parent+"/"))
			if r.Parent != parent || r.Keyed != strings.HasPrefix(r.Name, parent+"/k") {
				t.Errorf("child %+v: want parent %s, keyed for k1 and k2 only", r, parent)
			}
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatalf("still a next page after %d pages", pages)
		}
		opts.PageToken = next
	}
	if want := []string{"c1", "c2", "c3", "k1", "k2"}; !reflect.DeepEqual(names, want) || pages != 3 {
		t.Fatalf("listed %v in %d pages, want %v in 3", names, pages, want)
	}

	all, err := a.ListResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, r := range all {
		if strings.HasPrefix(r.Name, parent) {
			declared = append(declared, r.Name)
		}
	}
	if want := []string{parent, parent + "/c1", parent + "/c2", parent + "/c3"}; !reflect.DeepEqual(declared, want) {
		t.Fatalf("ListResources listed %v, want the declared %v", declared, want)
	}

	_, _, err = a.ListResourcesPage(ctx, ratequeue.ListOptions{PageSize: -1})
	isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)
}

// A parent's statistics describe its busiest children; a child's describe
// its parent.
func TestAdminStatsChildrenAndParent(t *testing.T) {
	t.Parallel()
	a, ctx := newAdmin(t, ""), adminCtx(t)
	hourly := ratequeue.Limit{Dimension: ratequeue.DimensionRequests, Amount: 100, Period: time.Hour}
	parent := putResource(t, ratequeue.Resource{Limits: []ratequeue.Limit{hourly}, PerKey: &ratequeue.KeyedChildTemplate{Concurrency: 2}})
	gold := parent + "/gold"
	putAs(t, a, ratequeue.Resource{Name: gold, Parent: parent, Share: 3})
	c := dial(t, "")
	leases := []*ratequeue.Lease{
		acquire(t, c, gold),
		acquire(t, c, parent, ratequeue.Key("k1")),
		acquire(t, c, parent, ratequeue.Key("k1")),
		acquire(t, c, parent, ratequeue.Key("k2")),
	}
	wait, cancel := context.WithCancel(context.Background())
	waiting := waitAcquire(wait, c, parent, ratequeue.Key("k1"))
	eventually(t, 5*time.Second, "k1's third acquire waiting", func() bool {
		k1, ok := childStats(resourceStats(t, parent), parent+"/k1")
		return ok && k1.QueueDepth == 1
	})

	s := resourceStats(t, parent)
	want := map[string]ratequeue.ChildStats{
		parent + "/k1": {Name: parent + "/k1", Share: 1, Keyed: true, LeasesInFlight: 2, QueueDepth: 1, Grants: 2, LoadGranted: 2},
		parent + "/k2": {Name: parent + "/k2", Share: 1, Keyed: true, LeasesInFlight: 1, Grants: 1, LoadGranted: 1},
		gold:           {Name: gold, Share: 3, LeasesInFlight: 1, Grants: 1, LoadGranted: 1},
	}
	if s.ChildrenCount != 3 || len(s.Children) != 3 || s.Children[0].Name != parent+"/k1" || s.Parent != nil {
		t.Fatalf("parent's stats %+v: want 3 children, k1 (the one with a waiter) first, and no parent", s)
	}
	for _, ch := range s.Children {
		if ch != want[ch.Name] {
			t.Errorf("child %+v, want %+v", ch, want[ch.Name])
		}
	}
	if s.LeasesInFlight != 4 || s.Grants != 4 {
		t.Errorf("the parent counts %d leases and %d grants, want its children's 4 and 4", s.LeasesInFlight, s.Grants)
	}
	top, err := a.ResourceStatsWith(ctx, parent, ratequeue.StatsOptions{ChildrenLimit: 1})
	if err != nil || len(top.Children) != 1 || top.Children[0].Name != parent+"/k1" || top.ChildrenCount != 3 {
		t.Fatalf("with ChildrenLimit 1: %+v, %v; want k1 alone of 3 children", top, err)
	}
	_, err = a.ResourceStatsWith(ctx, parent, ratequeue.StatsOptions{ChildrenLimit: -1})
	isCode(t, err, ratequeue.ErrInvalid, codes.InvalidArgument)

	g := resourceStats(t, gold)
	p := g.Parent
	if p == nil || p.Name != parent || p.LeasesInFlight != 4 || p.QueueDepth != 1 || len(p.Limits) != 1 {
		t.Fatalf("gold's parent %+v: want %s with 4 leases, 1 waiting and its limit", p, parent)
	}
	if l := p.Limits[0]; l.Limit != (ratequeue.Limit{Dimension: ratequeue.DimensionRequests, Amount: 100, Period: time.Hour, Burst: 100}) || l.UsedLastPeriod != 4 {
		t.Errorf("the parent's limit %+v, want 4 of 100 used", l)
	}
	if g.ChildrenCount != 0 || len(g.Children) != 0 || g.LeasesInFlight != 1 {
		t.Errorf("gold's stats %+v, want one lease and no children", g)
	}

	cancel()
	isErr(t, recv(t, waiting, 5*time.Second).err, context.Canceled)
	for _, l := range leases {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A namespace that a parent's ChildrenFrom names declares children of it
// as "NAMESPACE@NAME"; their statistics describe that parent, and other
// namespaces may not.
func TestAdminChildInAnotherNamespace(t *testing.T) {
	own := startAuthServer(t)
	root, ctx := newAdmin(t, own.Addr, ratequeue.WithAPIKey(rootKey)), adminCtx(t)
	putAs(t, root, ratequeue.Resource{Name: "org-openai", Limits: requestsPerMinute(600), ChildrenFrom: []string{"team-a"}})
	teamKey, _, err := root.CreateKey(ctx, ratequeue.KeySpec{Namespace: "team-a", Role: ratequeue.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	team := newAdmin(t, own.Addr, ratequeue.WithAPIKey(teamKey))
	stored := putAs(t, team, ratequeue.Resource{Name: "team-a-share", Parent: "default@org-openai", Share: 2})
	if stored.Parent != "default@org-openai" || stored.Share != 2 {
		t.Fatalf("stored %+v, want parent default@org-openai with share 2", stored)
	}
	lease := acquire(t, dial(t, own.Addr, ratequeue.WithAPIKey(teamKey)), "team-a-share")
	defer lease.Release(context.Background())
	s, err := team.ResourceStats(ctx, "team-a-share")
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Parent; p == nil || p.Name != "default@org-openai" || p.LeasesInFlight != 1 {
		t.Fatalf("the child's parent %+v, want default@org-openai with its lease", p)
	}
	ps, err := root.ResourceStats(ctx, "org-openai")
	if err != nil {
		t.Fatal(err)
	}
	want := []ratequeue.ChildStats{{Name: "team-a@team-a-share", Share: 2, LeasesInFlight: 1, Grants: 1, LoadGranted: 1}}
	if !reflect.DeepEqual(ps.Children, want) || ps.ChildrenCount != 1 {
		t.Fatalf("the parent's children %+v (%d), want %+v", ps.Children, ps.ChildrenCount, want)
	}

	otherKey, _, err := root.CreateKey(ctx, ratequeue.KeySpec{Namespace: "team-c", Role: ratequeue.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = newAdmin(t, own.Addr, ratequeue.WithAPIKey(otherKey)).PutResource(ctx, ratequeue.Resource{Name: "team-c-share", Parent: "default@org-openai"})
	isCode(t, err, ratequeue.ErrPermissionDenied, codes.PermissionDenied)
}
