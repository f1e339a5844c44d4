"""The public clients: async and sync facades over the process's session.

Both drive the one implementation (``_session.Session``) on the process's
ratequeue loop (``_runtime``); a sync and an async client with the same
configuration share one stream.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import logging
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from . import _runtime
from ._config import ClientConfig
from ._errors import RateQueueError
from ._session import LEASE_ATTRIBUTES, BaseLease, Session
from .feedback import ProviderFeedback, _from_exception

log = logging.getLogger("ratequeue")

F = TypeVar("F", bound=Callable[..., Any])
Load = Union[float, int]
Feedback = Union[ProviderFeedback, Mapping[str, Any]]


class Lease(BaseLease):
    """A granted slot on a resource, from the sync API: ``lease.release()``
    blocks. The ``with`` form releases it by itself."""

    def release(self, *, actual_load: Optional[float] = None) -> Optional[str]:
        """Releases the lease, blocking until the server answers, and
        reconciles its load with ``actual_load`` (else ``self.actual_load``).

        Returns the server's outcome (``"RELEASED"``, ``"ALREADY_RELEASED"``,
        ``"EXPIRED"``, ``"UNKNOWN"``), or None when no stream is up: the
        release is then sent after reconnecting, until the lease's TTL has
        passed. Releasing twice is harmless (None).
        """
        return _release_sync(self, actual_load)


class AsyncLease(BaseLease):
    """A granted slot on a resource, from the async API
    (``ratequeue.aio.Lease``): ``await lease.release()``. The ``async with``
    form releases it by itself."""

    async def release(self, *, actual_load: Optional[float] = None) -> Optional[str]:
        """Releases the lease; see :meth:`ratequeue.Lease.release`. A
        cancelled caller still releases."""
        return await _release_async(self, actual_load)


Lease.__doc__ += LEASE_ATTRIBUTES
AsyncLease.__doc__ += LEASE_ATTRIBUTES


def _session_of(lease: BaseLease) -> Session:
    if lease._config is None:
        raise TypeError("this lease was not granted by a ratequeue client")
    # Looked up per call: after a fork the child gets its own session.
    return _runtime.session_for(lease._config)


def _release_sync(lease: BaseLease, actual_load: Optional[float]) -> Optional[str]:
    _check_thread()
    session = _session_of(lease)
    return _runtime.run_sync(lambda: session.release(lease, actual_load))


async def _release_async(lease: BaseLease, actual_load: Optional[float]) -> Optional[str]:
    session = _session_of(lease)
    # A cancelled caller still releases.
    return await _runtime.run_async(lambda: session.release(lease, actual_load), shielded=True)


def _paused_until(resp) -> Optional[_dt.datetime]:
    if resp is None or not resp.HasField("paused_until"):
        return None
    return resp.paused_until.ToDatetime(tzinfo=_dt.timezone.utc)


def _observe_exception(lease: BaseLease, exc: Optional[BaseException]) -> None:
    """Records the throttled answer an exception carries (an SDK's
    RateLimitError, httpx.HTTPStatusError) before the lease is released."""
    if exc is None or lease.released:
        return
    feedback = _from_exception(exc)
    if feedback is not None:
        lease._record(feedback)


class _Base:
    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 config: Optional[ClientConfig] = None, **options: Any) -> None:
        self.config = ClientConfig.of(url, api_key, config, options)

    @property
    def _session(self) -> Session:
        # Looked up per call: after a fork the child gets its own session.
        return _runtime.session_for(self.config)

    def _orphan(self, session: Session) -> Callable[[BaseLease], None]:
        def give_back(lease: BaseLease) -> None:
            _runtime.call_soon(lambda: session._give_back(lease))
        return give_back

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.config.url!r})"


class AsyncClient(_Base):
    """The async client (``ratequeue.aio.Client``).

    ``url`` and ``api_key`` default to ``RATEQUEUE_URL`` and
    ``RATEQUEUE_API_KEY``; further keyword options are the fields of
    :class:`ClientConfig`. Clients are cheap: every client with the same
    configuration shares the process's one session stream. Works from any
    event loop, including one ``asyncio.run`` after another.
    """

    def acquire(self, resource: str, *, load: Load = 1, priority: int = 10, lane: Optional[str] = None,
                timeout: Optional[float] = None, key: Optional[str] = None) -> "AsyncAcquire":
        """An async context manager holding a lease for its block.

        ``timeout`` is how long to wait in seconds: ``None`` waits until
        granted or cancelled, ``0`` makes one attempt. Raises
        :class:`AcquireTimeout` when it passes.

        ``key`` (for example a customer id: 1 to 128 characters, no ``@``,
        whitespace or control characters) charges the acquire to the keyed
        child ``"RESOURCE/KEY"`` (made from the resource's ``per_key``
        template on first use, or declared) as well as to the resource and
        its ancestors: each key gets its own quota inside the shared limit.
        The lease's ``resource`` is then ``"RESOURCE/KEY"``. None (the
        default) charges the resource itself; a key on a resource without
        ``per_key`` raises :class:`InvalidRequest`. The lease is released when
        the block exits, with ``lease.actual_load`` if it was set and the
        feedback recorded on it; an exception carrying a provider's 429, 503
        or 529 answer (``openai.RateLimitError``,
        ``anthropic.RateLimitError``, ``httpx.HTTPStatusError``; anything
        with ``status_code`` or ``response.status_code`` and
        ``response.headers``) is recorded first, so the resource pauses
        fleet-wide, and then raised on.
        """
        return AsyncAcquire(self, resource, load=load, priority=priority, lane=lane, timeout=timeout, key=key)

    async def acquire_lease(self, resource: str, *, load: Load = 1, priority: int = 10,
                            lane: Optional[str] = None, timeout: Optional[float] = None,
                            key: Optional[str] = None) -> AsyncLease:
        """Waits for a lease that the caller must release (``await lease.release()``).

        Options as :meth:`acquire`. Cancelling the waiting task withdraws the
        request from the queue.
        """
        session = self._session
        return await _runtime.run_async(
            lambda: session.acquire(resource, load=load, priority=priority, lane=lane, timeout=timeout, key=key,
                                    lease_type=AsyncLease),
            self._orphan(session),
        )

    async def release(self, lease: BaseLease, *, actual_load: Optional[float] = None) -> Optional[str]:
        """Releases a lease: the same as ``await lease.release(actual_load=...)``."""
        return await _release_async(lease, actual_load)

    async def report(self, resource: str, feedback: Feedback) -> Optional[_dt.datetime]:
        """Tells the resource what the provider said about a call made
        without a lease (a lease carries it with its release instead:
        ``lease.observe``, ``lease.report``).

        ``feedback`` is a :class:`ratequeue.ProviderFeedback` (for example
        ``ratequeue.feedback.parse_headers(response.headers,
        response.status_code)``) or a dict of its fields. Returns until when
        the resource is paused (UTC), or None when it is not. Raises
        :class:`ratequeue.InvalidRequest` for feedback that cannot be sent,
        :class:`ratequeue.ResourceNotFound` for an unknown resource, and
        :class:`ratequeue.Unavailable` when no server answered (the report
        is sent again after one reconnect, not more: it is news about a
        moment that has passed).
        """
        checked = ProviderFeedback.of(feedback)
        session = self._session
        return _paused_until(await _runtime.run_async(lambda: session.report(resource, checked)))

    async def close(self) -> None:
        """Closes this configuration's session stream in this process."""
        session = self._session
        _runtime.forget_session(session)
        await _runtime.run_async(session.close)


