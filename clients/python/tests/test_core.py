"""The core API against the real server: sync, async, decorator, leases."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ratequeue
import ratequeue.aio as rq

from conftest import wait_for


def test_sync_acquire_releases_on_exit(url, admin):
    name = admin.put(concurrency=1)
    with ratequeue.acquire(name, load=3) as lease:
        assert isinstance(lease, ratequeue.Lease)
        assert lease.resource == name and lease.load == 3
        assert admin.stats(name).leases_in_flight == 1
    assert lease.released
    wait_for(lambda: admin.stats(name).leases_in_flight == 0)


def test_release_on_exception(url, admin):
    name = admin.put(concurrency=1)
    with pytest.raises(ZeroDivisionError):
        with ratequeue.acquire(name):
            1 / 0
    # the slot is free again: a one-attempt acquire succeeds
    with ratequeue.acquire(name, timeout=0):
        pass


def test_async_acquire_across_event_loops(url, admin):
    name = admin.put(concurrency=1)

    async def once() -> str:
        async with rq.acquire(name, priority=100) as lease:
            return lease.lease_id

    # Celery tasks often call asyncio.run per task: one stream serves them all.
    ids = {asyncio.run(once()) for _ in range(3)}
    assert len(ids) == 3
    assert admin.stats(name).leases_in_flight == 0


def test_actual_load_reconciles_the_estimate(url, admin):
    # 100 load units per second, burst 100: an estimate of 100 spends it all,
    # an actual load of 10 refunds 90.
    name = admin.put(load_rate=100, load_burst=100)
    with ratequeue.acquire(name, load=100) as lease:
        lease.actual_load = 10
    with ratequeue.acquire(name, load=80, timeout=0):
        pass


def test_explicit_client_and_lease_api(server, admin, monkeypatch):
    monkeypatch.delenv("RATEQUEUE_URL", raising=False)
    name = admin.put(concurrency=2)
    client = ratequeue.Client(url=server.url)
    lease = client.acquire_lease(name, lane=None, timeout=5)
    assert client.release(lease, actual_load=1) == "RELEASED"
    assert client.release(lease) is None  # twice is harmless

    async def main():
        aclient = rq.Client(server.url)
        lease = await aclient.acquire_lease(name)
        return await aclient.release(lease)

    assert asyncio.run(main()) == "RELEASED"


def test_a_sync_lease_releases_itself(url, admin):
    # 100 load units per second, burst 100: a lease of 100 spends them all,
    # and its release with an actual load of 10 refunds 90.
    name = admin.put(load_rate=100, load_burst=100, period=60)
    lease = ratequeue.Client().acquire_lease(name, load=100)
    assert isinstance(lease, ratequeue.Lease)
    assert admin.stats(name).leases_in_flight == 1
    assert lease.release(actual_load=10) == "RELEASED"  # blocks until the server answered
    assert lease.released and admin.stats(name).leases_in_flight == 0
    assert lease.release() is None  # twice is harmless
    with ratequeue.acquire(name, load=90, timeout=0):
        pass


def test_an_async_lease_releases_itself(url, admin):
    name = admin.put(load_rate=100, load_burst=100, period=60)

    async def main():
        lease = await rq.Client().acquire_lease(name, load=100)
        assert isinstance(lease, rq.Lease) and not isinstance(lease, ratequeue.Lease)
        assert admin.stats(name).leases_in_flight == 1
        lease.actual_load = 10  # used when release() is given none
        assert await lease.release() == "RELEASED"
        assert lease.released and admin.stats(name).leases_in_flight == 0
        async with rq.acquire(name, load=90, timeout=0) as second:
            assert isinstance(second, rq.Lease)

    asyncio.run(main())


def test_limited_decorator_sync_and_async(url, admin):
    name = admin.put(concurrency=1)
    seen = []

    @ratequeue.limited(name, load=lambda n: n, actual_load=lambda r: r)
    def work(n):
        seen.append(admin.stats(name).leases_in_flight)
        return n

    @ratequeue.limited(name, priority=100)
    async def awork(n):
        seen.append(admin.stats(name).leases_in_flight)
        return n * 2

    assert work(3) == 3
    assert asyncio.run(awork(4)) == 8
    assert work.__name__ == "work" and awork.__name__ == "awork"
    assert seen == [1, 1]


def test_threads_share_one_process_session(url, admin):
    name = admin.put(concurrency=3)
    peak = []
    lock = threading.Lock()
    inside = [0]

    def worker():
        for _ in range(5):
            with ratequeue.acquire(name):
                with lock:
                    inside[0] += 1
                    peak.append(inside[0])
                time.sleep(0.01)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak) <= 3 and len(peak) == 40


def test_heartbeats_keep_a_lease_past_its_ttl(url, admin):
    name = admin.put(concurrency=1, lease_ttl=0.6)
    with ratequeue.acquire(name) as lease:
        time.sleep(2.0)  # > 3 TTLs: only heartbeats keep it
        assert not lease.lost
        assert admin.stats(name).expirations == 0
        with pytest.raises(ratequeue.AcquireTimeout):
            with ratequeue.acquire(name, timeout=0):
                pass


def test_fork_after_use(url, admin):
    """A parent that used the client forks; the children and the parent keep working."""
    import multiprocessing as mp

    name = admin.put(concurrency=4)
    with ratequeue.acquire(name):
        pass
    ctx = mp.get_context("fork")
    with ctx.Pool(3) as pool:
        ids = pool.map(_acquire_once, [(url, name)] * 6)
    assert len(set(ids)) == 6
    with ratequeue.acquire(name, timeout=5):
        pass


def _acquire_once(args):
    url, name = args
    with ratequeue.acquire(name, url=url, timeout=10) as lease:
        return lease.lease_id
