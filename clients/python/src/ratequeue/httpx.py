"""httpx transports that put every request behind a ratequeue resource.

    import httpx
    from ratequeue.httpx import RateQueueTransport

    http = httpx.Client(transport=RateQueueTransport("openai-gpt4"))

Each request the client sends (an SDK's own retries included) waits for a
lease on the resource, charged an estimate of its tokens; the provider's
answer is observed (a 429, 503 or 529 pauses the whole resource, fleet-wide;
the rate-limit headers lower what it admits); and the lease is released when
the body is done, read to its end or closed, with the tokens really used from
its ``usage`` (a JSON body, or the SSE events of a stream: OpenAI's final
chunk with ``stream_options.include_usage``, Anthropic's ``message_start``
and ``message_delta``). A refused call is released at once without an actual
load, so its estimate is refunded; any other answer whose usage cannot be
read keeps its estimate.

The transports work with ``httpx`` and with ``httpx2`` (which the newest
OpenAI and Anthropic SDKs use): the default base transport is an
``HTTPTransport`` of the package the client's requests come from; a base
transport given must be of that package too. :mod:`ratequeue.openai` and :mod:`ratequeue.anthropic` do all of
this in one line for those SDKs.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import zlib
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union

from ._client import AsyncClient, Client, clients_for
from ._errors import InvalidRequest, RateQueueError
from ._session import BaseLease

__all__ = ["AsyncRateQueueTransport", "RateQueueTransport", "default_estimate"]

log = logging.getLogger("ratequeue")

#: ``estimate(body)`` gets the request's parsed JSON body (or the request
#: itself when its body is not JSON) and returns the load to acquire.
Estimate = Callable[[Any], float]
#: The acquire's key: a string, or ``key(body)``, given what ``estimate``
#: gets, returning the key or None (no key: the resource itself is charged).
Key = Union[str, Callable[[Any], Optional[str]]]

# More of a JSON body than this is not kept to read its usage; the estimate stands.
_MAX_JSON_BYTES = 64 << 20
# Nor an SSE line longer than this.
_MAX_SSE_LINE_BYTES = 1 << 20


class _Transport:
    """What the sync and async transports share: options, the estimate, and
    reading the answer."""

    def __init__(self, resource: str, transport: Any, *, estimate: Optional[Estimate], priority: int,
                 lane: Optional[str], key: Optional[Key], api_key: Optional[str], url: Optional[str],
                 client: Optional[Union[Client, AsyncClient]], feedback: bool) -> None:
        self.resource = resource
        self.priority = priority
        self.lane = lane
        self.key = key
        self.feedback = feedback
        self._estimate = estimate
        self._transport = transport
        self._made = threading.Lock()
        self._sync, self._async = clients_for(url, api_key, client)

    def _base(self, request: Any, name: str) -> Any:
        """The base transport; by default a ``name`` (``HTTPTransport``...)
        of the request's own httpx package, made on first use."""
        if self._transport is None:
            with self._made:
                if self._transport is None:
                    package = _package_of(type(request), name)
                    if package is None:
                        raise TypeError(f"{type(request).__name__} is not an httpx request: give a base transport")
                    self._transport = getattr(package, name)()
        return self._transport

    def _acquire_options(self, request: Any) -> Dict[str, Any]:
        """The acquire's options for a request: its load and key, read from
        its JSON body (else from the request itself), and ours."""
        body = _json_body(request)
        given = request if body is None else body
        return dict(load=self._load(body, given), key=self.key(given) if callable(self.key) else self.key,
                    priority=self.priority, lane=self.lane)

    def _load(self, body: Any, given: Any) -> float:
        if self._estimate is None:
            return default_estimate(body)
        value = self._estimate(given)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidRequest(f"estimate: must return a finite number >= 0, got {value!r}")
        return float(value)

    def _answer(self, lease: BaseLease, response: Any) -> Tuple[Optional["_Usage"], bool]:
        """Observes the answer. Returns the reader of its usage (None when
        none can be read) and whether the lease is to be released at once
        (else when the body is done)."""
        status = response.status_code
        if self.feedback:
            lease.observe(response.headers, status)
        if not 200 <= status < 300:
            return None, True
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        kind = "sse" if ctype == "text/event-stream" else "json" if ctype.endswith("json") else None
        if kind is None:
            return None, True
        if getattr(response, "is_stream_consumed", False):  # a base transport that read the body (MockTransport)
            usage = _Usage(kind, bytes)
            usage.feed(response.content)
            return usage, True
        decode = _decoder(response.headers.get("content-encoding"))
        return (None, True) if decode is None else (_Usage(kind, decode), False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.resource!r}, transport={self._transport!r})"


