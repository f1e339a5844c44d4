"""Worker functions run in separate (spawned) processes by the tests."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import List, Tuple

import ratequeue
import ratequeue.aio as rq


def hammer(url: str, resource: str, seconds: float, use_async: bool) -> Tuple[int, List[float], List[float]]:
    """Acquires and releases as fast as granted for ``seconds``.

    Returns (pid, server grant times, client receive times), as epoch seconds.
    """
    server_times: List[float] = []
    client_times: List[float] = []
    stop = time.time() + seconds

    def record(lease: ratequeue.Lease) -> None:
        client_times.append(time.time())
        server_times.append(lease.grant_time.timestamp())

    if use_async:
        async def main() -> None:
            async def one_flow() -> None:
                while time.time() < stop:
                    try:
                        async with rq.acquire(resource, url=url, timeout=max(stop - time.time(), 0)) as lease:
                            record(lease)
                    except ratequeue.AcquireTimeout:
                        return
            await asyncio.gather(*(one_flow() for _ in range(2)))
        asyncio.run(main())
    else:
        while time.time() < stop:
            try:
                with ratequeue.acquire(resource, url=url, timeout=max(stop - time.time(), 0)) as lease:
                    record(lease)
            except ratequeue.AcquireTimeout:
                break
    return os.getpid(), server_times, client_times


def hold_forever(url: str, resource: str) -> None:
    """Acquires, says so on stdout, and holds the lease (heartbeating) until killed."""
    with ratequeue.acquire(resource, url=url) as lease:
        print("HELD", lease.lease_id, flush=True)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold_forever(sys.argv[2], sys.argv[3])
