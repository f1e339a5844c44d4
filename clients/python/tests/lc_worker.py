"""LangChain worker functions run in spawned processes by test_langchain.py."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any, List, Tuple

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import ratequeue
import ratequeue.aio as rq
from ratequeue.langchain import RateQueueRateLimiter, with_ratequeue

from fleet_worker import Window, grant_ms

USAGE = {"input_tokens": 60, "output_tokens": 40, "total_tokens": 100}


class RecordingFakeChatModel(GenericFakeChatModel):
    """A fake chat model that records when each call ran (epoch seconds)."""

    calls: List[Tuple[float, float]] = []
    sleep: float = 0.0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any):
        start = time.time()
        if self.sleep:
            time.sleep(self.sleep)
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        self.calls.append((start, time.time()))
        return result


def _replies():
    return (AIMessage(content=f"answer {i}", usage_metadata=dict(USAGE)) for i in itertools.count())


class _Recording:
    """Records the server grant time of every lease it acquires."""

    grants: List[int]


class RecordingClient(ratequeue.Client, _Recording):
    def acquire_lease(self, *args: Any, **kwargs: Any) -> ratequeue.Lease:
        lease = super().acquire_lease(*args, **kwargs)
        self.grants.append(grant_ms(lease.grant_time))
        return lease


class RecordingAsyncClient(rq.Client, _Recording):
    async def acquire_lease(self, *args: Any, **kwargs: Any) -> rq.Lease:
        lease = await super().acquire_lease(*args, **kwargs)
        self.grants.append(grant_ms(lease.grant_time))
        return lease


def limiter_calls(url: str, resource: str, warmup: str, use_async: bool, window: Window) -> Tuple[int, List[int]]:
    """Model calls through RateQueueRateLimiter during the window. Returns
    (pid, the server grant times of the limiter's leases in epoch ms)."""
    client = (RecordingAsyncClient if use_async else RecordingClient)(url)
    client.grants = []
    model = RecordingFakeChatModel(messages=_replies(), calls=[],
                                   rate_limiter=RateQueueRateLimiter(resource, client=client))
    with ratequeue.Client(url).acquire(warmup, load=0):  # connected before the start
        pass
    _, end = window.wait()
    if use_async:
        async def main():
            while time.time() < end:
                await model.ainvoke("hello")
        asyncio.run(main())
    else:
        while time.time() < end:
            model.invoke("hello")
    assert len(client.grants) == len(model.calls), "one lease per model call"
    return os.getpid(), client.grants


def wrapper_calls(url: str, resource: str, calls: int, use_async: bool) -> List[Tuple[float, float]]:
    model = RecordingFakeChatModel(messages=_replies(), calls=[], sleep=0.05)
    wrapped = with_ratequeue(model, resource, url=url, estimate=lambda _input: 100)
    if use_async:
        async def main():
            await asyncio.gather(*(wrapped.ainvoke("hello") for _ in range(calls)))
        asyncio.run(main())
    else:
        wrapped.batch(["hello"] * calls, config={"max_concurrency": 3})
    return list(model.calls)
