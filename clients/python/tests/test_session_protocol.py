"""The session protocol's rules (the comment above RateQueueService in
proto/ratequeue/v1/ratequeue.proto), each against a real server: heartbeats
of many leases, how a refused stream ends a wait, the reconnect timeout, the
timeout slack, releases sent again after a reconnect."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import ratequeue
import ratequeue.aio as rq
from ratequeue._protocol import TIMEOUT_SLACK

from conftest import TcpProxy, free_port, start_server, wait_for, Admin


def test_more_than_a_thousand_leases_survive_a_reconnect(admin, proxy):
    """One heartbeat names at most 1,000 leases: 2,500 take three, on the
    stream and when re-attaching them after a reconnect."""
    ttl = 2.0
    name = admin.put(lease_ttl=ttl)
    client = rq.Client(proxy.url)

    async def main():
        leases = await asyncio.gather(*(client.acquire_lease(name) for _ in range(2500)))
        assert admin.stats(name).leases_in_flight == 2500
        proxy.cut()
        await asyncio.to_thread(wait_for, lambda: proxy.accepted >= 2)  # reconnected
        await asyncio.sleep(3 * ttl)  # three TTLs: only heartbeats keep the leases
        stats = admin.stats(name)
        assert stats.leases_in_flight == 2500 and stats.expirations == 0
        assert [lease for lease in leases if lease.lost] == []
        await client.close()

    asyncio.run(main())


def test_a_refused_session_fails_the_wait_at_once_and_keeps_the_held_lease(tmp_path):
    """A stream refused with a code other than a key refusal (here
    RESOURCE_EXHAUSTED: one session per key) fails the waiting acquire with
    that code, keeps the held lease and reconnects to heartbeat it."""
    ttl = 6.0
    cfg = tmp_path / "ratequeue.yaml"
    cfg.write_text(f"resources:\n  r:\n    lease_ttl: {ttl:g}s\n")
    srv = start_server(cfg, args=["--max-sessions-per-key", "1"])
    admin = Admin(srv.target)
    proxy = TcpProxy(srv.port)
    # Two configurations, so two sessions: b through the proxy, a direct.
    b, a = rq.Client(proxy.url), rq.Client(srv.url)

    async def main():
        held = await b.acquire_lease("r")
        proxy.refuse()  # b's stream drops and cannot come back...
        down = time.monotonic()
        mine = await a.acquire_lease("r")  # ...while a takes the only session
        proxy.admit()
        started = time.monotonic()
        with pytest.raises(ratequeue.QueueFull) as e:
            await asyncio.wait_for(b.acquire_lease("r"), 10)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "sessions" in e.value.message
        assert time.monotonic() - started < 5  # at the next attempt (pauses stay under 1 s)
        assert not held.lost
        # Once a's session is gone, b gets in and re-attaches its lease.
        assert await mine.release() == "RELEASED"
        await a.close()
        await asyncio.sleep(max(down + ttl + 1 - time.monotonic(), 0))  # past the TTL of b's last heartbeat
        stats = admin.stats("r")
        assert stats.leases_in_flight == 1 and stats.expirations == 0
        assert not held.lost
        assert await held.release() == "RELEASED"
        await b.close()

    try:
        asyncio.run(main())
    finally:
        proxy.close()
        admin.channel.close()
        assert srv.stop() == 0, "".join(srv.log[-20:])


def test_clients_share_a_session_unless_named_apart(tmp_path):
    cfg = tmp_path / "ratequeue.yaml"
    cfg.write_text("resources:\n  r: {}\n")
    srv = start_server(cfg, args=["--max-sessions-per-key", "1"])
    try:
        # Equal configurations: one stream for both, within the limit of one.
        first, same = ratequeue.Client(srv.url), ratequeue.Client(srv.url)
        first.acquire_lease("r").release()
        same.acquire_lease("r").release()
        # Named apart: a stream each, and the server refuses the second.
        with pytest.raises(ratequeue.QueueFull) as e:
            ratequeue.Client(srv.url, session_name="another").acquire_lease("r", timeout=5)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.close()
    finally:
        assert srv.stop() == 0, "".join(srv.log[-20:])


def test_a_waiting_acquire_survives_the_reconnect_timeout_without_a_stream(server, admin, proxy):
    """Counted from when the stream went down, not from the acquire."""
    name = admin.put(concurrency=1)
    blocker = ratequeue.Client(server.url).acquire_lease(name)
    client = rq.Client(proxy.url, reconnect_timeout=1.5)

    async def main():
        waiter = asyncio.ensure_future(client.acquire_lease(name))
        await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 1)
        await asyncio.sleep(2.0)  # longer than the reconnect timeout, on a working stream
        assert not waiter.done()
        proxy.refuse()
        down = time.monotonic()
        with pytest.raises(ratequeue.Unavailable) as e:
            await asyncio.wait_for(waiter, 10)
        took = time.monotonic() - down
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        assert 1.5 <= took < 1.5 + 3, took
        await client.close()

    try:
        asyncio.run(main())
    finally:
        blocker.release()


def test_without_a_server_a_timeout_ends_only_after_the_slack():
    """The server enforces an acquire's timeout; with no server to answer,
    the client gives up by itself TIMEOUT_SLACK later."""
    client = ratequeue.Client(f"127.0.0.1:{free_port()}")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ratequeue.AcquireTimeout) as e:
        client.acquire_lease("anything", timeout=0.3)
    took = time.monotonic() - started
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.3 + TIMEOUT_SLACK <= took < 0.3 + TIMEOUT_SLACK + 3, took
    client.close()


def test_an_unanswered_release_is_sent_again_after_reconnecting(admin, proxy):
    name = admin.put(concurrency=1, lease_ttl=20)
    client = ratequeue.Client(proxy.url)
    lease = client.acquire_lease(name)
    proxy.refuse()
    assert lease.release() is None  # no stream: it does not wait for one
    assert admin.stats(name).leases_in_flight == 1
    proxy.admit()
    # Freed by the re-sent release, long before the TTL would.
    wait_for(lambda: admin.stats(name).leases_in_flight == 0, 10)
    assert admin.stats(name).expirations == 0
    client.close()


def test_feedback_goes_with_a_release_sent_again_after_reconnecting(admin, proxy):
    name = admin.put(concurrency=1, lease_ttl=20)
    client = ratequeue.Client(proxy.url)
    lease = client.acquire_lease(name)
    lease.report(throttled=True, retry_after=0.5)
    proxy.refuse()
    assert lease.release() is None
    proxy.admit()
    wait_for(lambda: admin.stats(name).leases_in_flight == 0, 10)
    assert admin.stats(name).throttles == 1
    client.close()


def test_a_report_waits_for_a_stream_and_fails_after_the_reconnect_timeout(admin, proxy):
    """A report waits for its answer: sent when a stream is up again; with
    none within the reconnect timeout it fails UNAVAILABLE."""
    name = admin.put()
    client = rq.Client(proxy.url, reconnect_timeout=1.5)

    async def main():
        await client.report(name, {"requests": {"remaining": 100}})  # connected
        proxy.refuse()
        report = asyncio.ensure_future(client.report(name, {"throttled": True, "retry_after": 0.2}))
        await asyncio.sleep(0.5)
        assert not report.done()
        proxy.admit()
        assert await asyncio.wait_for(report, 10) is not None  # paused until then
        assert admin.stats(name).throttles == 1

        proxy.refuse()
        down = time.monotonic()
        with pytest.raises(ratequeue.Unavailable):
            await asyncio.wait_for(client.report(name, {"throttled": True}), 10)
        assert 1.5 <= time.monotonic() - down < 1.5 + 3
        assert admin.stats(name).throttles == 1
        await client.close()

    asyncio.run(main())
