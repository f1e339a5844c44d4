"""Provider feedback: what an upstream provider said about a call.

A provider refuses a call with HTTP 429 (or 503/529 when overloaded) and
tells its budget in rate-limit headers. :func:`parse_headers` reads OpenAI's
and Anthropic's headers into a :class:`ProviderFeedback`; a lease carries it
to the server with its release (``lease.observe(headers, status)``,
``lease.report(throttled=True, ...)``), and ``client.report(resource,
feedback)`` sends it for a call made without a lease. A throttled call pauses
the whole resource, fleet-wide; the budget headers lower what it admits.

The parsing rules are the same in every ratequeue client:

- status 429, 503 or 529 is throttled;
- ``retry-after-ms`` (milliseconds) wins over ``retry-after`` (seconds,
  integer or decimal, or an HTTP-date);
- OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` give
  ``requests`` and ``load``, their resets Go-style durations (``6m0s``,
  ``120ms``);
- Anthropic's ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
  give ``requests``, ``load``, ``input_tokens`` and ``output_tokens``, their
  resets RFC 3339 times;
- header names are case-insensitive (the first of a repeated name counts),
  and a value that does not parse is ignored, never raised.

Both providers give their limits per minute, so ``limit_period`` is left
unset (the server reads unset as 60 s).
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

from ._errors import InvalidRequest

__all__ = ["THROTTLED_STATUSES", "DimensionFeedback", "ProviderFeedback", "parse_headers"]

#: The HTTP statuses that mean the provider refused the call for its rate
#: (429) or because it is overloaded (503, 529).
THROTTLED_STATUSES = frozenset({429, 503, 529})

Seconds = Union[float, int, _dt.timedelta]
Headers = Union[Mapping[str, Any], Iterable[Tuple[Any, Any]]]

_DIMENSIONS = ("requests", "load", "input_tokens", "output_tokens")


@dataclass
class DimensionFeedback:
    """One dimension of a provider's rate-limit headers; every field optional.

    Attributes:
        limit: The provider's limit per ``limit_period``
            (``x-ratelimit-limit-*``). Lower than the configured amount, it
            becomes the limit's effective amount while the resource learns
            limits.
        remaining: What the provider had left after counting this call
            (``x-ratelimit-remaining-*``); the limit's available budget is
            lowered to at most this, minus what was granted since.
        reset: Seconds until the provider's budget is full again
            (``x-ratelimit-reset-*``).
        limit_period: The period of ``limit``, seconds; None means 60 s.
    """

    limit: Optional[float] = None
    remaining: Optional[float] = None
    reset: Optional[float] = None
    limit_period: Optional[float] = None

    @classmethod
    def of(cls, value: Union["DimensionFeedback", Mapping[str, Any]], field: str = "") -> "DimensionFeedback":
        """A checked copy of a DimensionFeedback or a dict of its fields
        (durations as seconds or timedelta); ``field`` names it in errors."""
        items = _items(cls, value, field)
        return cls(limit=_number(items.get("limit"), _join(field, "limit")),
                   remaining=_number(items.get("remaining"), _join(field, "remaining")),
                   reset=_number(items.get("reset"), _join(field, "reset"), duration=True),
                   limit_period=_number(items.get("limit_period"), _join(field, "limit_period"), duration=True,
                                        positive=True))

    def _merge(self, later: "DimensionFeedback") -> None:
        for f in fields(self):
            value = getattr(later, f.name)
            if value is not None:
                setattr(self, f.name, value)


@dataclass
class ProviderFeedback:
    """What the provider said about one call.

    Attributes:
        throttled: The provider refused the call (HTTP 429, or 503/529
            overloaded): the whole resource pauses, fleet-wide.
        retry_after: Seconds the provider asked callers to wait.
        requests: The provider's request budget.
        load: The provider's token budget (the resource's load limits).
        input_tokens: The provider's input-token budget (load limits with
            ``unit: input_tokens``).
        output_tokens: The provider's output-token budget (``unit: output_tokens``).
    """

    throttled: bool = False
    retry_after: Optional[float] = None
    requests: Optional[DimensionFeedback] = None
    load: Optional[DimensionFeedback] = None
    input_tokens: Optional[DimensionFeedback] = None
    output_tokens: Optional[DimensionFeedback] = None

    @classmethod
    def of(cls, value: Union["ProviderFeedback", Mapping[str, Any]], field: str = "feedback") -> "ProviderFeedback":
        """A checked copy of a ProviderFeedback or a dict of its fields
        (``retry_after`` as seconds or timedelta, dimensions as
        DimensionFeedback or dicts). What cannot be sent raises
        :class:`ratequeue.InvalidRequest` naming the field
        (``feedback.load.remaining: must be ...``)."""
        items = _items(cls, value, field)
        throttled = items.get("throttled", False)
        if not isinstance(throttled, bool):
            raise InvalidRequest(f"{_join(field, 'throttled')}: must be a bool, got {throttled!r}")
        out = cls(throttled=throttled,
                  retry_after=_number(items.get("retry_after"), _join(field, "retry_after"), duration=True))
        for name in _DIMENSIONS:
            if items.get(name) is not None:
                setattr(out, name, DimensionFeedback.of(items[name], _join(field, name)))
        return out

    @property
    def empty(self) -> bool:
        """True when it says nothing at all."""
        return not self.throttled and self.retry_after is None and all(
            getattr(self, name) is None for name in _DIMENSIONS)

    def merge(self, later: "ProviderFeedback") -> "ProviderFeedback":
        """Merges ``later`` into this one (in place; returns self):
        ``throttled`` stays true once true, every other value ``later``
        gives replaces the earlier one."""
        self.throttled = self.throttled or later.throttled
        if later.retry_after is not None:
            self.retry_after = later.retry_after
        for name in _DIMENSIONS:
            dim = getattr(later, name)
            if dim is None:
                continue
            mine = getattr(self, name)
            if mine is None:
                mine = DimensionFeedback()
                setattr(self, name, mine)
            mine._merge(dim)
        return self


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _items(cls: type, value: Any, field: str) -> dict:
    """The fields of a ``cls`` instance or of a dict of them (unknown keys refused)."""
    names = [f.name for f in fields(cls)]
    if isinstance(value, cls):
        return {name: getattr(value, name) for name in names}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise InvalidRequest(f"{field or 'feedback'}: unknown key {unknown[0]!r} (known: {', '.join(names)})")
        return dict(value)
    raise InvalidRequest(f"{field or 'feedback'}: must be a {cls.__name__} or a dict, got {type(value).__name__}")


def _number(value: Any, field: str, *, duration: bool = False, positive: bool = False) -> Optional[float]:
    if value is None:
        return None
    if duration and isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "seconds or a timedelta" if duration else "a number"
        raise InvalidRequest(f"{field}: must be {kind}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InvalidRequest(f"{field}: must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


# ------------------------------------------------------------ the parser

# A plain non-negative decimal: "60", "149984", "0.5".
_DECIMAL = re.compile(r"\d+(?:\.\d+)?")
# A Go duration ("6m0s", "120ms", "1h2m3.5s", ".5s"); "ms" is tried before "m".
_GO_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)"
_GO_DURATION = re.compile(rf"(?:{_GO_PART})+")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# An RFC 3339 time: "2024-06-21T18:39:47Z", fractional seconds and an offset allowed.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))")
# An HTTP-date starts with its weekday: "Wed, 21 Oct 2015 07:28:00 GMT".
_HTTP_DATE = re.compile(r"[A-Za-z]{3,9},? ")


def _decimal(value: Optional[str]) -> Optional[float]:
    if value is None or not _DECIMAL.fullmatch(value):
        return None
    n = float(value)
    return n if math.isfinite(n) else None


def _go_duration(value: Optional[str]) -> Optional[float]:
    """A Go-style duration in seconds ("6m0s" -> 360.0; "0" -> 0.0)."""
    if value is None:
        return None
    if value == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(value):
        return None
    total = sum(float(amount) * _GO_UNITS[unit] for amount, unit in re.findall(_GO_PART, value))
    return total if math.isfinite(total) else None


def _rfc3339(value: Optional[str]) -> Optional[_dt.datetime]:
    m = _RFC3339.fullmatch(value) if value is not None else None
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, z, sign, off_h, off_m = m.group(7), m.group(8), m.group(9), m.group(10), m.group(11)
    tz = _dt.timezone.utc
    if not z:
        offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
        tz = _dt.timezone(-offset if sign == "-" else offset)
    try:
        at = _dt.datetime(year, month, day, hour, minute, min(second, 59), tzinfo=tz)
    except ValueError:
        return None
    return at + _dt.timedelta(seconds=float(fraction) if fraction else 0.0)


def _http_date(value: str) -> Optional[_dt.datetime]:
    if not _HTTP_DATE.match(value):
        return None
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at is None:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=_dt.timezone.utc)


def _text(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif isinstance(value, (list, tuple)):  # several values of one name: the first counts
        return _text(value[0]) if value else None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return value.strip() if isinstance(value, str) else None


def _lookup(headers: Optional[Headers]) -> dict:
    """Header values by lower-case name; the first of a repeated name wins."""
    out: dict = {}
    if headers is None:
        return out
    items = headers.items() if hasattr(headers, "items") else headers
    try:
        for entry in items:
            try:
                name, value = entry
            except (TypeError, ValueError):
                continue
            key = _text(name)
            text = _text(value)
            if key is not None and text is not None:
                out.setdefault(key.lower(), text)
    except TypeError:  # not iterable: no headers
        pass
    return out


def _now(now: Union[None, float, _dt.datetime]) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now(_dt.timezone.utc)
    if isinstance(now, _dt.datetime):
        return now if now.tzinfo is not None else now.replace(tzinfo=_dt.timezone.utc)
    return _dt.datetime.fromtimestamp(float(now), _dt.timezone.utc)


def _until(at: Optional[_dt.datetime], now: _dt.datetime) -> Optional[float]:
    return None if at is None else max(0.0, (at - now).total_seconds())


def _dimension(limit: Optional[float], remaining: Optional[float],
               reset: Optional[float]) -> Optional[DimensionFeedback]:
    if limit is None and remaining is None and reset is None:
        return None
    return DimensionFeedback(limit=limit, remaining=remaining, reset=reset)


def parse_headers(headers: Optional[Headers], status: Optional[int] = None,
                  now: Union[None, float, _dt.datetime] = None) -> ProviderFeedback:
    """Reads a provider's answer into a :class:`ProviderFeedback`.

    ``headers`` is any mapping of header names to values (an httpx
    ``Headers``, a dict) or a list of ``(name, value)`` pairs; ``status`` the
    HTTP status (429, 503 and 529 are throttled); ``now`` (a datetime or epoch
    seconds; default: the clock) is what HTTP-dates and Anthropic's reset
    times are counted from. Never raises: what does not parse is left out.
    """
    get = _lookup(headers).get
    out = ProviderFeedback(throttled=isinstance(status, int) and status in THROTTLED_STATUSES)
    at = _now(now)
    ms = _decimal(get("retry-after-ms"))
    if ms is not None:
        out.retry_after = ms / 1000
    else:
        value = get("retry-after")
        seconds = _decimal(value)
        out.retry_after = seconds if seconds is not None or value is None else _until(_http_date(value), at)

    def put(name: str, dim: Optional[DimensionFeedback]) -> None:
        if dim is not None:
            out.merge(ProviderFeedback(**{name: dim}))

    for suffix, name in (("requests", "requests"), ("tokens", "load")):
        put(name, _dimension(_decimal(get(f"x-ratelimit-limit-{suffix}")),
                             _decimal(get(f"x-ratelimit-remaining-{suffix}")),
                             _go_duration(get(f"x-ratelimit-reset-{suffix}"))))
    for infix, name in (("requests", "requests"), ("tokens", "load"), ("input-tokens", "input_tokens"),
                        ("output-tokens", "output_tokens")):
        prefix = f"anthropic-ratelimit-{infix}-"
        put(name, _dimension(_decimal(get(prefix + "limit")), _decimal(get(prefix + "remaining")),
                             _until(_rfc3339(get(prefix + "reset")), at)))
    return out


def _from_exception(exc: BaseException) -> Optional[ProviderFeedback]:
    """The feedback of an exception that carries a throttled HTTP answer
    (429, 503, 529), found by duck typing: ``exc.status_code`` or
    ``exc.response.status_code``, and ``exc.response.headers``. That covers
    ``openai.RateLimitError``, ``anthropic.RateLimitError`` and
    ``httpx.HTTPStatusError``. None for any other exception; never raises."""
    try:
        response = getattr(exc, "response", None)
        status = getattr(exc, "status_code", None)
        if not isinstance(status, int):
            status = getattr(response, "status_code", None)
        if not isinstance(status, int) or status not in THROTTLED_STATUSES:
            return None
        return parse_headers(getattr(response, "headers", None), status)
    except Exception:  # noqa: BLE001 - a foreign object: nothing to learn from it
        return None


def _to_proto(feedback: ProviderFeedback):
    """The ProviderFeedback message of checked feedback."""
    from ._proto.ratequeue.v1 import ratequeue_pb2 as pb

    msg = pb.ProviderFeedback(throttled=feedback.throttled)
    if feedback.retry_after is not None:
        msg.retry_after.FromNanoseconds(int(round(feedback.retry_after * 1e9)))
    for name in _DIMENSIONS:
        dim = getattr(feedback, name)
        if dim is None:
            continue
        target = getattr(msg, name)
        target.SetInParent()
        if dim.limit is not None:
            target.limit = dim.limit
        if dim.remaining is not None:
            target.remaining = dim.remaining
        if dim.reset is not None:
            target.reset.FromNanoseconds(int(round(dim.reset * 1e9)))
        if dim.limit_period is not None:
            target.limit_period.FromNanoseconds(int(round(dim.limit_period * 1e9)))
    return msg
