"""LangChain integration (``pip install ratequeue[langchain]``).

Two pieces:

- :class:`RateQueueRateLimiter`, a ``langchain_core`` rate limiter for a
  chat model's ``rate_limiter=`` argument. It shares a *request* budget
  across every process.
- :func:`with_ratequeue` / :class:`RateQueueRunnable`, a ``Runnable`` that
  wraps a chat model and holds each call until granted: it acquires the
  estimated tokens before the call, holds the lease during it (so the
  resource's concurrency cap applies) and releases it with the real token
  count from the answer's ``usage_metadata``, and with what the provider
  said: a 429 the model raises (``openai.RateLimitError``,
  ``anthropic.RateLimitError``) pauses the resource fleet-wide, and the
  rate-limit headers in the answer's ``response_metadata["headers"]``
  (``ChatOpenAI(include_response_headers=True)``) lower its budget. Use it
  for token budgets and concurrency.

Use one or the other on a resource, not both, or each call counts twice.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterator, Optional, Union

from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.runnables import Runnable, RunnableConfig

from ._client import AsyncClient, Client, clients_for
from ._errors import AcquireTimeout

__all__ = ["RateQueueRateLimiter", "RateQueueRunnable", "estimate_tokens", "with_ratequeue"]


class RateQueueRateLimiter(BaseRateLimiter):
    """A LangChain rate limiter backed by a shared ratequeue resource.

    ``ChatOpenAI(rate_limiter=RateQueueRateLimiter("openai-gpt4"))`` makes
    every process share one request budget.

    It covers request limits only. LangChain calls a rate limiter once per
    model request, with no arguments (so it cannot know the tokens) and no
    "done" hook (so it cannot hold a slot during the call): each ``acquire``
    takes a lease of ``load`` units and releases it at once. For token
    budgets and concurrency caps wrap the model with :func:`with_ratequeue`
    instead.

    ``acquire(blocking=True)`` waits for a grant (up to ``timeout`` seconds,
    then raises :class:`ratequeue.AcquireTimeout`); ``blocking=False`` makes
    one attempt and returns False at once when no slot is free. ``key``
    charges a keyed child as well (one limiter per key; see
    :meth:`ratequeue.aio.Client.acquire`).
    """

    def __init__(self, resource: str, *, load: float = 1, priority: int = 10, lane: Optional[str] = None,
                 timeout: Optional[float] = None, key: Optional[str] = None, url: Optional[str] = None,
                 api_key: Optional[str] = None, client: Optional[Union[Client, AsyncClient]] = None) -> None:
        self.resource = resource
        self.load = load
        self.priority = priority
        self.lane = lane
        self.timeout = timeout
        self.key = key
        self._sync, self._async = clients_for(url, api_key, client)

    def _kw(self, blocking: bool) -> dict:
        return dict(load=self.load, priority=self.priority, lane=self.lane,
                    timeout=self.timeout if blocking else 0, key=self.key)

    def acquire(self, *, blocking: bool = True) -> bool:
        try:
            lease = self._sync.acquire_lease(self.resource, **self._kw(blocking))
        except AcquireTimeout:
            if not blocking:
                return False
            raise
        lease.release()
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        try:
            lease = await self._async.acquire_lease(self.resource, **self._kw(blocking))
        except AcquireTimeout:
            if not blocking:
                return False
            raise
        await lease.release()
        return True


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if hasattr(value, "to_messages"):  # PromptValue
        return _text_of(value.to_messages())
    if hasattr(value, "content"):  # BaseMessage
        return _text_of(value.content)
    if isinstance(value, dict):
        return _text_of(value.get("content", value.get("text", "")))
    if isinstance(value, (list, tuple)):
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return _text_of(value[1])  # ("human", "text")
        return "\n".join(_text_of(v) for v in value)
    return str(value)


def estimate_tokens(input: Any, *, output_tokens: int = 0) -> float:
    """A rough token estimate of a chat model input: about 4 characters a
    token, plus ``output_tokens`` for the expected answer."""
    return max(1, len(_text_of(input)) // 4 + 1) + output_tokens


def _settle(lease: Any, message: Any, *, chunk: bool = False) -> None:
    """Puts what an answer (or one streamed chunk) says on the lease: its
    tokens (chunks add up) and its response headers. A model's exception is
    recorded by the acquire's own exit (a 429 pauses the resource)."""
    used = _usage_total(message)
    if used is not None:
        lease.actual_load = (lease.actual_load or 0) + used if chunk else used
    metadata = getattr(message, "response_metadata", None)
    headers = metadata.get("headers") if isinstance(metadata, dict) else None
    if headers:
        lease.observe(headers)


