"""Every error class for its cause; cancellation; a killed process's lease."""

from __future__ import annotations

import asyncio
import pickle
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

import ratequeue
import ratequeue.aio as rq

from conftest import HERE, PYTHON, child_env


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
        assert 0.2 < time.monotonic() - t0 < 3
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
            assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth(name) == 1)
            with pytest.raises(ratequeue.QueueFull) as e:
                async with rq.acquire(name):
                    pass
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert isinstance(e.value, ratequeue.RateQueueError)
            waiter.cancel()

    asyncio.run(main())


def test_load_that_can_never_fit(url, admin):
    name = admin.put(load_rate=10, load_burst=10)
    with pytest.raises(ratequeue.RateQueueError) as e:
        _one(name, load=1000)
    assert type(e.value) in (ratequeue.QueueFull, ratequeue.InvalidRequest)


def test_unavailable_when_no_server_answers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ratequeue.Client(f"127.0.0.1:{port}", reconnect_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(ratequeue.Unavailable) as e:
        with client.acquire("anything"):
            pass
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - t0 < 5
    # a timeout shorter than the reconnect timeout wins
    with pytest.raises(ratequeue.AcquireTimeout):
        with client.acquire("anything", timeout=0.2):
            pass
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
            assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth(name) == 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth(name) == 0)
            assert admin.stats(name).cancellations == 1
            # a cancelled wait_for around an acquire withdraws it too
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(rq.Client().acquire_lease(name), 0.3)
            assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth(name) == 0)
        # nothing was granted behind our back: the slot is free
        assert await asyncio.to_thread(admin.wait_for, lambda: admin.stats(name).leases_in_flight == 0)
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
    assert admin.wait_for(lambda: admin.stats(name).leases_in_flight == 0 and admin.queue_depth(name) == 0)


def test_killed_process_loses_its_slot_at_ttl(url, admin):
    name = admin.put(concurrency=1, lease_ttl=1.0)
    proc = subprocess.Popen([PYTHON, str(HERE / "fleet_worker.py"), "hold", url, name],
                            stdout=subprocess.PIPE, text=True, env=child_env(url))
    try:
        assert proc.stdout.readline().startswith("HELD")
        time.sleep(1.5)  # past one TTL: the holder's heartbeats keep the slot
        with pytest.raises(ratequeue.AcquireTimeout):
            _one(name, timeout=0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        with ratequeue.acquire(name, timeout=10):
            waited = time.monotonic() - killed
        assert 0.3 < waited < 3.0, waited
        assert admin.stats(name).expirations == 1
    finally:
        proc.kill()
        proc.wait()
