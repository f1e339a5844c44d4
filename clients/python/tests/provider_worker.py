"""A fleet process of the provider feedback tests (run by
``conftest.run_fleet``): the real ``openai`` or ``anthropic`` SDK, wrapped by
``ratequeue.openai.wrap`` / ``ratequeue.anthropic.wrap``, calling the fake
provider as fast as the resource grants, JSON and streamed calls in turn."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Dict, List

import anthropic
import openai

import ratequeue
import ratequeue.anthropic
import ratequeue.openai

PROMPT = [{"role": "user", "content": "Tell me something short about rate limits."}]


def _sdk_client(style: str, use_async: bool, provider_url: str, resource: str, url: str, feedback: bool) -> Any:
    if style == "openai":
        cls = openai.AsyncOpenAI if use_async else openai.OpenAI
        return ratequeue.openai.wrap(cls(base_url=provider_url + "/v1", api_key="sk-fleet"), resource, url=url,
                                     feedback=feedback)
    cls = anthropic.AsyncAnthropic if use_async else anthropic.Anthropic
    return ratequeue.anthropic.wrap(cls(base_url=provider_url, api_key="sk-fleet"), resource, url=url,
                                    feedback=feedback)


def _call(client: Any, style: str, streamed: bool) -> None:
    if style == "openai":
        if streamed:
            for _ in client.chat.completions.create(model="gpt-fleet", messages=PROMPT, stream=True,
                                                    stream_options={"include_usage": True}):
                pass
        else:
            client.chat.completions.create(model="gpt-fleet", messages=PROMPT)
    elif streamed:
        for _ in client.messages.create(model="claude-fleet", max_tokens=64, messages=PROMPT, stream=True):
            pass
    else:
        client.messages.create(model="claude-fleet", max_tokens=64, messages=PROMPT)


async def _acall(client: Any, style: str, streamed: bool) -> None:
    if style == "openai":
        if streamed:
            async for _ in await client.chat.completions.create(model="gpt-fleet", messages=PROMPT, stream=True,
                                                                stream_options={"include_usage": True}):
                pass
        else:
            await client.chat.completions.create(model="gpt-fleet", messages=PROMPT)
    elif streamed:
        async for _ in await client.messages.create(model="claude-fleet", max_tokens=64, messages=PROMPT,
                                                    stream=True):
            pass
    else:
        await client.messages.create(model="claude-fleet", max_tokens=64, messages=PROMPT)


def provider_calls(url: str, resource: str, warmup: str, provider_url: str, style: str, use_async: bool,
                   feedback: bool, flows: int, window) -> Dict[str, Any]:
    """``flows`` concurrent callers (threads, or tasks with ``use_async``)
    each making one call after the other until the window ends (the SDK's
    own retries included). Returns the tasks started, finished and failed."""
    with ratequeue.Client(url).acquire(warmup, load=0):  # connected before the start
        pass
    client = _sdk_client(style, use_async, provider_url, resource, url, feedback)
    out: Dict[str, Any] = {"pid": os.getpid(), "started": 0, "finished": 0, "failed": []}
    lock = threading.Lock()
    _, end = window.wait()

    def record(error: BaseException = None) -> None:
        with lock:
            if error is None:
                out["finished"] += 1
            else:
                out["failed"].append(f"{type(error).__name__}: {error}")

    def start() -> int:
        with lock:
            out["started"] += 1
            return out["started"]

    if use_async:
        async def flow() -> None:
            while time.time() < end:
                n = start()
                try:
                    await _acall(client, style, streamed=n % 2 == 0)
                    record()
                except Exception as e:  # noqa: BLE001 - counted: the test says which
                    record(e)

        async def main() -> None:
            await asyncio.gather(*(flow() for _ in range(flows)))

        asyncio.run(main())
    else:
        def sync_flow() -> None:
            while time.time() < end:
                n = start()
                try:
                    _call(client, style, streamed=n % 2 == 0)
                    record()
                except Exception as e:  # noqa: BLE001 - counted: the test says which
                    record(e)

        threads: List[threading.Thread] = [threading.Thread(target=sync_flow) for _ in range(flows)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return out
