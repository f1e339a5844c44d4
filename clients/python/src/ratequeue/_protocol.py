"""The session protocol's constants, each defined once.

The rules are the "Session protocol" comment above ``RateQueueService`` in
``proto/ratequeue/v1/ratequeue.proto`` (explained in ``docs/protocol.md``);
every client shares these values. Durations are in seconds.
"""

from __future__ import annotations

import grpc

# Where a client connects when neither ``url=`` nor ``RATEQUEUE_URL`` says:
# the server's default bind. A URL without a port means DEFAULT_PORT (443
# for https://).
DEFAULT_PORT = 7070
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"

# Metadata names.
AUTHORIZATION_METADATA_KEY = "authorization"  # "Bearer <key>" on every call
NAMESPACE_METADATA_KEY = "ratequeue-namespace"  # the namespace a root key acts in
LEADER_METADATA_KEY = "ratequeue-leader"  # trailer of UNAVAILABLE: the leader's host:port

# A ping every KEEPALIVE_TIME, dropped after KEEPALIVE_TIMEOUT without an
# answer, also without calls in flight.
KEEPALIVE_TIME = 30.0
KEEPALIVE_TIMEOUT = 10.0
KEEPALIVE_PERMIT_WITHOUT_CALLS = True

# The pause between connection attempts: INITIAL_BACKOFF, doubling up to
# MAX_BACKOFF, each pause jittered to BACKOFF_JITTER times; back to
# INITIAL_BACKOFF after a stream that answered.
INITIAL_BACKOFF = 0.05
MAX_BACKOFF = 1.0
BACKOFF_JITTER = (0.5, 1.0)

# How long a waiting acquire survives without a working stream.
RECONNECT_TIMEOUT = 30.0
# How long past an acquire's timeout the client waits for the server's own
# answer before it gives up by itself (the server could not be reached).
TIMEOUT_SLACK = 2.0
# After a node answered an operation UNAVAILABLE (it is going away), how long
# it may take to end the stream itself; its status may name the leader.
DEPARTURE_GRACE = 0.25

# A held lease is heartbeated HEARTBEATS_PER_TTL times per TTL, and one
# heartbeat names at most MAX_LEASE_IDS_PER_HEARTBEAT leases.
HEARTBEATS_PER_TTL = 3
MAX_LEASE_IDS_PER_HEARTBEAT = 1000

# What a client sends in one turn of its event loop goes out as one
# SessionRequestBatch (a single message goes alone): at most
# MAX_BATCH_MESSAGES messages, and no more than MAX_BATCH_BYTES of them
# encoded, well under the server's largest message (1 MiB by default); a
# message larger than that goes alone.
MAX_BATCH_MESSAGES = 1000
MAX_BATCH_BYTES = 256 * 1024

# How a stream's end is handled ("The stream ending"). A stream that ends
# with one of RETRIED_CODES (or without a status) is reconnected and
# re-attached. KEY_REFUSED_CODES fail every waiting operation and lose every
# held lease; the client connects again only for a new operation. Any other
# code fails every waiting operation; held leases are kept and heartbeated
# after a reconnect.
RETRIED_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
})
KEY_REFUSED_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


def channel_options(*, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF) -> tuple:
    """gRPC channel arguments for the keepalive above, and a transport
    reconnect backoff that never waits longer than the session's own."""
    ms = lambda seconds: int(round(seconds * 1000))  # noqa: E731
    return (
        ("grpc.keepalive_time_ms", ms(KEEPALIVE_TIME)),
        ("grpc.keepalive_timeout_ms", ms(KEEPALIVE_TIMEOUT)),
        ("grpc.keepalive_permit_without_calls", int(KEEPALIVE_PERMIT_WITHOUT_CALLS)),
        ("grpc.initial_reconnect_backoff_ms", ms(initial_backoff)),
        ("grpc.min_reconnect_backoff_ms", ms(initial_backoff)),
        ("grpc.max_reconnect_backoff_ms", ms(max_backoff)),
    )