class RateQueueTransport(_Transport):
    """A sync httpx transport holding a lease on ``resource`` for every request.

    ``transport`` is the base transport that sends the requests (default:
    an ``HTTPTransport()`` of the client's package, ``httpx`` or ``httpx2``). ``estimate`` replaces the default estimate
    (prompt characters / 4 plus ``max_tokens`` or ``max_completion_tokens``,
    at least 1; see :func:`default_estimate`). ``priority`` and ``lane`` are
    the acquire's. ``key`` charges each request to a keyed child as well
    (see :meth:`ratequeue.aio.Client.acquire`): a string, or a function
    given what ``estimate`` gets that returns the key or None, for example
    ``key=lambda body: body.get("user")`` or one that reads a
    ``contextvars.ContextVar`` the application sets per customer. The
    ratequeue client comes from ``client``, else from
    ``url`` and ``api_key`` (default: the environment). ``feedback=False``
    reports nothing to the server (acquires and reconciles only).
    """

    def __init__(self, resource: str, *, transport: Any = None, estimate: Optional[Estimate] = None,
                 priority: int = 10, lane: Optional[str] = None, key: Optional[Key] = None,
                 api_key: Optional[str] = None, url: Optional[str] = None,
                 client: Optional[Union[Client, AsyncClient]] = None, feedback: bool = True) -> None:
        super().__init__(resource, transport, estimate=estimate, priority=priority, lane=lane, key=key,
                         api_key=api_key, url=url, client=client, feedback=feedback)

    def handle_request(self, request: Any) -> Any:
        lease = self._sync.acquire_lease(self.resource, **self._acquire_options(request))
        try:
            response = self._base(request, "HTTPTransport").handle_request(request)
            usage, now = self._answer(lease, response)
        except BaseException:
            _release(lease, None)
            raise
        if now:
            _release(lease, usage.tokens() if usage is not None else None)
        else:
            response.stream = _tap_type(response, _SyncTap, "SyncByteStream")(
                response.stream, usage, lambda: _release(lease, usage.tokens()))  # type: ignore[union-attr]
        return response

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def __enter__(self) -> "RateQueueTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncRateQueueTransport(_Transport):
    """The async transport (for ``httpx.AsyncClient``, ``httpx2.AsyncClient``);
    options as :class:`RateQueueTransport`, the base default an
    ``AsyncHTTPTransport()`` of the client's package."""

    def __init__(self, resource: str, *, transport: Any = None, estimate: Optional[Estimate] = None,
                 priority: int = 10, lane: Optional[str] = None, key: Optional[Key] = None,
                 api_key: Optional[str] = None, url: Optional[str] = None,
                 client: Optional[Union[Client, AsyncClient]] = None, feedback: bool = True) -> None:
        super().__init__(resource, transport, estimate=estimate, priority=priority, lane=lane, key=key,
                         api_key=api_key, url=url, client=client, feedback=feedback)

    async def handle_async_request(self, request: Any) -> Any:
        lease = await self._async.acquire_lease(self.resource, **self._acquire_options(request))
        try:
            response = await self._base(request, "AsyncHTTPTransport").handle_async_request(request)
            usage, now = self._answer(lease, response)
        except BaseException:
            await _arelease(lease, None)
            raise
        if now:
            await _arelease(lease, usage.tokens() if usage is not None else None)
        else:
            response.stream = _tap_type(response, _AsyncTap, "AsyncByteStream")(
                response.stream, usage, lambda: _arelease(lease, usage.tokens()))  # type: ignore[union-attr]
        return response

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()

    async def __aenter__(self) -> "AsyncRateQueueTransport":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _release(lease: BaseLease, tokens: Optional[float]) -> None:
    try:
        lease.release(actual_load=tokens)  # type: ignore[attr-defined]
    except RateQueueError as e:
        log.warning("ratequeue: release of lease %s failed: %s", lease.lease_id, e)


