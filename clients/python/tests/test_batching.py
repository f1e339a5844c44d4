"""Batches on the session stream: what one turn of the client's loop sends
goes out as one SessionRequestBatch, and the server's SessionResponseBatch
reaches each waiter as if its answer had come alone, against a real server.
The writes are watched by wrapping ``_session._batched`` (what the writer
hands to gRPC), and the answers by wrapping ``Session._dispatch``."""

from __future__ import annotations

import asyncio
import collections
from typing import Any, List

import grpc
import pytest

import ratequeue
import ratequeue.aio as rq
from ratequeue import _session
from ratequeue._proto.ratequeue.v1 import ratequeue_pb2 as pb
from ratequeue._protocol import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES


@pytest.fixture
def written(monkeypatch) -> List[Any]:
    """Every message the session writes, as written (a batch or one alone)."""
    out: List[Any] = []
    batched = _session._batched

    def watched(msgs):
        for msg in batched(msgs):
            out.append(msg)
            yield msg

    monkeypatch.setattr(_session, "_batched", watched)
    return out


@pytest.fixture
def answered(monkeypatch) -> List[Any]:
    """Every message the session receives from the server, before dispatch."""
    out: List[Any] = []
    dispatch = _session.Session._dispatch

    def watched(self, resp):
        out.append(resp)
        return dispatch(self, resp)

    monkeypatch.setattr(_session.Session, "_dispatch", watched)
    return out


def _sizes(written: List[Any]) -> List[int]:
    return [len(m.batch.requests) if m.WhichOneof("kind") == "batch" else 1 for m in written]


def test_many_acquires_in_one_turn_are_all_answered_through_batches(url, admin, written):
    """2,500 acquires started at once on a resource that holds 100: they
    go out in batches of at most 1,000, every one is granted a lease of its
    own in turn, and every release finds its lease."""
    name = admin.put(concurrency=100, max_queue=10000)
    client = rq.Client(url)
    held = 0
    most = 0

    async def one(i: int) -> str:
        nonlocal held, most
        lease = await client.acquire_lease(name, timeout=60)
        held += 1
        most = max(most, held)
        await asyncio.sleep(0)
        held -= 1
        assert await lease.release() == "RELEASED"
        return lease.lease_id

    async def main():
        ids = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(2500))), 60)
        await client.close()
        return ids

    ids = asyncio.run(main())
    assert len(set(ids)) == 2500
    assert most <= 100
    stats = admin.stats(name)
    assert (stats.grants, stats.leases_in_flight, stats.rejections) == (2500, 0, 0)
    sizes = _sizes(written)
    assert max(sizes) <= MAX_BATCH_MESSAGES
    assert max(sizes) > 1  # batches went out...
    assert len(written) < 5000  # ...fewer messages than operations
    assert sum(sizes) >= 5000  # every acquire and release, the heartbeat probe too


def test_a_response_batch_mixing_grants_and_failures_reaches_each_waiter(url, admin, answered):
    """Acquires sent together that the server answers in one batch, some
    granted, some refused (unknown resource, unknown lane, a full resource
    with timeout 0): each caller gets its own answer."""
    free = admin.put()
    full = admin.put(concurrency=1)
    client = rq.Client(url)
    kinds = ["granted", "not found", "bad lane", "timeout"]

    async def attempt(kind: str):
        try:
            if kind == "granted":
                return await client.acquire_lease(free)
            if kind == "not found":
                return await client.acquire_lease("no-such-resource-" + free)
            if kind == "bad lane":
                return await client.acquire_lease(free, lane="no-such-lane")
            return await client.acquire_lease(full, timeout=0)
        except ratequeue.RateQueueError as e:
            return e

    async def main():
        blocker = await client.acquire_lease(full, timeout=10)
        outcomes = await asyncio.wait_for(asyncio.gather(*(attempt(kinds[i % 4]) for i in range(200))), 30)
        for lease in [blocker, *(o for o in outcomes if isinstance(o, rq.Lease))]:
            assert await lease.release() == "RELEASED"
        await client.close()
        return outcomes

    outcomes = asyncio.run(main())
    for i, outcome in enumerate(outcomes):
        kind = kinds[i % 4]
        if kind == "granted":
            assert isinstance(outcome, rq.Lease) and outcome.resource == free
        elif kind == "not found":
            assert isinstance(outcome, ratequeue.ResourceNotFound)
        elif kind == "bad lane":
            assert isinstance(outcome, ratequeue.InvalidRequest) and outcome.code == grpc.StatusCode.INVALID_ARGUMENT
        else:
            assert isinstance(outcome, ratequeue.AcquireTimeout)
    assert len({o.lease_id for o in outcomes if isinstance(o, rq.Lease)}) == 50
    mixed = [r for r in answered if r.WhichOneof("kind") == "batch"
             and {"granted", "failure"} <= {x.WhichOneof("kind") for x in r.batch.responses}]
    assert mixed, "no answer batch held both grants and failures"
    stats = admin.stats(free)
    assert (stats.grants, stats.leases_in_flight) == (50, 0)
    assert admin.stats(full).timeouts == 50


def test_batches_keep_within_the_protocols_bounds():
    """At most MAX_BATCH_MESSAGES messages and MAX_BATCH_BYTES bytes a
    batch, in order; a message alone, or one too large to share, goes as
    itself."""
    acquires = [pb.SessionRequest(request_id=i + 1, acquire=pb.AcquireRequest(resource="r"))
                for i in range(2 * MAX_BATCH_MESSAGES + 500)]
    out = list(_session._batched(acquires))
    assert _sizes(out) == [MAX_BATCH_MESSAGES, MAX_BATCH_MESSAGES, 500]
    assert [r.request_id for m in out for r in m.batch.requests] == [m.request_id for m in acquires]
    assert list(_session._batched(acquires[:1])) == acquires[:1]

    ids = [f"{i:036d}" for i in range(1000)]
    beats = [pb.SessionRequest(request_id=i + 1, heartbeat=pb.HeartbeatRequest(lease_ids=ids)) for i in range(20)]
    huge = pb.SessionRequest(request_id=99, report=pb.ReportRequest(resource="x" * (MAX_BATCH_BYTES + 1)))
    out = list(_session._batched([*beats, huge, acquires[0]]))
    assert all(m.ByteSize() <= MAX_BATCH_BYTES + 64 for m in out if m.WhichOneof("kind") == "batch")
    assert sum(_sizes(out)) == 22 and huge in out
    assert [m.request_id for m in out if m.WhichOneof("kind") != "batch"] == [99, 1]

