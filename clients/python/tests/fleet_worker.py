"""Worker code run in separate (spawned) processes by the tests, and the
harness that starts a fleet of them at one instant (``conftest.run_fleet``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
import traceback
from typing import Any, Callable, List, Tuple

import ratequeue
import ratequeue.aio as rq

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def grant_ms(grant_time: dt.datetime) -> int:
    """A lease's ``grant_time`` in epoch ms, exactly (the server grants on a
    ms clock; no float rounding on the way)."""
    return (grant_time - _EPOCH) // dt.timedelta(milliseconds=1)


class Window:
    """The run's common time window, given to every worker of a fleet."""

    def __init__(self, ready, go, start_ms, seconds: float) -> None:
        self.ready, self.go, self.start_ms, self.seconds = ready, go, start_ms, seconds

    def wait(self) -> Tuple[float, float]:
        """Says this worker is ready (connect before calling it), waits until
        every worker is, then until the common start. Returns the window's
        start and end, epoch seconds."""
        self.ready.put(os.getpid())
        self.go.wait()
        start = self.start_ms.value / 1000
        time.sleep(max(0.0, start - time.time()))  # the common start is the point
        return start, start + self.seconds


def run_member(index: int, worker: Callable[..., Any], args: tuple, window: Window, results) -> None:
    """A fleet process: runs ``worker(*args, window)`` and reports its result."""
    try:
        results.put((index, True, worker(*args, window)))
    except BaseException:  # noqa: BLE001 - reported to the test
        results.put((index, False, traceback.format_exc()))
        window.ready.put(os.getpid())  # never leave the test waiting for us


def hammer(url: str, resource: str, warmup: str, use_async: bool, window: Window) -> Tuple[int, List[int]]:
    """Acquires and releases as fast as granted during the window.

    Returns (pid, the server grant times in epoch ms).
    """
    grants: List[int] = []
    client = ratequeue.Client(url)
    with client.acquire(warmup, load=0):  # connected before the start
        pass
    _, end = window.wait()

    if use_async:
        async def main() -> None:
            aclient = rq.Client(url)  # same configuration: the same session

            async def one_flow() -> None:
                while time.time() < end:
                    try:
                        async with aclient.acquire(resource, timeout=max(end - time.time(), 0)) as lease:
                            grants.append(grant_ms(lease.grant_time))
                    except ratequeue.AcquireTimeout:
                        return
            await asyncio.gather(*(one_flow() for _ in range(2)))
        asyncio.run(main())
    else:
        while time.time() < end:
            try:
                with client.acquire(resource, timeout=max(end - time.time(), 0)) as lease:
                    grants.append(grant_ms(lease.grant_time))
            except ratequeue.AcquireTimeout:
                break
    return os.getpid(), grants


def hold_forever(url: str, resource: str) -> None:
    """Acquires, says so on stdout, and holds the lease (heartbeating) until killed."""
    with ratequeue.acquire(resource, url=url) as lease:
        print("HELD", lease.lease_id, flush=True)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold_forever(sys.argv[2], sys.argv[3])
