package ratequeue

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/ratequeue/ratequeue/clients/go/gen/ratequeue/v1"
	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// batched keeps every batch within the protocol's bounds, in order; a
// request alone, or one too large to share, goes as itself.
func TestBatchedKeepsWithinBounds(t *testing.T) {
	sizes := func(msgs []*pb.SessionRequest) []int {
		var n []int
		for _, m := range msgs {
			if b := m.GetBatch(); b != nil {
				n = append(n, len(b.GetRequests()))
			} else {
				n = append(n, 1)
			}
		}
		return n
	}
	var acquires []*pb.SessionRequest
	for i := range 2*protocol.MaxBatchMessages + 500 {
		acquires = append(acquires, &pb.SessionRequest{RequestId: uint64(i + 1), Kind: &pb.SessionRequest_Acquire{Acquire: &pb.AcquireRequest{Resource: "r"}}})
	}
	out := batched(acquires)
	if got, want := sizes(out), []int{protocol.MaxBatchMessages, protocol.MaxBatchMessages, 500}; !slices.Equal(got, want) {
		t.Fatalf("batch sizes %v, want %v", got, want)
	}
	var order []*pb.SessionRequest
	for _, m := range out {
		order = append(order, m.GetBatch().GetRequests()...)
	}
	if !slices.Equal(order, acquires) {
		t.Fatal("the batches do not hold the requests in order")
	}
	if got := batched(acquires[:1]); len(got) != 1 || got[0] != acquires[0] {
		t.Fatalf("one request went as %v, want itself", got)
	}

	ids := make([]string, protocol.MaxLeaseIDsPerHeartbeat)
	for i := range ids {
		ids[i] = fmt.Sprintf("%036d", i)
	}
	var reqs []*pb.SessionRequest
	for i := range 20 {
		reqs = append(reqs, &pb.SessionRequest{RequestId: uint64(i + 1), Kind: &pb.SessionRequest_Heartbeat{Heartbeat: &pb.HeartbeatRequest{LeaseIds: ids}}})
	}
	huge := &pb.SessionRequest{RequestId: 99, Kind: &pb.SessionRequest_Report{Report: &pb.ReportRequest{Resource: strings.Repeat("x", protocol.MaxBatchBytes+1)}}}
	out = batched(append(reqs, huge, acquires[0]))
	var alone []uint64
	total := 0
	for _, m := range out {
		if m.GetBatch() == nil {
			alone = append(alone, m.GetRequestId())
			total++
			continue
		}
		total += len(m.GetBatch().GetRequests())
		if n := proto.Size(m); n > protocol.MaxBatchBytes+64 {
			t.Errorf("a batch of %d bytes, more than %d", n, protocol.MaxBatchBytes)
		}
	}
	if total != 22 || !slices.Equal(alone, []uint64{99, 1}) {
		t.Fatalf("%d requests, %v alone; want 22, [99 1]", total, alone)
	}
}
