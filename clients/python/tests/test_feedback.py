"""Provider feedback without a server: the header parser on the providers'
documented examples, merging, the checks of lease.report, the exceptions
found by duck typing, and what the transports read from bodies."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import httpx
import pytest

import ratequeue
from ratequeue import DimensionFeedback as Dim
from ratequeue import ProviderFeedback
from ratequeue._session import BaseLease
from ratequeue.feedback import THROTTLED_STATUSES, _from_exception, _to_proto, parse_headers
from ratequeue.httpx import _decoder, _Usage, default_estimate

NOW = dt.datetime(2024, 6, 21, 18, 39, 40, tzinfo=dt.timezone.utc)


def test_openai_documented_example():
    # https://platform.openai.com/docs/guides/rate-limits ("Rate limits in headers")
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert parse_headers(headers, 200) == ProviderFeedback(
        requests=Dim(limit=60, remaining=59, reset=1.0),
        load=Dim(limit=150000, remaining=149984, reset=360.0),
    )


def test_anthropic_documented_headers():
    # https://docs.anthropic.com/en/api/rate-limits ("Response headers"):
    # resets are RFC 3339 times, retry-after is seconds.
    headers = {
        "retry-after": "7",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2024-06-21T18:39:47Z",
        "anthropic-ratelimit-tokens-limit": "90000",
        "anthropic-ratelimit-tokens-remaining": "89000",
        "anthropic-ratelimit-tokens-reset": "2024-06-21T18:39:41.5Z",
        "anthropic-ratelimit-input-tokens-limit": "80000",
        "anthropic-ratelimit-input-tokens-remaining": "79500",
        "anthropic-ratelimit-input-tokens-reset": "2024-06-21T18:39:40.250+00:00",
        "anthropic-ratelimit-output-tokens-limit": "16000",
        "anthropic-ratelimit-output-tokens-remaining": "15500",
        "anthropic-ratelimit-output-tokens-reset": "2024-06-21T20:39:43+02:00",
    }
    assert parse_headers(headers, 429, now=NOW) == ProviderFeedback(
        throttled=True,
        retry_after=7.0,
        requests=Dim(limit=50, remaining=0, reset=7.0),
        load=Dim(limit=90000, remaining=89000, reset=1.5),
        input_tokens=Dim(limit=80000, remaining=79500, reset=0.25),
        output_tokens=Dim(limit=16000, remaining=15500, reset=3.0),
    )
    # A reset in the past is 0; epoch seconds work as now.
    past = {"anthropic-ratelimit-requests-reset": "2024-06-21T18:00:00Z"}
    assert parse_headers(past, now=NOW.timestamp()).requests == Dim(reset=0.0)


@pytest.mark.parametrize("value, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("0.5s", 0.5), ("20ms", 0.02),
    ("1m30.123s", 90.123), (".5s", 0.5), ("0", 0.0), ("0s", 0.0), ("250us", 0.00025), ("250µs", 0.00025),
    ("1500ns", 1.5e-6), ("2h", 7200.0),
])
def test_openai_resets_are_go_durations(value, seconds):
    fb = parse_headers({"x-ratelimit-reset-tokens": value})
    assert fb.load.reset == pytest.approx(seconds, abs=1e-12)


def test_status_decides_throttled():
    assert THROTTLED_STATUSES == {429, 503, 529}
    for status in (429, 503, 529):
        assert parse_headers({}, status).throttled
    for status in (None, 200, 400, 500, "429"):
        assert parse_headers({}, status) == ProviderFeedback()


def test_retry_after_forms():
    def retry(headers):
        return parse_headers(headers, 429, now=NOW).retry_after

    assert retry({"retry-after": "2"}) == 2.0
    assert retry({"retry-after": "1.5"}) == 1.5
    assert retry({"retry-after-ms": "250.5"}) == pytest.approx(0.2505)
    # retry-after-ms wins, whatever the order.
    assert retry([("Retry-After", "20"), ("Retry-After-Ms", "1200")]) == 1.2
    # An HTTP-date: the time until it, at least 0.
    assert retry({"retry-after": "Fri, 21 Jun 2024 18:39:50 GMT"}) == 10.0
    assert retry({"retry-after": "Fri, 21 Jun 2024 18:00:00 GMT"}) == 0.0
    # A bad retry-after-ms falls back to retry-after.
    assert retry({"retry-after-ms": "soon", "retry-after": "3"}) == 3.0
    assert retry({}) is None


def test_names_are_case_insensitive_and_any_header_shape_works():
    expected = ProviderFeedback(requests=Dim(limit=60, remaining=59))
    as_dict = {"X-RateLimit-Limit-Requests": "60", "x-ratelimit-REMAINING-requests": " 59 "}
    assert parse_headers(as_dict) == expected
    assert parse_headers(list(as_dict.items())) == expected
    assert parse_headers([(b"x-ratelimit-limit-requests", b"60"), (b"x-ratelimit-remaining-requests", b"59")]) == expected
    assert parse_headers(httpx.Headers(as_dict)) == expected
    # The first of a repeated name counts.
    assert parse_headers([("x-ratelimit-limit-requests", "60"), ("X-RateLimit-Limit-Requests", "1")]).requests.limit == 60


@pytest.mark.parametrize("headers", [
    {"x-ratelimit-limit-requests": "-1"},
    {"x-ratelimit-limit-requests": "1e3"},
    {"x-ratelimit-limit-requests": "sixty"},
    {"x-ratelimit-limit-requests": ""},
    {"x-ratelimit-remaining-tokens": "NaN"},
    {"x-ratelimit-remaining-tokens": "inf"},
    {"x-ratelimit-reset-tokens": "6 minutes"},
    {"x-ratelimit-reset-tokens": "-1s"},
    {"x-ratelimit-reset-tokens": "1d"},
    {"x-ratelimit-reset-tokens": "s"},
    {"x-ratelimit-reset-tokens": "2024-06-21T18:39:47Z"},
    {"anthropic-ratelimit-tokens-reset": "1s"},
    {"anthropic-ratelimit-tokens-reset": "2024-13-21T18:39:47Z"},
    {"anthropic-ratelimit-tokens-reset": "2024-06-21 18:39"},
    {"anthropic-ratelimit-tokens-reset": "yesterday"},
    {"anthropic-ratelimit-requests-limit": "50 per minute"},
    {"retry-after": "soon"},
    {"retry-after": "-5"},
    {"retry-after": "21 Jun 2024"},
    {"retry-after": "Fri, 99 Jun 2024 18:39:50 GMT"},
    {"retry-after-ms": "1,000"},
    {"x-ratelimit-limit-requests": None},
    {"x-ratelimit-limit-requests": object()},
])
def test_bad_values_are_ignored(headers):
    assert parse_headers(headers, 200, now=NOW) == ProviderFeedback()


def test_bad_header_containers_are_ignored():
    assert parse_headers(None) == ProviderFeedback()
    assert parse_headers(42) == ProviderFeedback()  # type: ignore[arg-type]
    assert parse_headers([("only-a-name",), "xy", ("a", "b", "c")]) == ProviderFeedback()  # type: ignore[list-item]


def test_merge_keeps_throttled_and_later_values_win():
    fb = ProviderFeedback(throttled=True, retry_after=2, requests=Dim(limit=60, remaining=10))
    fb.merge(ProviderFeedback(retry_after=1, requests=Dim(remaining=5, reset=1.0), load=Dim(limit=1000)))
    assert fb == ProviderFeedback(throttled=True, retry_after=1, requests=Dim(limit=60, remaining=5, reset=1.0),
                                  load=Dim(limit=1000))
    assert fb.merge(ProviderFeedback()) is fb and fb.throttled
    assert ProviderFeedback().empty and not fb.empty


def _lease() -> BaseLease:
    return BaseLease(lease_id="l1", resource="r", load=1, ttl=30, expire_time=None, wait_time=0)


def test_lease_report_and_observe_merge_into_the_lease():
    lease = _lease()
    assert lease.feedback is None
    lease.observe({"x-ratelimit-remaining-requests": "3", "retry-after": "4"}, 429)
    lease.report(retry_after=dt.timedelta(milliseconds=1500), load={"limit": 9000, "reset": dt.timedelta(minutes=1)},
                 requests=Dim(limit=60))
    lease.observe({"x-ratelimit-remaining-requests": "2"}, 200)  # throttled stays
    assert lease.feedback == ProviderFeedback(throttled=True, retry_after=1.5,
                                              requests=Dim(limit=60, remaining=2), load=Dim(limit=9000, reset=60.0))
    lease.released = True
    with pytest.raises(RuntimeError, match="client.report"):
        lease.report(throttled=True)


@pytest.mark.parametrize("kwargs, field", [
    (dict(retry_after=-1), "retry_after"),
    (dict(retry_after="2s"), "retry_after"),
    (dict(retry_after=float("nan")), "retry_after"),
    (dict(throttled=1), "throttled"),
    (dict(load={"remaining": -3}), "load.remaining"),
    (dict(load={"limit": float("inf")}), "load.limit"),
    (dict(requests={"limit_period": 0}), "requests.limit_period"),
    (dict(requests={"window": 60}), "requests"),
    (dict(input_tokens=5), "input_tokens"),
    (dict(output_tokens={"reset": True}), "output_tokens.reset"),
])
def test_lease_report_refuses_what_cannot_be_sent(kwargs, field):
    lease = _lease()
    with pytest.raises(ratequeue.InvalidRequest) as e:
        lease.report(**kwargs)
    assert e.value.message.startswith(field + ":")
    assert lease.feedback is None


def test_feedback_of_dicts_and_the_message():
    fb = ProviderFeedback.of({"throttled": True, "retry_after": 0.25,
                              "requests": {"limit": 1200, "remaining": 0, "reset": 0.05, "limit_period": 60},
                              "input_tokens": Dim(remaining=10)})
    msg = _to_proto(fb)
    assert msg.throttled and msg.retry_after.ToNanoseconds() == 250_000_000
    assert (msg.requests.limit, msg.requests.remaining) == (1200, 0)
    assert msg.requests.reset.ToNanoseconds() == 50_000_000 and msg.requests.limit_period.seconds == 60
    assert msg.HasField("input_tokens") and msg.input_tokens.HasField("remaining")
    assert not msg.input_tokens.HasField("limit") and not msg.input_tokens.HasField("reset")
    assert not msg.HasField("load") and not msg.HasField("output_tokens")
    # Unset stays unset: no retry_after, no limit_period (the server reads 60 s).
    bare = _to_proto(ProviderFeedback(throttled=True, load=Dim(limit=5)))
    assert not bare.HasField("retry_after") and not bare.load.HasField("limit_period")
    with pytest.raises(ratequeue.InvalidRequest, match="^feedback.retry_after:"):
        ProviderFeedback.of({"retry_after": -1})


class _Response:
    def __init__(self, status, headers):
        self.status_code, self.headers = status, headers


class _WithResponse(Exception):
    def __init__(self, status, headers):
        super().__init__("refused")
        self.response = _Response(status, headers)


class _WithStatus(Exception):
    status_code = 429


def test_exceptions_found_by_duck_typing():
    fb = _from_exception(_WithResponse(429, {"retry-after": "3", "x-ratelimit-remaining-requests": "0"}))
    assert fb == ProviderFeedback(throttled=True, retry_after=3.0, requests=Dim(remaining=0))
    assert _from_exception(_WithStatus()) == ProviderFeedback(throttled=True)
    assert _from_exception(_WithResponse(529, {})).throttled
    assert _from_exception(_WithResponse(400, {"retry-after": "3"})) is None
    assert _from_exception(ValueError("x")) is None

    class Weird(Exception):
        @property
        def response(self):
            raise RuntimeError("no")

    assert _from_exception(Weird()) is None


def test_the_sdks_errors_and_httpx_are_recognised():
    import anthropic
    import openai

    req = httpx.Request("POST", "https://api.example.com/v1/chat/completions")
    resp = httpx.Response(429, headers={"retry-after-ms": "1500", "x-ratelimit-limit-requests": "60"}, request=req)
    err = httpx.HTTPStatusError("429", request=req, response=resp)
    assert _from_exception(err) == ProviderFeedback(throttled=True, retry_after=1.5, requests=Dim(limit=60))
    for sdk in (openai, anthropic):
        # The SDKs' own httpx package (httpx2 in the newest ones).
        http = sdk.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0]
        mod = __import__(http)
        sreq = mod.Request("POST", "https://api.example.com/v1/x")
        sresp = mod.Response(429, headers={"retry-after": "2"}, request=sreq)
        e = sdk.RateLimitError("rate limited", response=sresp, body=None)
        assert _from_exception(e) == ProviderFeedback(throttled=True, retry_after=2.0)
        overloaded = sdk.InternalServerError("overloaded", response=mod.Response(529, request=sreq), body=None)
        assert _from_exception(overloaded) == ProviderFeedback(throttled=True)


# ------------------------------------------------- what the transports read


def test_default_estimate():
    openai_body = {"model": "m", "messages": [
        {"role": "system", "content": "a" * 10},
        {"role": "user", "content": [{"type": "text", "text": "b" * 7}, {"type": "image_url", "image_url": {}}]},
    ], "max_completion_tokens": 5}
    assert default_estimate(openai_body) == 5 + 5  # ceil(17 / 4) + 5
    anthropic_body = {"system": [{"type": "text", "text": "s" * 8}], "messages": [{"role": "user", "content": "u" * 8}],
                      "max_tokens": 100}
    assert default_estimate(anthropic_body) == 4 + 100
    assert default_estimate({"system": "s" * 4, "messages": [], "max_tokens": 3, "max_completion_tokens": 9}) == 4
    assert default_estimate({"messages": [{"content": None}, "x"]}) == 1
    assert default_estimate(None) == default_estimate([1, 2]) == 1
    assert default_estimate({"messages": [], "max_tokens": -5}) == 1


def _usage_of(kind, chunks, encoding=None):
    usage = _Usage(kind, _decoder(encoding))
    for chunk in chunks:
        usage.feed(chunk)
    return usage.tokens()


def _split(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_usage_of_json_bodies():
    openai_body = json.dumps({"usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}).encode()
    assert _usage_of("json", _split(openai_body, 5)) == 18
    assert _usage_of("json", [json.dumps({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()]) == 7
    anthropic_body = json.dumps({"type": "message", "usage": {"input_tokens": 25, "output_tokens": 15}}).encode()
    assert _usage_of("json", _split(gzip.compress(anthropic_body), 7), "gzip") == 40
    assert _usage_of("json", [b'{"id": "x"}']) is None
    assert _usage_of("json", [b"not json"]) is None
    assert _usage_of("json", [b'{"usage": {"total_tokens": "many"}}']) is None
    assert _usage_of("json", [b"garbage"], "gzip") is None
    assert _decoder("br") is None and _decoder("gzip, br") is None


def _sse(events, named=False):
    out = b""
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        if named:
            out += f"event: {event['type']}\r\n".encode()
        out += f"data: {data}\r\n\r\n".encode()
    return out


def test_usage_of_openai_streams():
    chunks = [{"choices": [{"delta": {"content": "hi"}}], "usage": None},
              {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}, "[DONE]"]
    body = _sse(chunks)
    for size in (1, 3, 64, len(body)):
        assert _usage_of("sse", _split(body, size)) == 12
    assert _usage_of("sse", [_sse(chunks[:1] + ["[DONE]"])]) is None  # no include_usage: the estimate stands
    # A last line without its newline still counts.
    assert _usage_of("sse", [b'data: {"usage": {"total_tokens": 5}}']) == 5


def test_usage_of_anthropic_streams():
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
        {"type": "message_stop"},
    ]
    body = _sse(events, named=True)
    assert _usage_of("sse", _split(body, 10)) == 40
    assert _usage_of("sse", _split(gzip.compress(body), 10), "gzip") == 40
    # Cut off after message_start: what it said so far.
    assert _usage_of("sse", [_sse(events[:1], named=True)]) == 26
    assert _usage_of("sse", [b"data: {broken\n\n"]) is None