async def _arelease(lease: BaseLease, tokens: Optional[float]) -> None:
    try:
        await lease.release(actual_load=tokens)  # type: ignore[attr-defined]
    except RateQueueError as e:
        log.warning("ratequeue: release of lease %s failed: %s", lease.lease_id, e)


# ------------------------------------------------- the body as it streams


class _SyncTap:
    """A response body passed through unchanged while its usage is read;
    ``done()`` runs once, when it is read to its end or closed."""

    def __init__(self, stream: Any, usage: "_Usage", done: Callable[[], None]) -> None:
        self._stream, self._usage, self._done = stream, usage, done

    def __iter__(self):
        for chunk in self._stream:
            self._usage.feed(chunk)
            yield chunk
        self._finish()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._finish()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()


class _AsyncTap:
    """The async :class:`_SyncTap`."""

    def __init__(self, stream: Any, usage: "_Usage", done: Callable[[], Any]) -> None:
        self._stream, self._usage, self._done = stream, usage, done

    async def __aiter__(self):
        async for chunk in self._stream:
            self._usage.feed(chunk)
            yield chunk
        await self._finish()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await self._finish()

    async def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            await done()


_TAP_TYPES: dict = {}


def _package_of(cls: type, name: str) -> Any:
    """The package (``httpx``, ``httpx2``) of a class of it, found as the
    first package along its MRO that has ``name``; None if none has."""
    for c in cls.__mro__:
        package = sys.modules.get(c.__module__.partition(".")[0])
        if isinstance(getattr(package, name, None), type):
            return package
    return None


def _tap_type(response: Any, tap: type, base_name: str) -> type:
    """``tap`` as a subclass of the response's own package's byte stream
    (``httpx.SyncByteStream``, ``httpx2.AsyncByteStream``...): the client
    checks that the stream it gets is one."""
    package = _package_of(type(response), base_name)
    base = getattr(package, base_name) if package is not None else None
    key = (tap, base)
    if key not in _TAP_TYPES:
        name = "RateQueueStream" if tap is _SyncTap else "AsyncRateQueueStream"
        _TAP_TYPES[key] = type(name, (tap,) if base is None else (tap, base), {"__module__": __name__})
    return _TAP_TYPES[key]


def _decoder(encoding: Optional[str]) -> Optional[Callable[[bytes], bytes]]:
    """An incremental decoder of a content-encoding (identity, gzip,
    deflate), or None for one it cannot read."""
    names = [e.strip().lower() for e in (encoding or "").split(",") if e.strip()]
    if names in ([], ["identity"]):
        return bytes
    if names in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if names == ["deflate"]:
        return zlib.decompressobj().decompress
    return None


