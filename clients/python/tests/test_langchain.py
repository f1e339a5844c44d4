"""ratequeue.langchain with LangChain's fake chat models, across processes."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import subprocess

import pytest
# The test command installs the langchain extra: without it, these tests fail.
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableGenerator

import ratequeue
from ratequeue.langchain import RateQueueRateLimiter, estimate_tokens, with_ratequeue

from conftest import PY_ROOT, PYTHON, child_env, gcra_violations, in_window, run_fleet, wait_for
import lc_worker


def test_rate_limiter_shares_a_request_budget_across_processes(url, admin):
    rate, burst, seconds = 20, 2, 2.5
    name = admin.put(rate=rate, burst=burst)
    warmup = admin.put()
    start_ms, results = run_fleet(lc_worker.limiter_calls, [(url, name, warmup, i % 2 == 1) for i in range(4)],
                                  seconds=seconds)
    grants = [t for _, ts in results for t in ts]
    assert all(ts for _, ts in results), "every process made calls"
    assert gcra_violations(grants, amount=rate, period_ms=1000, burst=burst) == []
    allowed = burst + seconds * rate
    used = in_window(grants, start_ms, seconds)
    assert 0.9 * allowed <= used <= allowed, (used, allowed)


def test_rate_limiter_non_blocking(url, admin):
    name = admin.put(rate=1, burst=1, period=60)
    limiter = RateQueueRateLimiter(name)
    assert limiter.acquire(blocking=False) is True
    assert limiter.acquire(blocking=False) is False
    assert asyncio.run(limiter.aacquire(blocking=False)) is False
    with pytest.raises(ratequeue.AcquireTimeout):
        RateQueueRateLimiter(name, timeout=0.2).acquire()


def test_wrapper_holds_token_budget_and_concurrency_across_processes(url, admin):
    # 100 tokens per call; 1000 tokens/s with a burst of 300; at most 2 calls in flight.
    name = admin.put(load_rate=1000, load_burst=300, concurrency=2)
    with mp.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(lc_worker.wrapper_calls, [(url, name, 8, i == 1) for i in range(3)])
    intervals = [iv for r in results for iv in r]
    assert len(intervals) == 24
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    in_flight = peak = 0
    for _, delta in events:
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak <= 2
    stats = admin.stats(name)
    assert stats.grants == 24 and stats.leases_in_flight == 0
    assert stats.lanes[0].load_granted == pytest.approx(2400)


def test_wrapper_reconciles_with_real_usage(url, admin):
    # A burst of 1000 tokens refilling at 100 an hour (0.03 a second, so
    # what is left is known to within 1 for half a minute): an estimate of
    # 500 answered with 100 real tokens leaves 900.
    name = admin.put(load_rate=100 / 3600, load_burst=1000, period=3600)

    def available():
        return admin.stats(name).limits[0].available

    usage = {"input_tokens": 70, "output_tokens": 30, "total_tokens": 100}
    model = GenericFakeChatModel(messages=iter([AIMessage(content="ok", usage_metadata=usage)] * 4))
    wrapped = with_ratequeue(model, name, estimate=lambda _: 500)
    assert wrapped.invoke("hi").content == "ok"
    assert 900 <= available() < 901
    assert asyncio.run(wrapped.ainvoke("hi")).content == "ok"
    assert 800 <= available() < 801
    # streaming: usage comes in the chunks (GenericFakeChatModel streams none)
    def gen(inputs):
        for _ in inputs:
            yield AIMessageChunk(content="o")
            yield AIMessageChunk(content="k", usage_metadata=usage)

    async def agen(inputs):
        async for _ in inputs:
            yield AIMessageChunk(content="o")
            yield AIMessageChunk(content="k", usage_metadata=usage)

    wrapped = with_ratequeue(RunnableGenerator(gen, agen), name, estimate=lambda _: 500)
    chunks = list(wrapped.stream("hi"))
    assert "".join(c.content for c in chunks) == "ok"
    assert admin.stats(name).leases_in_flight == 0
    assert 700 <= available() < 701

    async def astream():
        return [c async for c in wrapped.astream("hi")]

    assert asyncio.run(astream())
    wait_for(lambda: admin.stats(name).leases_in_flight == 0)
    assert 600 <= available() < 601


def test_wrapper_reports_a_429_and_observes_response_headers(url, admin):
    import httpx
    from langchain_core.runnables import RunnableLambda

    name = admin.put(rate=10, burst=100, period=60, load_rate=10000, load_burst=10000)

    def refused(_):
        req = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
        httpx.Response(429, headers={"retry-after": "0.3"}, request=req).raise_for_status()

    with pytest.raises(httpx.HTTPStatusError):
        with_ratequeue(RunnableLambda(refused), name, estimate=lambda _: 500).invoke("hi")
    stats = admin.stats(name)
    assert stats.throttles == 1 and stats.HasField("paused_until")
    assert stats.limits[1].used_last_period == 0  # the refused call's estimate was refunded

    # ChatOpenAI(include_response_headers=True) puts them in response_metadata.
    answer = AIMessage(content="ok", response_metadata={"headers": {"x-ratelimit-remaining-requests": "1"}})
    model = GenericFakeChatModel(messages=iter([answer]))
    assert with_ratequeue(model, name).invoke("hi").content == "ok"
    assert admin.stats(name).limits[0].available < 1.5


def test_estimate_tokens():
    assert estimate_tokens("a" * 400) == 101
    assert estimate_tokens([("system", "a" * 40), ("human", "b" * 40)], output_tokens=10) > 20
    assert estimate_tokens([AIMessageChunk(content="x" * 8)]) >= 2


def test_langchain_example_runs(url, admin):
    name = admin.put(rate=50, burst=5, load_rate=10000, concurrency=4)
    out = subprocess.run([PYTHON, str(PY_ROOT / "examples" / "langchain_chain.py")],
                         env=child_env(url, RATEQUEUE_RESOURCE=name), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().split("\n")
    assert sorted(lines[:3]) == ["summary 0", "summary 1", "summary 2"] and lines[3] == "summary 0"
    assert admin.stats(name).grants == 4
