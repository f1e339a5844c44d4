"""Every error class for its cause; cancellation; a killed process's lease."""

from __future__ import annotations

import asyncio
import pickle
import signal
import subprocess
import threading
import time

import grpc
import pytest

import ratequeue
import ratequeue.aio as rq

from conftest import HERE, PYTHON, child_env, free_port, wait_for
from ratequeue._protocol import HEARTBEATS_PER_TTL, TIMEOUT_SLACK
from ratequeue._session import _TICK


def _one(name, **kw):
    with ratequeue.acquire(name, **kw):
        pass


def test_acquire_timeout(url, admin):
    name = admin.put(concurrency=1)
    with ratequeue.acquire(name):
        with pytest.raises(ratequeue.AcquireTimeout) as e:
            _one(name, timeout=0)
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        t0 = time.monotonic()
        with pytest.raises(ratequeue.AcquireTimeout):
            _one(name, timeout=0.3)
        # The server's answer at its deadline, not the client giving up
        # TIMEOUT_SLACK later.
        assert 0.3 <= time.monotonic() - t0 < 0.3 + TIMEOUT_SLACK
    assert admin.stats(name).timeouts == 2


def test_resource_not_found(url):
    with pytest.raises(ratequeue.ResourceNotFound) as e:
        _one("no-such-resource")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert "no-such-resource" in e.value.message


@pytest.mark.parametrize("kw", [{"load": -1}, {"lane": "no-such-lane"}])
def test_invalid_request(url, admin, kw):
    name = admin.put()
    with pytest.raises(ratequeue.InvalidRequest) as e:
        _one(name, **kw)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message


def test_queue_full(url, admin):
    name = admin.put(concurrency=1, max_queue=1)

    async def main():
        async with rq.acquire(name):
            waiter = asyncio.ensure_future(rq.Client().acquire_lease(name))
            await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 1)
            with pytest.raises(ratequeue.QueueFull) as e:
                async with rq.acquire(name):
                    pass
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert isinstance(e.value, ratequeue.RateQueueError)
            waiter.cancel()

    asyncio.run(main())


def test_load_that_can_never_fit(url, admin):
    name = admin.put(load_rate=10, load_burst=10)
    t0 = time.monotonic()
    with pytest.raises(ratequeue.InvalidRequest) as e:
        _one(name, load=1000)
    assert time.monotonic() - t0 < 2  # refused at once, not after waiting
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "burst" in e.value.message


def test_unavailable_when_no_server_answers():
    client = ratequeue.Client(f"127.0.0.1:{free_port()}", reconnect_timeout=0.5)  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ratequeue.Unavailable) as e:
        with client.acquire("anything"):
            pass
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert 0.5 <= time.monotonic() - t0 < 3
    # Before the timeout's slack passes, the reconnect timeout ends the wait.
    t0 = time.monotonic()
    with pytest.raises(ratequeue.Unavailable):
        with client.acquire("anything", timeout=0.2):
            pass
    assert time.monotonic() - t0 < 0.2 + TIMEOUT_SLACK
    client.close()


def test_errors_pickle_with_their_code():
    err = pickle.loads(pickle.dumps(ratequeue.QueueFull("full", code=grpc.StatusCode.RESOURCE_EXHAUSTED)))
    assert isinstance(err, ratequeue.QueueFull) and err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.message == "full"


def test_cancelling_a_waiting_acquire_frees_its_queue_place(url, admin):
    name = admin.put(concurrency=1)

    async def main():
        async with rq.acquire(name) as held:
            waiter = asyncio.ensure_future(rq.Client().acquire_lease(name))
            await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 0)
            assert admin.stats(name).cancellations == 1
            # a cancelled wait_for around an acquire withdraws it too
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(rq.Client().acquire_lease(name), 0.3)
            await asyncio.to_thread(wait_for, lambda: admin.queue_depth(name) == 0)
        # nothing was granted behind our back: the slot is free
        await asyncio.to_thread(wait_for, lambda: admin.stats(name).leases_in_flight == 0)
        assert admin.stats(name).grants == 1

    asyncio.run(main())


def test_cancel_racing_a_grant_gives_the_slot_back(url, admin):
    """Cancel right as the grant arrives, many times: no lease is ever leaked."""
    name = admin.put(concurrency=1)

    async def main():
        for i in range(30):
            lease = await rq.Client().acquire_lease(name)
            waiter = asyncio.ensure_future(rq.Client().acquire_lease(name))
            await asyncio.sleep(0.001 * (i % 5))
            await rq.Client().release(lease)
            await asyncio.sleep(0.0005 * (i % 3))
            waiter.cancel()
            try:
                got = await waiter
                await rq.Client().release(got)
            except asyncio.CancelledError:
                pass
        return True

    assert asyncio.run(main())
    wait_for(lambda: admin.stats(name).leases_in_flight == 0 and admin.queue_depth(name) == 0)


def test_killed_process_loses_its_slot_at_ttl(url, admin):
    ttl = 1.0
    name = admin.put(concurrency=1, lease_ttl=ttl)
    proc = subprocess.Popen([PYTHON, str(HERE / "fleet_worker.py"), "hold", url, name],
                            stdout=subprocess.PIPE, text=True, env=child_env(url))
    try:
        assert proc.stdout.readline().startswith("HELD")
        time.sleep(1.5 * ttl)  # past one TTL: the holder's heartbeats keep the slot
        with pytest.raises(ratequeue.AcquireTimeout):
            _one(name, timeout=0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        with ratequeue.acquire(name, timeout=10):
            waited = time.monotonic() - killed
        # The holder heartbeated every TTL/3 (on a housekeeping tick), so its
        # lease had at least 2/3 of the TTL left at the kill.
        assert ttl * (1 - 1 / HEARTBEATS_PER_TTL) - _TICK <= waited < ttl + 2.0, waited
        assert admin.stats(name).expirations == 1
    finally:
        proc.kill()
        proc.wait()
