package protocol

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// The stream-end table of the proto's "The stream ending", code by code.
func TestOnStreamEnd(t *testing.T) {
	want := map[codes.Code]StreamEnd{
		codes.OK: Retry, codes.Unavailable: Retry, codes.Canceled: Retry, codes.DeadlineExceeded: Retry,
		codes.Aborted: Retry, codes.Internal: Retry, codes.Unknown: Retry,
		codes.Unauthenticated: KeyRefused, codes.PermissionDenied: KeyRefused,
		codes.InvalidArgument: Fail, codes.NotFound: Fail, codes.AlreadyExists: Fail,
		codes.ResourceExhausted: Fail, codes.FailedPrecondition: Fail, codes.OutOfRange: Fail,
		codes.Unimplemented: Fail, codes.DataLoss: Fail,
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		w, ok := want[c]
		if !ok {
			t.Fatalf("no expectation for %v", c)
		}
		if got := OnStreamEnd(c); got != w {
			t.Errorf("OnStreamEnd(%v) = %d, want %d", c, got, w)
		}
	}
}

// Each pause is the backoff jittered to 0.5–1 times, and the whole range
// is used.
func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{InitialBackoff, 200 * time.Millisecond, MaxBackoff} {
		lo, hi := d, time.Duration(0)
		for range 2000 {
			p := Jitter(d)
			if p < d/2 || p > d {
				t.Fatalf("Jitter(%v) = %v, want within [%v, %v]", d, p, d/2, d)
			}
			lo, hi = min(lo, p), max(hi, p)
		}
		if lo > d/2+d/20 || hi < d-d/20 {
			t.Errorf("Jitter(%v) ranged over [%v, %v] in 2,000 draws, want about [%v, %v]", d, lo, hi, d/2, d)
		}
	}
}