class Client(_Base):
    """The sync client (``ratequeue.Client``), for threads, Celery tasks and scripts.

    Same options as :class:`ratequeue.aio.Client`, which it shares its
    session with; it blocks on the process's ratequeue loop thread.
    """

    def acquire(self, resource: str, *, load: Load = 1, priority: int = 10, lane: Optional[str] = None,
                timeout: Optional[float] = None, key: Optional[str] = None) -> "Acquire":
        """A context manager holding a lease for its block; see :meth:`AsyncClient.acquire`."""
        return Acquire(self, resource, load=load, priority=priority, lane=lane, timeout=timeout, key=key)

    def acquire_lease(self, resource: str, *, load: Load = 1, priority: int = 10,
                      lane: Optional[str] = None, timeout: Optional[float] = None,
                      key: Optional[str] = None) -> Lease:
        """Blocks for a lease that the caller must release (``lease.release()``);
        options as :meth:`AsyncClient.acquire`."""
        _check_thread()
        session = self._session
        return _runtime.run_sync(
            lambda: session.acquire(resource, load=load, priority=priority, lane=lane, timeout=timeout, key=key,
                                    lease_type=Lease),
            self._orphan(session),
        )

    def release(self, lease: BaseLease, *, actual_load: Optional[float] = None) -> Optional[str]:
        """Releases a lease: the same as ``lease.release(actual_load=...)``."""
        return _release_sync(lease, actual_load)

    def report(self, resource: str, feedback: Feedback) -> Optional[_dt.datetime]:
        """Blocks while telling the resource about a call made without a
        lease; see :meth:`ratequeue.aio.Client.report`."""
        _check_thread()
        checked = ProviderFeedback.of(feedback)
        session = self._session
        return _paused_until(_runtime.run_sync(lambda: session.report(resource, checked)))

    def close(self) -> None:
        """Closes this configuration's session stream in this process."""
        session = self._session
        _runtime.forget_session(session)
        _runtime.run_sync(session.close)


def _check_thread() -> None:
    if threading.current_thread().name == "ratequeue-loop":
        raise RuntimeError("the sync ratequeue API cannot be called on the ratequeue loop; use ratequeue.aio")


