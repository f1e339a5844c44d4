// Command conformance is the Go client's adapter for the conformance suite
// (test/conformance/README.md, "Adapter protocol"). It reads one JSON
// command per line on stdin and answers each with one JSON line on stdout,
// carrying the command's id, in whatever order the client decides them:
// every command runs in its own goroutine, so none blocks the reading of
// the next. When stdin closes it closes its clients and exits 0. Anything
// for humans goes to stderr.
//
// The suite builds it with `go build -o <tmp> ./internal/conformance` from
// clients/go.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/status"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// command is one line of input; each command reads the fields it needs.
type command struct {
	ID                 int64    `json:"id"`
	Cmd                string   `json:"cmd"`
	Client             string   `json:"client"`
	URL                string   `json:"url"`
	APIKey             *string  `json:"apiKey"`
	Namespace          *string  `json:"namespace"`
	ReconnectTimeoutMs *int64   `json:"reconnectTimeoutMs"`
	Resource           string   `json:"resource"`
	Load               *float64 `json:"load"`
	Priority           *int32   `json:"priority"`
	Lane               string   `json:"lane"`
	Key                *string  `json:"key"`
	TimeoutMs          *int64   `json:"timeoutMs"`
	Target             int64    `json:"target"`
	Count              int      `json:"count"`
	Lease              string   `json:"lease"`
	ActualLoad         *float64 `json:"actualLoad"`
	Throttle           *struct {
		RetryAfterMs float64 `json:"retryAfterMs"`
	} `json:"throttle"`
	Leases []string `json:"leases"`
}

// fields are an answer's fields besides id and ok.
type fields map[string]any

// held is a lease acquired through the adapter.
type held struct {
	client   string
	lease    *ratequeue.Lease
	released bool
}

type adapter struct {
	outMu sync.Mutex // one answer line at a time

	mu       sync.Mutex
	clients  map[string]*ratequeue.Client
	leases   map[string]*held
	acquires map[int64]context.CancelFunc // by the acquire command's id
}

func main() {
	a := &adapter{clients: map[string]*ratequeue.Client{}, leases: map[string]*held{}, acquires: map[int64]context.CancelFunc{}}
	a.write(fields{"ready": true})
	var wg sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20) // releaseMany names thousands of leases
	for in.Scan() {
		line := in.Bytes()
		if len(line) == 0 {
			continue
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: bad command %q: %v\n", line, err)
			continue
		}
		received := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serve(cmd, received)
		}()
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance: reading stdin:", err)
	}
	// Closing the clients ends every wait (ErrClosed); then all is answered.
	a.mu.Lock()
	clients := a.clients
	a.clients = map[string]*ratequeue.Client{}
	a.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	wg.Wait()
	os.Exit(0)
}

