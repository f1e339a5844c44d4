"""Server lists, reconnect + re-attach, a graceful restart, and a real
Redis group of two nodes: the standby's redirect, the leader's SIGKILL and
its graceful SIGTERM hand-over."""

from __future__ import annotations

import asyncio
import time

import grpc
import redis

import ratequeue
import ratequeue.aio as rq
from conftest import Admin, free_port, start_server, wait_for


def test_server_list_skips_a_dead_server(server, admin):
    dead = free_port()  # nothing listens there
    name = admin.put()
    client = ratequeue.Client(f"http://127.0.0.1:{dead},{server.url}")
    with client.acquire(name, timeout=5):
        pass


def test_reconnect_reattaches_leases_and_resends_waits(admin, proxy):
    name = admin.put(concurrency=1, lease_ttl=1.0)
    client = rq.Client(proxy.url)

    async def main():
        lease = await client.acquire_lease(name)
        waiter = asyncio.ensure_future(client.acquire_lease(name, timeout=20))
        await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 1)
        proxy.cut()  # the stream drops: the server withdraws the wait
        await asyncio.to_thread(wait_for, lambda: proxy.accepted >= 2)  # reconnected
        await asyncio.sleep(1.6)  # past the TTL: only a re-attaching heartbeat keeps the lease
        assert not lease.lost
        assert admin.stats(name).expirations == 0
        assert admin.stats(name).leases_in_flight == 1
        # the wait was re-sent on the new stream
        await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 1)
        assert await lease.release() == "RELEASED"
        second = await asyncio.wait_for(waiter, 10)
        await second.release()
        await client.close()

    asyncio.run(main())


ONE_SLOT_CONFIG = """\
resources:
  one:
    concurrency: 1
    lease_ttl: 30s
"""


def test_waiting_acquire_rides_through_a_graceful_shutdown(tmp_path):
    """A server shutting down answers the waiting acquire UNAVAILABLE; the
    client keeps it and sends it again to the server that comes up next."""
    cfg = tmp_path / "ratequeue.yaml"
    cfg.write_text(ONE_SLOT_CONFIG)
    own = start_server(cfg)
    servers = [own]
    admin = Admin(own.target)
    client = rq.Client(own.url)

    async def main():
        held = await client.acquire_lease("one")
        waiter = asyncio.ensure_future(client.acquire_lease("one", timeout=20))
        await asyncio.to_thread(wait_for, lambda: admin.queue_depth("one") == 1)
        assert await asyncio.to_thread(own.stop) == 0, "".join(own.log[-20:])
        # The departing server answered the waiter UNAVAILABLE: it must not
        # surface (awaiting the waiter below would raise it).
        assert not waiter.done(), waiter.exception() if waiter.done() else None
        nxt = await asyncio.to_thread(start_server, cfg, port=own.port)
        servers.append(nxt)
        started = time.monotonic()
        lease = await asyncio.wait_for(waiter, 10)
        assert lease.resource == "one"
        assert time.monotonic() - started < 3, "the new server should be found within about a second"
        assert await lease.release() == "RELEASED"
        assert await held.release() == "UNKNOWN"  # the new server never knew it: harmless
        await client.close()

    try:
        asyncio.run(main())
    finally:
        admin.channel.close()
        for s in servers:
            assert s.stop() == 0, "".join(s.log[-20:])


# ---------------------------------------------------------------- a group

GROUP_CONFIG = """\
resources:
  one:
    concurrency: 1
    lease_ttl: 5s
"""
# Long enough that the lease outlives the leader TTL (1 s) plus the client's
# reconnect (about a second), short enough to wait out in the test: a
# restored lease keeps the expiry it had in the snapshot.
LEASE_TTL = 5.0
SNAPSHOT_KEY = "ratequeue:snapshot"  # the leader's snapshot, under the default --redis-prefix