def _usage_total(message: Any) -> Optional[float]:
    usage = getattr(message, "usage_metadata", None)
    if usage:
        total = usage.get("total_tokens")
        if total is None:
            total = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        return float(total)
    return None


class RateQueueRunnable(Runnable):
    """Wraps a chat model (or any Runnable returning a message): every call
    holds a lease on ``resource`` for its duration.

    Before the call it acquires ``estimate(input)`` load units (by default
    :func:`estimate_tokens` plus the model's ``max_tokens`` when it has one)
    and waits until granted; after it, the lease is released with the real
    ``usage_metadata["total_tokens"]`` of the answer (summed over chunks when
    streaming; ask the provider to report usage in the stream, e.g.
    ``ChatOpenAI(stream_usage=True)``, or the estimate stands), so the resource's token limits are charged what was really
    used. A provider's 429 the model raises is reported with the release
    (the whole resource pauses, fleet-wide, and the call's load is
    refunded), then raised on; response headers in ``response_metadata``
    (``ChatOpenAI(include_response_headers=True)``) are observed. The
    model's own retries happen inside the one lease, unseen: for them to
    wait for the fleet-wide pause too, give the model an HTTP client on
    :class:`ratequeue.httpx.RateQueueTransport` instead of wrapping it (e.g.
    ``ChatOpenAI(http_client=openai.DefaultHttpxClient(transport=RateQueueTransport("openai-gpt4")))``).
    The lease is held during the call, so the resource's concurrency
    cap bounds calls in flight across all processes. ``batch`` runs
    ``invoke`` per input, each with its own lease.

    ``key`` charges each call to a keyed child as well (see
    :meth:`ratequeue.aio.Client.acquire`): a string, or a function of the
    input returning the key or None.
    """

    def __init__(self, bound: Runnable, resource: str, *, estimate: Optional[Callable[[Any], float]] = None,
                 priority: int = 10, lane: Optional[str] = None, timeout: Optional[float] = None,
                 key: Union[str, Callable[[Any], Optional[str]], None] = None,
                 url: Optional[str] = None, api_key: Optional[str] = None,
                 client: Optional[Union[Client, AsyncClient]] = None) -> None:
        self.bound = bound
        self.resource = resource
        self.estimate = estimate or self._default_estimate
        self.priority = priority
        self.lane = lane
        self.timeout = timeout
        self.key = key
        self._sync, self._async = clients_for(url, api_key, client)

    def _default_estimate(self, input: Any) -> float:
        max_tokens = getattr(self.bound, "max_tokens", None)
        return estimate_tokens(input, output_tokens=max_tokens if isinstance(max_tokens, int) else 0)

    def _kw(self, input: Any) -> dict:
        return dict(load=self.estimate(input), priority=self.priority, lane=self.lane, timeout=self.timeout,
                    key=self.key(input) if callable(self.key) else self.key)

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.bound.OutputType

    def get_name(self, suffix: Optional[str] = None, *, name: Optional[str] = None) -> str:
        return name or f"RateQueue[{self.bound.get_name()}]" + (suffix or "")

    def invoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
        with self._sync.acquire(self.resource, **self._kw(input)) as lease:
            out = self.bound.invoke(input, config, **kwargs)
            _settle(lease, out)
        return out

    async def ainvoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
        async with self._async.acquire(self.resource, **self._kw(input)) as lease:
            out = await self.bound.ainvoke(input, config, **kwargs)
            _settle(lease, out)
        return out

    def stream(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Iterator[Any]:
        with self._sync.acquire(self.resource, **self._kw(input)) as lease:
            for chunk in self.bound.stream(input, config, **kwargs):
                _settle(lease, chunk, chunk=True)
                yield chunk

    async def astream(self, input: Any, config: Optional[RunnableConfig] = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        async with self._async.acquire(self.resource, **self._kw(input)) as lease:
            async for chunk in self.bound.astream(input, config, **kwargs):
                _settle(lease, chunk, chunk=True)
                yield chunk


def with_ratequeue(model: Runnable, resource: str, **options: Any) -> RateQueueRunnable:
    """``with_ratequeue(ChatOpenAI(...), "openai-gpt4")``: see :class:`RateQueueRunnable`.

    Apply it last (after ``bind_tools`` and the like); it works anywhere in a
    chain: ``prompt | with_ratequeue(model, "openai-gpt4") | parser``.
    """
    return RateQueueRunnable(model, resource, **options)
