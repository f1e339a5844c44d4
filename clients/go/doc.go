// Package ratequeue is the Go client of ratequeue, a service that lets a
// fleet of workers share one rate budget for an upstream API.
//
// A worker dials the server once and acquires a lease before every call it
// makes upstream; the server grants leases so that the whole fleet stays
// within the resource's rate limits, concurrency cap and lane weights.
//
// Quickstart:
//
//	c, err := ratequeue.Dial(ctx, "localhost:7070", ratequeue.WithAPIKey(os.Getenv("RATEQUEUE_API_KEY")))
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//
//	lease, err := c.Acquire(ctx, "openai-gpt4", ratequeue.Load(2000), ratequeue.Priority(100), ratequeue.Lane("user-facing"))
//	if err != nil {
//		return err // ctx's deadline or cancellation ends the wait and removes the request
//	}
//	resp, err := callUpstream(ctx)
//	lease.Release(context.Background(), ratequeue.ActualLoad(resp.TotalTokens))
//
// Or let Do acquire, run and release:
//
//	err = c.Do(ctx, "openai-gpt4", func(ctx context.Context) error {
//		return callUpstreamAndDiscard(ctx)
//	}, ratequeue.Load(2000))
//
// The address is a comma-separated list of servers (http://h1:7070,
// http://h2:7070; https:// means TLS; a bare host:port works too); an empty
// address means the RATEQUEUE_URL environment variable, else DefaultURL. The
// API key defaults to RATEQUEUE_API_KEY.
//
// A Client keeps one session stream that all goroutines share, and follows
// the session protocol (proto/ratequeue/v1/ratequeue.proto). What goroutines
// send while the stream is busy goes out together, as one batch. Held leases
// are heartbeated in the background at about a third of their TTL. When the
// connection breaks, the client reconnects with backoff (to the leader a
// standby names, or to the next server in the list), re-sends its waiting
// acquires and unanswered releases and heartbeats its leases to keep them.
// When the server refuses the API key, waiting calls fail with the refusal
// and held leases are lost (Lease.Lost closes).
//
// Errors match sentinel errors with errors.Is (ErrTimeout, ErrNotFound,
// ErrInvalid, ErrQueueFull, ErrUnauthenticated, ErrPermissionDenied,
// ErrUnavailable, ErrLeaseExpired, ErrClosed) and carry the gRPC status:
//
//	if errors.Is(err, ratequeue.ErrTimeout) { ... }
//	status.Code(err) // codes.DeadlineExceeded
//
// Tell the server what the provider answered, and one 429 pauses the whole
// fleet while the provider's rate-limit headers keep the budget honest.
// Transport does it for any net/http client:
//
//	hc := &http.Client{Transport: &ratequeue.Transport{Client: c, Resource: "openai-gpt4"}}
//
// or by hand: lease.ObserveResponse(resp) or lease.Report(ctx, Feedback{...})
// before lease.Release (the feedback goes with the release), and
// c.Report(ctx, resource, feedback) for a call made without a lease.
//
// Key charges an acquire to a key inside the resource (a customer, say):
// its keyed child "RESOURCE/KEY", made from the resource's PerKey template,
// has its own quota inside the shared limits.
//
//	lease, err := c.Acquire(ctx, "openai-gpt4", ratequeue.Key(customerID))
//
// Resources, their statistics and API keys are managed with an AdminClient,
// in the config file's shape:
//
//	admin, err := ratequeue.NewAdminClient("", ratequeue.WithAPIKey(adminKey))
//	if err != nil {
//		return err
//	}
//	defer admin.Close()
//	stored, created, err := admin.PutResource(ctx, ratequeue.Resource{
//		Name:   "openai-gpt4",
//		Limits: []ratequeue.Limit{{Dimension: ratequeue.DimensionRequests, Amount: 500, Period: time.Minute}},
//		Lanes:  []ratequeue.LaneWeight{{Name: "user-facing", Weight: 3}, {Name: "batch", Weight: 1}},
//	})
//
// The generated AdminService client, with the protobuf messages, is
// c.Admin(), from the package
// github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1.
package ratequeue
