"""Provider feedback against a real server: what a lease records goes with
its release, client.report without a lease, an SDK's 429 inside
``acquire``, and the one-line wrappers of the real ``openai`` and
``anthropic`` packages against the fake provider (test/fixtures/fake-provider.mjs)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import anthropic
import httpx
import openai
import pytest

import ratequeue
import ratequeue.aio as rq
import ratequeue.anthropic
import ratequeue.openai
from ratequeue import DimensionFeedback, ProviderFeedback
from ratequeue.httpx import AsyncRateQueueTransport, RateQueueTransport

from conftest import wait_for

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something " * 8}]


@pytest.fixture
def stats(server):
    """A resource's stats as the client's dataclasses (ratequeue.ResourceStats)."""
    with ratequeue.Admin(server.url) as a:
        yield a.resource_stats


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _token_budget(admin, **kw) -> str:
    """A load limit of 10,000 a second per hour, burst 10,000: what the calls
    were charged shows in ``used_last_period`` for an hour, and no wait after
    a pause (which leaves no burst) is long."""
    return admin.put(load_rate=10000, load_burst=10000, period=3600, **kw)


# ------------------------------------------------------------ the lease API


def test_a_throttled_release_pauses_the_resource_and_refunds_its_load(url, admin, stats):
    name = _token_budget(admin)
    with ratequeue.acquire(name, load=3000) as lease:
        assert stats(name).limits[0].used_last_period == 3000
        lease.report(throttled=True, retry_after=dt.timedelta(seconds=1.5))
    st = stats(name)
    assert st.throttles == 1
    assert st.paused_until is not None and 1.2 < (st.paused_until - _now()).total_seconds() <= 1.5
    # Nothing is granted inside the pause; a waiting acquire is granted after it.
    assert st.limits[0].used_last_period == 0  # no actual load: refunded
    with pytest.raises(ratequeue.AcquireTimeout):
        ratequeue.acquire(name, timeout=0).__enter__()
    with ratequeue.acquire(name) as lease:
        assert _now() >= st.paused_until
        assert lease.wait_time > 1.0


def test_a_throttled_release_with_an_actual_load_is_charged_it(url, admin, stats):
    name = _token_budget(admin)
    with ratequeue.acquire(name, load=3000) as lease:
        lease.report(throttled=True, retry_after=0.01)
        lease.actual_load = 500
    assert stats(name).limits[0].used_last_period == 500


def test_observed_headers_lower_the_budget_and_teach_the_limit(url, admin, stats):
    name = admin.put(rate=600 / 60, burst=100, period=60)  # 600 a minute, burst 100
    with ratequeue.acquire(name) as lease:
        lease.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "3",
                       "x-ratelimit-reset-requests": "1s"}, 200)
        assert lease.feedback == ProviderFeedback(requests=DimensionFeedback(limit=60, remaining=3, reset=1.0))
    limit = stats(name).limits[0]
    assert limit.available < 3.1  # 3, and what refilled since
    assert limit.learned_amount == 60


def test_an_async_lease_sends_its_feedback_with_the_release(url, admin, stats):
    name = admin.put(rate=600 / 60, burst=100, period=60)  # 600 a minute, burst 100

    async def main():
        async with rq.acquire(name, load=100) as lease:
            lease.observe({"retry-after-ms": "800"}, 529)
        assert stats(name).paused_until is not None
        lease = await rq.Client().acquire_lease(name, load=100)
        assert lease.wait_time > 0.6  # granted after the pause
        lease.report(requests={"remaining": 2})
        assert await lease.release() == "RELEASED"

    asyncio.run(main())
    st = stats(name)
    assert st.throttles == 1
    assert st.limits[0].available < 3  # 2, and what refilled since (10 a second)


def test_client_report_without_a_lease(url, admin, stats):
    name = admin.put(rate=10, burst=10)
    client = ratequeue.Client()
    assert client.report(name, ProviderFeedback(requests=DimensionFeedback(remaining=5))) is None
    until = client.report(name, {"throttled": True, "retry_after": 2})
    assert until is not None and 1.8 < (until - _now()).total_seconds() <= 2.0
    assert stats(name).paused_until == until

    async def main():
        feedback = ratequeue.feedback.parse_headers({"retry-after": "3"}, 429)
        return await rq.Client().report(name, feedback)

    later = asyncio.run(main())
    assert later is not None and later > until  # the latest pause wins
    assert stats(name).throttles == 2
    with pytest.raises(ratequeue.ResourceNotFound):
        client.report("no-such-resource", {"throttled": True})
    with pytest.raises(ratequeue.InvalidRequest, match=r"^feedback\.retry_after: "):
        client.report(name, {"throttled": True, "retry_after": -1})


def _rate_limit_error() -> openai.RateLimitError:
    request = openai.DefaultHttpxClient.__mro__[1].__module__  # the SDK's own httpx package
    http = __import__(request.partition(".")[0])
    response = http.Response(429, headers={"retry-after": "1", "x-ratelimit-remaining-tokens": "0"},
                             request=http.Request("POST", "https://api.openai.com/v1/chat/completions"))
    return openai.RateLimitError("Rate limit reached", response=response, body=None)


def test_an_sdk_rate_limit_error_inside_acquire_is_reported_then_raised(url, admin, stats):
    name = _token_budget(admin)
    with pytest.raises(openai.RateLimitError):
        with ratequeue.acquire(name, load=2000):
            raise _rate_limit_error()
    st = stats(name)
    assert st.throttles == 1 and st.paused_until is not None
    assert st.limits[0].used_last_period == 0  # refunded

    other = _token_budget(admin)

    async def main():
        async with rq.acquire(other, load=2000):
            req = httpx.Request("GET", "https://example.com")
            resp = httpx.Response(503, request=req)
            resp.raise_for_status()

    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(main())
    st = stats(other)
    assert st.throttles == 1 and st.limits[0].used_last_period == 0

    # Any other exception reports nothing.
    with pytest.raises(ZeroDivisionError):
        with ratequeue.acquire(other, load=1):
            1 / 0
    assert stats(other).throttles == 1


def test_limited_reports_a_rate_limit_error_too(url, admin, stats):
    name = _token_budget(admin)

    @ratequeue.limited(name, load=100)
    def call():
        raise _rate_limit_error()

    with pytest.raises(openai.RateLimitError):
        call()
    assert stats(name).throttles == 1


# ----------------------------------------------------- the SDK wrappers


def _openai(provider, name, *, async_=False, **kw):
    cls = openai.AsyncOpenAI if async_ else openai.OpenAI
    return ratequeue.openai.wrap(cls(base_url=provider.url + "/v1", api_key="sk-test", max_retries=0), name, **kw)


def _anthropic(provider, name, *, async_=False, **kw):
    cls = anthropic.AsyncAnthropic if async_ else anthropic.Anthropic
    return ratequeue.anthropic.wrap(cls(base_url=provider.url, api_key="sk-test", max_retries=0), name, **kw)


def test_openai_wrapper_reconciles_tokens_sync(url, admin, stats, fake_provider):
    provider = fake_provider("--rpm", "6000")
    name = _token_budget(admin, concurrency=1)
    client = _openai(provider, name)
    def used():
        return stats(name).limits[0].used_last_period

    resp = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    tokens = resp.usage.total_tokens
    assert used() == tokens
    # A stream with its usage: released when read to the end.
    stream = client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.total_tokens == tokens
    assert used() == 2 * tokens
    # Without usage in the stream the estimate stands: ceil(chars / 4) + max_tokens.
    chars = sum(len(m["content"]) for m in MESSAGES)
    for _ in client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True, max_tokens=50):
        pass
    assert used() == 2 * tokens + -(-chars // 4) + 50
    # A stream closed early is released too (concurrency 1: the next call would wait forever).
    stream = client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert stats(name).leases_in_flight == 0
    assert provider.stats()["ok"] == 5


def test_openai_wrapper_async_and_a_custom_estimate(url, admin, stats, fake_provider):
    provider = fake_provider("--rpm", "6000")
    name = _token_budget(admin)
    seen = []

    def estimate(body):
        seen.append(body["model"])
        return 777

    client = _openai(provider, name, async_=True, estimate=estimate, priority=50)

    async def main():
        resp = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True,
                                                      stream_options={"include_usage": True})
        last = None
        async for chunk in stream:
            last = chunk
        # The estimate of a call whose answer gives no usage stands.
        async for _ in await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True):
            pass
        return resp.usage.total_tokens + last.usage.total_tokens

    used = asyncio.run(main())
    assert seen == ["gpt-test"] * 3
    assert stats(name).limits[0].used_last_period == used + 777
    assert stats(name).leases_in_flight == 0


def test_anthropic_wrapper_reconciles_tokens(url, admin, stats, fake_provider):
    provider = fake_provider("--rpm", "6000", "--style", "anthropic")
    name = _token_budget(admin)
    client = _anthropic(provider, name)
    msg = client.messages.create(model="claude-test", max_tokens=200, system="Be brief.",
                                 messages=[{"role": "user", "content": "Say something " * 8}])
    tokens = msg.usage.input_tokens + msg.usage.output_tokens
    assert stats(name).limits[0].used_last_period == tokens
    with client.messages.stream(model="claude-test", max_tokens=200,
                                messages=[{"role": "user", "content": "Say something " * 8}]) as stream:
        final = stream.get_final_message()
    streamed = final.usage.input_tokens + final.usage.output_tokens
    assert stats(name).limits[0].used_last_period == tokens + streamed

    aclient = _anthropic(provider, name, async_=True)

    async def main():
        stream = await aclient.messages.create(model="claude-test", max_tokens=200, stream=True,
                                               messages=[{"role": "user", "content": "Say something " * 8}])
        async for _ in stream:
            pass

    asyncio.run(main())
    st = stats(name)
    assert st.limits[0].used_last_period == tokens + 2 * streamed
    assert st.leases_in_flight == 0


@pytest.mark.parametrize("style", ["openai", "anthropic"])
def test_a_429_pauses_the_resource_and_feedback_false_reports_nothing(url, admin, stats, fake_provider, style):
    # The provider allows one call a second (burst 1); the resource 100 a second.
    provider = fake_provider("--rpm", "60", "--style", style)
    wrap = _openai if style == "openai" else _anthropic
    error = openai.RateLimitError if style == "openai" else anthropic.RateLimitError

    def call(client):
        if style == "openai":
            client.chat.completions.create(model="m", messages=MESSAGES)
        else:
            client.messages.create(model="m", max_tokens=20, messages=MESSAGES[1:])

    quiet = admin.put(rate=100, burst=10)
    client = wrap(provider, quiet, feedback=False)
    call(client)
    with pytest.raises(error):
        call(client)
    assert stats(quiet).throttles == 0 and stats(quiet).paused_until is None

    # With feedback, the first answer's headers (none left, 60 a minute) hold
    # the second call until the provider has refilled: no 429.
    time.sleep(1.1)
    told = admin.put(rate=100, burst=10, load_rate=10000, load_burst=10000, period=3600)
    client = wrap(provider, told)
    call(client)
    call(client)
    assert provider.stats()["throttled"] == 1
    st = stats(told)
    # 60 a minute, per the limit's period (an hour here).
    assert st.throttles == 0 and st.limits[0].learned_amount == 3600

    # Another caller the resource does not know of drains the provider: the
    # 429 pauses the resource for the provider's retry-after-ms, and the
    # refused call's estimate is refunded.
    time.sleep(1.1)
    path = "/v1/chat/completions" if style == "openai" else "/v1/messages"
    httpx.post(provider.url + path, json={"model": "m", "max_tokens": 5, "messages": MESSAGES[1:]})
    spent = stats(told).limits[1].used_last_period
    with pytest.raises(error):
        call(client)
    st = stats(told)
    assert st.throttles == 1 and st.paused_until is not None
    assert 0 < (st.paused_until - _now()).total_seconds() <= 1.0
    assert st.limits[1].used_last_period == spent
    # The SDK's own retry waits for the pause, and gets through.
    retrying = (openai.OpenAI(base_url=provider.url + "/v1", api_key="k", max_retries=3) if style == "openai"
                else anthropic.Anthropic(base_url=provider.url, api_key="k", max_retries=3))
    call(ratequeue.openai.wrap(retrying, told) if style == "openai" else ratequeue.anthropic.wrap(retrying, told))


def test_the_transport_with_a_plain_httpx_client(url, admin, stats):
    """Any httpx-based client: a 429 answer is released throttled; a JSON
    body's usage reconciles; a non-JSON body keeps its estimate."""
    name = _token_budget(admin)
    answers = iter([
        httpx.Response(429, headers={"retry-after": "0.5"}, json={"error": "slow down"}),
        httpx.Response(200, json={"usage": {"total_tokens": 42}}),
        httpx.Response(200, text="plain"),
    ])
    base = httpx.MockTransport(lambda request: next(answers))
    with httpx.Client(transport=RateQueueTransport(name, transport=base, estimate=lambda body: 100)) as http:
        assert http.post("http://provider/v1/x", json={}).status_code == 429
        st = stats(name)
        assert st.throttles == 1 and st.limits[0].used_last_period == 0
        assert http.post("http://provider/v1/x", json={}).json() == {"usage": {"total_tokens": 42}}
        assert stats(name).limits[0].used_last_period == 42
        assert http.get("http://provider/v1/y").text == "plain"
        assert stats(name).limits[0].used_last_period == 142

    async def main():
        abase = httpx.MockTransport(lambda request: httpx.Response(200, json={"usage": {"input_tokens": 7,
                                                                                        "output_tokens": 3}}))
        async with httpx.AsyncClient(transport=AsyncRateQueueTransport(name, transport=abase)) as http:
            return (await http.post("http://provider/v1/messages", json={"messages": []})).json()

    assert asyncio.run(main())["usage"]["input_tokens"] == 7
    assert stats(name).limits[0].used_last_period == 152
    assert stats(name).leases_in_flight == 0


