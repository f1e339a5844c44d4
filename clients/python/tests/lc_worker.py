"""LangChain worker functions run in spawned processes by test_langchain.py."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any, List, Tuple

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from ratequeue.langchain import RateQueueRateLimiter, with_ratequeue

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


def limiter_calls(url: str, resource: str, seconds: float, use_async: bool) -> Tuple[int, List[float]]:
    model = RecordingFakeChatModel(messages=_replies(), calls=[],
                                   rate_limiter=RateQueueRateLimiter(resource, url=url))
    stop = time.time() + seconds
    if use_async:
        async def main():
            while time.time() < stop:
                await model.ainvoke("hello")
        asyncio.run(main())
    else:
        while time.time() < stop:
            model.invoke("hello")
    return os.getpid(), [start for start, _ in model.calls]


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