// write prints one answer line.
func (a *adapter) write(f fields) {
	b, err := json.Marshal(f)
	if err != nil {
		b, _ = json.Marshal(fields{"id": f["id"], "ok": false, "code": "INTERNAL", "message": "conformance: " + err.Error()})
	}
	a.outMu.Lock()
	defer a.outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

// serve runs one command and answers it.
func (a *adapter) serve(cmd command, received time.Time) {
	var (
		f   fields
		err error
	)
	switch cmd.Cmd {
	case "defaults":
		f = fields{"defaults": defaults()}
	case "open":
		err = a.open(cmd)
	case "acquire":
		f, err = a.acquire(cmd)
	case "cancel":
		a.mu.Lock()
		cancel := a.acquires[cmd.Target]
		a.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case "acquireMany":
		f, err = a.acquireMany(cmd)
	case "release":
		var outcome any
		if cmd.Throttle != nil {
			outcome, err = a.releaseThrottled(cmd.Lease, cmd.ActualLoad, time.Duration(cmd.Throttle.RetryAfterMs*float64(time.Millisecond)))
		} else {
			outcome, err = a.release(cmd.Lease, cmd.ActualLoad)
		}
		f = fields{"outcome": outcome}
	case "releaseMany":
		f, err = a.releaseMany(cmd)
	case "leases":
		f, err = a.leasesOf(cmd.Client)
	case "close":
		var c *ratequeue.Client
		if c, err = a.client(cmd.Client); err == nil {
			c.Close()
			a.mu.Lock()
			delete(a.clients, cmd.Client)
			a.mu.Unlock()
		}
	default:
		err = fmt.Errorf("conformance: unknown command %q", cmd.Cmd)
	}
	answer := fields{"id": cmd.ID, "ok": err == nil}
	if err != nil {
		answer["code"] = codeName(err)
		answer["message"] = err.Error()
	} else {
		for k, v := range f {
			answer[k] = v
		}
	}
	if cmd.Cmd == "acquire" {
		answer["elapsedMs"] = time.Since(received).Milliseconds()
	}
	a.write(answer)
}

// defaults are the library's own constants.
func defaults() fields {
	return fields{
		"url":                     protocol.DefaultURL,
		"keepaliveTimeMs":         protocol.KeepaliveTime.Milliseconds(),
		"keepaliveTimeoutMs":      protocol.KeepaliveTimeout.Milliseconds(),
		"reconnectTimeoutMs":      protocol.ReconnectTimeout.Milliseconds(),
		"initialBackoffMs":        protocol.InitialBackoff.Milliseconds(),
		"maxBackoffMs":            protocol.MaxBackoff.Milliseconds(),
		"timeoutSlackMs":          protocol.TimeoutSlack.Milliseconds(),
		"maxLeaseIdsPerHeartbeat": protocol.MaxLeaseIDsPerHeartbeat,
		"leaderMetadataKey":       protocol.LeaderKey,
		"namespaceMetadataKey":    protocol.NamespaceKey,
	}
}

// codeName is the canonical name of err's gRPC status code (CANCELLED, not
// grpc-go's Canceled): the google.rpc.Code enum's.
func codeName(err error) string {
	return code.Code(status.Code(err)).String()
}

func (a *adapter) client(name string) (*ratequeue.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.clients[name]
	if !ok {
		return nil, fmt.Errorf("conformance: no client named %q; open it first", name)
	}
	return c, nil
}

func (a *adapter) open(cmd command) error {
	// No apiKey means no key, whatever the environment says.
	opts := []ratequeue.Option{ratequeue.WithAPIKey("")}
	if cmd.APIKey != nil {
		opts = append(opts, ratequeue.WithAPIKey(*cmd.APIKey))
	}
	if cmd.Namespace != nil {
		opts = append(opts, ratequeue.WithNamespace(*cmd.Namespace))
	}
	if cmd.ReconnectTimeoutMs != nil {
		opts = append(opts, ratequeue.WithReconnectTimeout(time.Duration(*cmd.ReconnectTimeoutMs)*time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ratequeue.Dial(ctx, cmd.URL, opts...)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.clients[cmd.Client]; old != nil {
		go old.Close()
	}
	a.clients[cmd.Client] = c
	return nil
}

// acquireOne acquires a lease for cmd's client and records it.
func (a *adapter) acquireOne(ctx context.Context, cmd command) (*ratequeue.Lease, error) {
	c, err := a.client(cmd.Client)
	if err != nil {
		return nil, err
	}
	var opts []ratequeue.AcquireOption
	if cmd.Load != nil {
		opts = append(opts, ratequeue.Load(*cmd.Load))
	}
	if cmd.Priority != nil {
		opts = append(opts, ratequeue.Priority(*cmd.Priority))
	}
	if cmd.Lane != "" {
		opts = append(opts, ratequeue.Lane(cmd.Lane))
	}
	if cmd.Key != nil {
		opts = append(opts, ratequeue.Key(*cmd.Key))
	}
	l, err := c.Acquire(ctx, cmd.Resource, opts...)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.leases[l.ID()] = &held{client: cmd.Client, lease: l}
	a.mu.Unlock()
	return l, nil
}

func (a *adapter) acquire(cmd command) (fields, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cmd.TimeoutMs != nil {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*cmd.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	a.mu.Lock()
	a.acquires[cmd.ID] = cancel
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.acquires, cmd.ID)
		a.mu.Unlock()
	}()
	l, err := a.acquireOne(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return fields{"lease": l.ID(), "grantTimeMs": l.GrantTime().UnixMilli(), "load": l.Load(), "resource": l.Resource()}, nil
}

// parallel is how many calls acquireMany and releaseMany make at once.
const parallel = 64

func (a *adapter) acquireMany(cmd command) (fields, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ids := make([]string, cmd.Count)
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cmd.Count && ctx.Err() == nil; i += parallel {
				l, err := a.acquireOne(ctx, cmd)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				ids[i] = l.ID()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return fields{"leases": ids}, nil
}

// releaseThrottled reports the provider's refusal on a lease acquired here, then releases it.
func (a *adapter) releaseThrottled(id string, actualLoad *float64, retryAfter time.Duration) (any, error) {
	a.mu.Lock()
	h := a.leases[id]
	held := h != nil && !h.released
	a.mu.Unlock()
	if held {
		// Before the release this only records it: the release carries it.
		_ = h.lease.Report(context.Background(), ratequeue.Feedback{Throttled: true, RetryAfter: &retryAfter})
	}
	return a.release(id, actualLoad)
}

// release releases a lease acquired here and returns its outcome.
func (a *adapter) release(id string, actualLoad *float64) (any, error) {
	a.mu.Lock()
	h := a.leases[id]
	if h != nil {
		h.released = true
	}
	a.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("conformance: no lease %q was acquired here", id)
	}
	var opts []ratequeue.ReleaseOption
	if actualLoad != nil {
		opts = append(opts, ratequeue.ActualLoad(*actualLoad))
	}
	err := h.lease.Release(context.Background(), opts...)
	switch {
	case err == nil:
		// The library does not tell released from already released.
		return "released", nil
	case errors.Is(err, ratequeue.ErrLeaseExpired):
		return "expired", nil
	case errors.Is(err, ratequeue.ErrNotFound):
		return "unknown", nil
	}
	return nil, err
}

func (a *adapter) releaseMany(cmd command) (fields, error) {
	outcomes := make([]any, len(cmd.Leases))
	errs := make([]error, len(cmd.Leases))
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(cmd.Leases); i += parallel {
				outcomes[i], errs[i] = a.release(cmd.Leases[i], nil)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first failure
		}
	}
	return fields{"outcomes": outcomes}, nil
}

func (a *adapter) leasesOf(client string) (fields, error) {
	heldIDs, lostIDs := []string{}, []string{}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, h := range a.leases {
		if h.client != client || h.released {
			continue
		}
		select {
		case <-h.lease.Lost():
			lostIDs = append(lostIDs, id)
		default:
			heldIDs = append(heldIDs, id)
		}
	}
	return fields{"held": heldIDs, "lost": lostIDs}, nil
}