def test_the_default_base_transport_is_of_the_clients_package(url, admin, stats, fake_provider):
    """httpx, or httpx2 for an SDK's own client: the transport makes an
    HTTPTransport of the package the requests come from."""
    import openai as sdk

    provider = fake_provider("--rpm", "6000")
    name = _token_budget(admin)
    body = {"model": "m", "messages": MESSAGES}
    with httpx.Client(transport=RateQueueTransport(name)) as http:
        assert http.post(provider.url + "/v1/chat/completions", json=body).status_code == 200
    client = sdk.OpenAI(base_url=provider.url + "/v1", api_key="k",
                        http_client=sdk.DefaultHttpxClient(transport=RateQueueTransport(name)))
    client.chat.completions.create(**body)

    async def main():
        async with httpx.AsyncClient(transport=AsyncRateQueueTransport(name)) as http:
            return (await http.post(provider.url + "/v1/chat/completions", json=body)).json()["usage"]["total_tokens"]

    tokens = asyncio.run(main())
    assert stats(name).limits[0].used_last_period == 3 * tokens
    assert provider.stats()["ok"] == 3


def test_anthropic_separate_token_budgets(url, stats, fake_provider):
    """Anthropic's input- and output-token headers reach the load limits
    that declare those units."""
    provider = fake_provider("--rpm", "6000", "--itpm", "30000", "--otpm", "6000", "--style", "anthropic")
    with ratequeue.Admin() as a:
        a.put_resource({"name": "claude-units", "limits": [
            {"dimension": "load", "amount": 100000, "period": "1m", "unit": "input_tokens"},
            {"dimension": "load", "amount": 20000, "period": "1m", "unit": "output_tokens"},
        ]})
    client = _anthropic(provider, "claude-units")
    client.messages.create(model="claude-test", max_tokens=64, messages=MESSAGES[1:])
    assert [l.learned_amount for l in stats("claude-units").limits] == [30000, 6000]
