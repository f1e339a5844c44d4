"""The headline of provider feedback: a fleet of separate processes using
the real ``openai`` (then ``anthropic``) package through the one-line
wrapper, against a fake provider whose own limit is half the resource's
configured one. With feedback the 429s stop after the first second and the
fleet runs at the provider's real limit; the same fleet with
``feedback=False`` (the control) keeps collecting 429s."""

from __future__ import annotations

import time
from typing import Dict, List

import pytest

from conftest import run_fleet
import provider_worker

PROVIDER_RPM = 1200  # the provider's real limit: 20 a second, a burst of one second's worth
RESOURCE_RPM = 2400  # what the resource was configured with: twice too much
SECONDS = 8.0  # each run; the first second is the warm-up
PROCESSES, FLOWS = 4, 4


def _run(admin, provider, url: str, style: str, feedback: bool) -> Dict[str, float]:
    name = admin.put(rate=RESOURCE_RPM / 60, burst=4, period=60)
    warmup = admin.put()
    provider.reset()
    reset_ms = int(time.time() * 1000)
    args = [(url, name, warmup, provider.url, style, i % 2 == 1, feedback, FLOWS) for i in range(PROCESSES)]
    start_ms, results = run_fleet(provider_worker.provider_calls, args, seconds=SECONDS)
    log = provider.stats()["log"]
    # The provider's log is in ms since its reset; the window starts later.
    first = start_ms - reset_ms + 1000
    last = start_ms - reset_ms + int(SECONDS * 1000)
    steady = [entry for entry in log if first <= entry["t"] <= last]
    refused = sum(entry["status"] == 429 for entry in steady)
    ok = sum(entry["status"] == 200 for entry in steady)
    failed: List[str] = [f for r in results for f in r["failed"]]
    return {
        "answers": len(steady),
        "refused": refused / max(len(steady), 1),
        "ok_share_of_limit": ok / (PROVIDER_RPM / 60 * (SECONDS - 1)),
        "started": sum(r["started"] for r in results),
        "finished": sum(r["finished"] for r in results),
        "failed": failed,
    }


@pytest.mark.parametrize("style", ["openai", "anthropic"])
def test_a_fleet_listens_to_the_provider(url, admin, fake_provider, style):
    provider = fake_provider("--rpm", str(PROVIDER_RPM), "--burst-seconds", "1", "--latency-ms", "20",
                             "--style", style)
    told = _run(admin, provider, url, style, feedback=True)
    control = _run(admin, provider, url, style, feedback=False)
    for label, run in (("feedback", told), ("control (feedback=False)", control)):
        print(f"{style} {label}: {run['answers']} answers after the first second, "
              f"{100 * run['refused']:.1f} % of them 429, successes at {100 * run['ok_share_of_limit']:.0f} % "
              f"of the provider's limit; {run['finished']}/{run['started']} tasks finished")
    # With feedback: the 429s stop, the provider's limit is used, no call is lost.
    assert told["refused"] <= 0.02, told
    assert told["ok_share_of_limit"] >= 0.9, told
    assert told["failed"] == [] and told["finished"] == told["started"] > 0, told
    # Without it the same fleet keeps hitting the provider's limit.
    assert control["refused"] >= max(0.2, 10 * told["refused"]), control
