package ratequeue

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Every error the client returns for a failed call is an
// *Error that matches one of these with errors.Is and carries the server's
// gRPC status (status.FromError and status.Code work on it).
var (
	// ErrTimeout: the acquire's deadline passed before a slot was free
	// (DEADLINE_EXCEEDED), whether the server or the context noticed first;
	// or a release's context ended before its answer.
	ErrTimeout = errors.New("ratequeue: timed out")
	// ErrNotFound: no such resource (NOT_FOUND), or a released lease the
	// server never knew.
	ErrNotFound = errors.New("ratequeue: not found")
	// ErrInvalid: the request broke a rule, for example a negative load or an
	// unknown lane (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE).
	ErrInvalid = errors.New("ratequeue: invalid request")
	// ErrUnauthenticated: no or an unknown API key (UNAUTHENTICATED).
	ErrUnauthenticated = errors.New("ratequeue: unauthenticated")
	// ErrPermissionDenied: the API key may not do this (PERMISSION_DENIED).
	ErrPermissionDenied = errors.New("ratequeue: permission denied")
	// ErrUnavailable: no server could be reached, or none for longer than
	// the reconnect timeout (an acquire) or the lease's TTL (a release)
	// (UNAVAILABLE).
	ErrUnavailable = errors.New("ratequeue: unavailable")
	// ErrQueueFull: the resource's queue is full, or a per-key or
	// per-session limit of the server (sessions, waiting acquires, leases)
	// is reached (RESOURCE_EXHAUSTED).
	ErrQueueFull = errors.New("ratequeue: queue full")
	// ErrLeaseExpired: the lease expired before it was released, so its slot
	// had already been returned.
	ErrLeaseExpired = errors.New("ratequeue: lease expired")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("ratequeue: client closed")
)

// Error is a failed call: a gRPC status and the sentinel errors it matches.
type Error struct {
	status *status.Status
	errs   []error
}

// Error returns "ratequeue: CODE: message".
func (e *Error) Error() string {
	return fmt.Sprintf("ratequeue: %s: %s", e.status.Code(), e.status.Message())
}

// Unwrap returns the sentinel error, the context's error when the context
// ended the call, and the gRPC status error.
func (e *Error) Unwrap() []error {
	return append(append([]error(nil), e.errs...), e.status.Err())
}

// GRPCStatus returns the status, so status.FromError and status.Code see it.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Code returns the gRPC status code.
func (e *Error) Code() codes.Code { return e.status.Code() }

// sentinel returns the sentinel error of a gRPC code, or nil.
func sentinel(c codes.Code) error {
	switch c {
	case codes.DeadlineExceeded:
		return ErrTimeout
	case codes.NotFound:
		return ErrNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return ErrInvalid
	case codes.Unauthenticated:
		return ErrUnauthenticated
	case codes.PermissionDenied:
		return ErrPermissionDenied
	case codes.Unavailable:
		return ErrUnavailable
	case codes.ResourceExhausted:
		return ErrQueueFull
	case codes.Canceled:
		return context.Canceled
	}
	return nil
}

// newError builds an *Error from a code and message, adding extra errors to
// its chain.
func newError(c codes.Code, msg string, extra ...error) *Error {
	e := &Error{status: status.New(c, msg)}
	if s := sentinel(c); s != nil {
		e.errs = append(e.errs, s)
	}
	for _, x := range extra {
		if x != nil && !errors.Is(e, x) {
			e.errs = append(e.errs, x)
		}
	}
	return e
}

// fromError converts an error from a gRPC call into an *Error.
func fromError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	return newError(s.Code(), s.Message())
}

// ctxError is the error of an operation its context ended: ErrTimeout and
// context.DeadlineExceeded for a deadline, context.Canceled otherwise.
func ctxError(ctx context.Context, what string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return newError(codes.DeadlineExceeded, what+": the context's deadline passed", err)
	}
	return newError(codes.Canceled, what+": the context was cancelled", err)
}
