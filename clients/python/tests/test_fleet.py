"""Eight processes share one resource and together stay within its limit."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time

import ratequeue

from conftest import HERE, PY_ROOT, child_env, gcra_violations
import fleet_worker

RATE, BURST, SECONDS = 40.0, 5.0, 3.0


def test_eight_processes_share_one_budget(url, admin):
    name = admin.put(rate=RATE, burst=BURST)
    ctx = mp.get_context("spawn")
    with ctx.Pool(8) as pool:
        # half the processes use the sync API, half the async one
        results = pool.starmap(fleet_worker.hammer, [(url, name, SECONDS, i % 2 == 1) for i in range(8)])
    server_times = [t for _, st, _ in results for t in st]
    client_times = [t for _, _, ct in results for t in ct]
    assert len({pid for pid, _, _ in results}) == 8
    assert all(len(st) > 0 for _, st, _ in results), "every process got grants"

    # Within the limit: exactly by the server's grant times (ms resolution),
    # and as observed by the workers, with a tolerance for delivery jitter.
    assert gcra_violations(server_times, rate=RATE, burst=BURST, slack=0.002) == []
    assert gcra_violations(client_times, rate=RATE, burst=BURST, slack=0.05, extra=1) == []

    # Using the limit: at least 90% of what it allowed over the run.
    span = max(server_times) - min(server_times)
    allowed = BURST + span * RATE
    assert len(server_times) >= 0.9 * allowed, (len(server_times), allowed)
    assert admin.stats(name).grants == len(server_times)