class _Usage:
    """The tokens a response used, read from its body as it goes by: a JSON
    body's ``usage``, or the usage in a stream's SSE events. Never raises: a
    body it cannot read gives no tokens."""

    def __init__(self, kind: str, decode: Callable[[bytes], bytes]) -> None:
        self._kind, self._decode = kind, decode
        self._buf = bytearray()
        self._broken = False
        self._total: Optional[float] = None
        self._input: Optional[float] = None
        self._output: Optional[float] = None

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._buf += self._decode(chunk)
            if self._kind == "json":
                self._broken = len(self._buf) > _MAX_JSON_BYTES
                return
            *lines, rest = self._buf.split(b"\n")
            self._buf = bytearray(rest)
            for line in lines:
                self._line(line)
            self._broken = len(self._buf) > _MAX_SSE_LINE_BYTES
        except Exception:  # noqa: BLE001 - a body we cannot read: the estimate stands
            self._broken = True

    def tokens(self) -> Optional[float]:
        """The tokens used (total, else input + output), or None when the
        body did not say."""
        if self._broken:
            return None
        try:
            if self._kind == "json":
                body = json.loads(bytes(self._buf))
                self._take(body.get("usage") if isinstance(body, dict) else None)
            elif self._buf:
                self._line(bytes(self._buf))  # a last line without its newline
            self._buf = bytearray()
        except Exception:  # noqa: BLE001 - not JSON after all
            return None
        if self._total is not None:
            return self._total
        if self._input is None and self._output is None:
            return None
        return (self._input or 0.0) + (self._output or 0.0)

    def _line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data.startswith(b"{"):
            return  # OpenAI's "[DONE]"
        event = json.loads(data)
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":  # Anthropic: the input tokens (and a first output count)
            message = event.get("message")
            self._take(message.get("usage") if isinstance(message, dict) else None)
        elif kind == "message_delta":  # Anthropic: the output tokens so far
            self._take(event.get("usage"))
        elif event.get("usage") is not None:  # OpenAI: the final chunk's usage
            self._take(event.get("usage"))

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        total = _count(usage.get("total_tokens"))
        given_in = _count(usage.get("input_tokens"))
        given_out = _count(usage.get("output_tokens"))
        if given_in is None:
            given_in = _count(usage.get("prompt_tokens"))
        if given_out is None:
            given_out = _count(usage.get("completion_tokens"))
        if total is not None:
            self._total = total
        if given_in is not None:
            self._input = given_in
        if given_out is not None:
            self._output = given_out


def _count(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


# ------------------------------------------------------------ the estimate


def _json_body(request: Any) -> Any:
    """The request's parsed JSON body, or None (no body, not JSON, or a
    streamed body not read yet)."""
    try:
        content = request.content
    except Exception:  # noqa: BLE001 - httpx's RequestNotRead: a streamed upload
        return None
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def default_estimate(body: Any) -> float:
    """The default load of a request from its parsed JSON body: the prompt's
    characters / 4 (OpenAI's ``messages[].content``, Anthropic's ``system``
    and ``messages[].content``; strings, or parts with ``text``), plus
    ``max_tokens`` (else ``max_completion_tokens``) when given; at least 1."""
    if not isinstance(body, dict):
        return 1.0
    chars = _chars(body.get("system"))
    messages = body.get("messages")
    if isinstance(messages, list):
        chars += sum(_chars(m.get("content")) for m in messages if isinstance(m, dict))
    out = _count(body.get("max_tokens"))
    if out is None:
        out = _count(body.get("max_completion_tokens"))
    return max(1.0, math.ceil(chars / 4) + (out or 0.0))


# ----------------------------------------------------------- SDK wrappers


def _httpx_package(client_type: type) -> Any:
    """The httpx package (``httpx`` or ``httpx2``) an SDK's client class is built on."""
    for cls in client_type.__mro__:
        package = sys.modules.get(cls.__module__.partition(".")[0])
        if package is not None and cls in (getattr(package, "Client", None), getattr(package, "AsyncClient", None)):
            return package
    raise TypeError(f"{client_type.__name__} is not an httpx client class")


def _wrap_sdk(sdk: Any, client: Any, types: Tuple[Type[Any], Type[Any]], resource: str, **options: Any) -> Any:
    """``client.with_options(http_client=...)`` whose transport is ours,
    around a base transport of the SDK's own httpx package with the SDK's
    connection limits. ``types`` are the SDK's (sync, async) client classes."""
    sync_type, async_type = types
    if isinstance(client, async_type):
        http_type, transport_type, base_name = sdk.DefaultAsyncHttpxClient, AsyncRateQueueTransport, "AsyncHTTPTransport"
    elif isinstance(client, sync_type):
        http_type, transport_type, base_name = sdk.DefaultHttpxClient, RateQueueTransport, "HTTPTransport"
    else:
        raise TypeError(f"wrap() takes a {sync_type.__module__.partition('.')[0]}.{sync_type.__name__} or "
                        f"{async_type.__name__}, got {type(client).__name__}")
    base_type = getattr(_httpx_package(http_type), base_name)
    limits = getattr(sdk, "DEFAULT_CONNECTION_LIMITS", None)
    base = base_type(limits=limits) if limits is not None else base_type()
    return client.with_options(http_client=http_type(transport=transport_type(resource, transport=base, **options)))