def _start_node(cfg, redis_url: str):
    port = free_port()
    return start_server(cfg, port=port, args=["--redis", redis_url, "--advertise", f"127.0.0.1:{port}",
                                              "--leader-ttl", "1s"])


def _start_group(tmp_path, redis_url: str):
    """Two nodes on one private Redis: the first leads, the second stands by."""
    cfg = tmp_path / "ratequeue.yaml"
    cfg.write_text(GROUP_CONFIG)
    a = _start_node(cfg, redis_url)
    nodes = [a]
    try:
        a.wait_for_log("leading")
        b = _start_node(cfg, redis_url)
        nodes.append(b)
        b.wait_for_log("standing by")
    except BaseException:
        for n in nodes:
            n.kill()
        raise
    return a, b


def _stats_or_none(admin: Admin, name: str):
    try:
        return admin.stats(name)
    except grpc.RpcError:  # a standby answers UNAVAILABLE
        return None


def _depth(stats) -> int:
    return sum(lane.queue_depth for lane in stats.lanes)


def _ride_through_failover(tmp_path, redis_url: str, *, kill: bool) -> None:
    a, b = _start_group(tmp_path, redis_url)
    admin_a, admin_b = Admin(a.target), Admin(b.target)
    store = redis.Redis.from_url(redis_url)
    # The standby first: the client follows its leader hint to A.
    client = rq.Client(f"{b.url},{a.url}")

    async def main():
        held = await client.acquire_lease("one", timeout=5)
        waiter = asyncio.ensure_future(client.acquire_lease("one", timeout=30))
        await asyncio.to_thread(wait_for, lambda: _depth(admin_a.stats("one")) == 1)
        # A leader snapshot holds the lease, so the next leader restores it.
        await asyncio.to_thread(wait_for, lambda: held.lease_id.encode() in (store.get(SNAPSHOT_KEY) or b""))
        gone_at = time.monotonic()
        if kill:
            await asyncio.to_thread(a.kill)
        else:
            assert await asyncio.to_thread(a.stop) == 0, "".join(a.log[-20:])
        took = await asyncio.to_thread(b.wait_for_log, "leading", 5.0)
        assert took.get("from") == ("snapshot" if kill else "final snapshot"), took
        led = time.monotonic() - gone_at
        # The client found the new leader by itself: the held lease is
        # re-attached and the waiting acquire re-sent there.
        await asyncio.to_thread(wait_for, lambda: (
            (s := _stats_or_none(admin_b, "one")) is not None and s.leases_in_flight == 1 and _depth(s) == 1), 10)
        assert not waiter.done(), waiter.exception() if waiter.done() else None
        # Past the TTL since the old leader went: only heartbeats to the new
        # leader keep the lease.
        await asyncio.sleep(max(gone_at + LEASE_TTL + 0.5 - time.monotonic(), 0))
        stats = admin_b.stats("one")
        assert not held.lost
        assert stats.leases_in_flight == 1 and stats.expirations == 0 and _depth(stats) == 1
        grants = stats.grants
        assert await held.release() == "RELEASED"
        lease = await asyncio.wait_for(waiter, 5)
        assert lease.resource == "one"
        assert admin_b.stats("one").grants == grants + 1  # granted by the new leader
        assert await lease.release() == "RELEASED"
        await client.close()
        return led

    try:
        led = asyncio.run(main())
        print(f"{'SIGKILL' if kill else 'SIGTERM'}: the standby led {led:.2f}s after the leader went")
    finally:
        admin_a.channel.close()
        admin_b.channel.close()
        store.close()
        a.kill()
        b.kill()


def test_sigkill_of_the_leader_the_waiting_acquire_and_held_lease_move_to_the_new_leader(tmp_path, redis_server):
    _ride_through_failover(tmp_path, redis_server.url, kill=True)


def test_graceful_handover_the_waiting_acquire_and_held_lease_move_to_the_new_leader(tmp_path, redis_server):
    _ride_through_failover(tmp_path, redis_server.url, kill=False)