class AsyncAcquire:
    """``async with`` holder of one lease; see :meth:`AsyncClient.acquire`."""

    def __init__(self, client: AsyncClient, resource: str, **kw: Any) -> None:
        self._client, self._resource, self._kw = client, resource, kw
        self.lease: Optional[AsyncLease] = None

    async def __aenter__(self) -> AsyncLease:
        self.lease = await self._client.acquire_lease(self._resource, **self._kw)
        return self.lease

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        lease, self.lease = self.lease, None
        if lease is not None:
            _observe_exception(lease, exc)
            try:
                await lease.release()
            except RateQueueError as e:
                log.warning("ratequeue: release of lease %s failed: %s", lease.lease_id, e)
        return False


class Acquire:
    """``with`` holder of one lease; see :meth:`Client.acquire`."""

    def __init__(self, client: Client, resource: str, **kw: Any) -> None:
        self._client, self._resource, self._kw = client, resource, kw
        self.lease: Optional[Lease] = None

    def __enter__(self) -> Lease:
        self.lease = self._client.acquire_lease(self._resource, **self._kw)
        return self.lease

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        lease, self.lease = self.lease, None
        if lease is not None:
            _observe_exception(lease, exc)
            try:
                lease.release()
            except RateQueueError as e:
                log.warning("ratequeue: release of lease %s failed: %s", lease.lease_id, e)
        return False


def acquire(resource: str, *, load: Load = 1, priority: int = 10, lane: Optional[str] = None,
            timeout: Optional[float] = None, key: Optional[str] = None, api_key: Optional[str] = None,
            url: Optional[str] = None) -> Acquire:
    """``with ratequeue.acquire("openai-gpt4", load=...) as lease:`` holds a
    lease for the block. See :meth:`ratequeue.aio.Client.acquire`."""
    return Client(url, api_key=api_key).acquire(resource, load=load, priority=priority, lane=lane, timeout=timeout,
                                                key=key)


def acquire_async(resource: str, *, load: Load = 1, priority: int = 10, lane: Optional[str] = None,
                  timeout: Optional[float] = None, key: Optional[str] = None, api_key: Optional[str] = None,
                  url: Optional[str] = None) -> AsyncAcquire:
    """``async with ratequeue.aio.acquire(...) as lease:``; see :meth:`AsyncClient.acquire`."""
    return AsyncClient(url, api_key=api_key).acquire(resource, load=load, priority=priority, lane=lane,
                                                     timeout=timeout, key=key)


def clients_for(url: Optional[str], api_key: Optional[str],
                client: Optional[Union[Client, AsyncClient]]) -> Tuple[Client, AsyncClient]:
    """The sync and async clients an integration uses: ``client`` itself for
    its kind, and one of the other kind with its configuration (else from
    ``url`` and ``api_key``, which default to the environment)."""
    config = client.config if client is not None else ClientConfig.resolve(url, api_key)
    return (client if isinstance(client, Client) else Client(config=config),
            client if isinstance(client, AsyncClient) else AsyncClient(config=config))


def limited(resource: str, *, load: Union[Load, Callable[..., Load]] = 1, priority: int = 10,
            lane: Optional[str] = None, timeout: Optional[float] = None,
            key: Union[str, Callable[..., Optional[str]], None] = None,
            actual_load: Optional[Callable[[Any], Optional[Load]]] = None,
            api_key: Optional[str] = None, url: Optional[str] = None,
            client: Optional[Union[Client, AsyncClient]] = None) -> Callable[[F], F]:
    """Decorator: every call of the function holds a lease on ``resource``.

    Works on plain and ``async def`` functions. ``load`` may be a number or a
    function of the call's arguments (``load=lambda msgs: estimate(msgs)``);
    ``key`` likewise a string or a function of the call's arguments
    returning the key or None (``key=lambda customer, msgs: customer.id``;
    see :meth:`ratequeue.aio.Client.acquire`); ``actual_load``, a function
    of the result, reconciles the estimate on release
    (``actual_load=lambda r: r.usage.total_tokens``).
    """
    config = client.config if client is not None else None

    def make_client(cls):
        return cls(config=config) if config is not None else cls(url, api_key=api_key)

    def deco(fn: F) -> F:
        def options(args, kwargs) -> Dict[str, Any]:
            return dict(load=load(*args, **kwargs) if callable(load) else load,
                        key=key(*args, **kwargs) if callable(key) else key,
                        priority=priority, lane=lane, timeout=timeout)

        def settle(lease: BaseLease, result: Any) -> None:
            if actual_load is not None:
                value = actual_load(result)
                if value is not None:
                    lease.actual_load = value

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with make_client(AsyncClient).acquire(resource, **options(args, kwargs)) as lease:
                    result = await fn(*args, **kwargs)
                    settle(lease, result)
                    return result
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_client(Client).acquire(resource, **options(args, kwargs)) as lease:
                result = fn(*args, **kwargs)
                settle(lease, result)
                return result
        return wrapper  # type: ignore[return-value]

    return deco
