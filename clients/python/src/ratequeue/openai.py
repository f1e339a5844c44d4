"""The OpenAI SDK behind a ratequeue resource (``pip install ratequeue[openai]``).

    from openai import OpenAI
    import ratequeue.openai

    client = ratequeue.openai.wrap(OpenAI(), "openai-gpt4")

Every HTTP request the returned client sends, its own retries included, waits
for a lease on the resource; a 429 pauses the whole fleet until the
provider's ``retry-after``, its ``x-ratelimit-*`` headers lower the budget,
and the tokens really used (``usage``; for a stream, ask for it with
``stream_options={"include_usage": True}``) reconcile the estimate. See
:mod:`ratequeue.httpx` for the details.
"""

from __future__ import annotations

from typing import Optional, TypeVar

import openai

from .httpx import Estimate, Key, _wrap_sdk

__all__ = ["wrap"]

C = TypeVar("C", openai.OpenAI, openai.AsyncOpenAI)


def wrap(client: C, resource: str, *, estimate: Optional[Estimate] = None, priority: int = 10,
         lane: Optional[str] = None, key: Optional[Key] = None, api_key: Optional[str] = None,
         url: Optional[str] = None, feedback: bool = True) -> C:
    """A copy of an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` client
    (``client.with_options``) whose every request holds a lease on
    ``resource``.

    ``estimate`` replaces the default token estimate (the prompt's
    characters / 4 plus ``max_tokens`` or ``max_completion_tokens``): it gets
    the request's JSON body and returns the load, for example counted with
    ``tiktoken``. ``priority`` and ``lane`` are the acquire's. ``key``
    gives each request its own quota inside the resource (a keyed child,
    see :meth:`ratequeue.aio.Client.acquire`): a string, or a function of
    the JSON body returning the key or None, e.g. ``key=lambda body:
    body.get("user")``, or one reading a ``contextvars.ContextVar`` your
    application sets per customer. ``api_key`` and
    ``url`` the ratequeue server's (default: ``RATEQUEUE_API_KEY``,
    ``RATEQUEUE_URL``). ``feedback=False`` tells the server nothing of the
    provider's answers (acquire and reconcile only).

    The copy has its own HTTP client, with the SDK's connection limits: for
    a proxy or custom TLS, build it yourself, ``client.with_options(
    http_client=openai.DefaultHttpxClient(transport=RateQueueTransport(
    resource, transport=<your base transport>)))``.
    """
    return _wrap_sdk(openai, client, (openai.OpenAI, openai.AsyncOpenAI), resource, estimate=estimate,
                     priority=priority, lane=lane, key=key, api_key=api_key, url=url, feedback=feedback)
