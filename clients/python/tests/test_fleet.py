"""Eight processes share one resource and together stay within its limit,
and use it."""

from __future__ import annotations

from conftest import gcra_violations, in_window, run_fleet
import fleet_worker

RATE, BURST, SECONDS = 40, 5, 3.0


def test_eight_processes_share_one_budget(url, admin):
    name = admin.put(rate=RATE, burst=BURST)
    warmup = admin.put()
    # Half the processes use the sync API, half the async one.
    start_ms, results = run_fleet(fleet_worker.hammer, [(url, name, warmup, i % 2 == 1) for i in range(8)],
                                  seconds=SECONDS)
    grants = [t for _, ts in results for t in ts]
    assert len({pid for pid, _ in results}) == 8
    assert all(ts for _, ts in results), "every process got grants"

    # Within the limit: exactly, on the server's grant times.
    assert gcra_violations(grants, amount=RATE, period_ms=1000, burst=BURST) == []
    assert admin.stats(name).grants == len(grants)

    # Using the limit: the grants inside the run's window, against what the
    # limit allows in it.
    allowed = BURST + SECONDS * RATE
    used = in_window(grants, start_ms, SECONDS)
    print(f"fleet: {used} grants of {allowed} allowed in {SECONDS}s ({100 * used / allowed:.1f}%)")
    assert 0.9 * allowed <= used <= allowed
