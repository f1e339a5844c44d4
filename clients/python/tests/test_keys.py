"""Keys and resource trees against the real server: an acquire with a key
is charged to the keyed child "RESOURCE/KEY" (its own quota inside the
shared limit), in the async and sync APIs, the decorator, the httpx
transport and LangChain; the admin clients put and read parents, children
and per_key templates, list a resource's children a page at a time, and read
children and parent in the stats.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
import httpx
import pytest

import ratequeue
import ratequeue.aio as rq
from ratequeue.httpx import RateQueueTransport

from conftest import wait_for

_names = itertools.count(1)


def fresh(prefix: str) -> str:
    """A resource name no other test of the session's server uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}-{int(time.time() * 1000) % 100000}"


@pytest.fixture
def radmin(server):
    with ratequeue.Admin(server.url) as a:
        yield a


def keyed_parent(radmin, *, concurrency: int = 1, **fields) -> str:
    """A root resource whose keyed children hold ``concurrency`` leases each."""
    name = fresh(fields.pop("prefix", "tree"))
    radmin.put_resource({"name": name, "concurrency": 100, "per_key": {"concurrency": concurrency}, **fields})
    return name


def test_an_acquire_with_a_key_waits_for_its_own_child_only(url, radmin):
    """A keyed child with concurrency 1: a second acquire of the same key
    waits, while another key is granted at once; the release lets it in."""
    parent = keyed_parent(radmin)

    async def main() -> None:
        async with rq.acquire(parent, key="cust-1", timeout=10) as first:
            assert first.resource == f"{parent}/cust-1"
            second = asyncio.ensure_future(rq.Client().acquire_lease(parent, key="cust-1"))
            await asyncio.to_thread(wait_for, lambda: radmin.resource_stats(f"{parent}/cust-1").lanes[0].queue_depth == 1)
            async with rq.acquire(parent, key="cust-2", timeout=5) as other:
                assert other.resource == f"{parent}/cust-2"
            assert not second.done()
            with pytest.raises(ratequeue.AcquireTimeout):
                await rq.Client().acquire_lease(parent, key="cust-1", timeout=0)
        lease = await asyncio.wait_for(second, 10)
        assert lease.resource == f"{parent}/cust-1"
        await lease.release()

    asyncio.run(main())
    stats = radmin.resource_stats(parent)
    assert stats.grants == 3  # charged at the parent too
    assert stats.leases_in_flight == 0


def test_the_sync_api_and_the_decorator_take_a_key(url, radmin):
    parent = keyed_parent(radmin)
    with ratequeue.acquire(parent, key="alice", timeout=10) as lease:
        assert lease.resource == f"{parent}/alice"
        assert radmin.resource_stats(parent).leases_in_flight == 1
        with pytest.raises(ratequeue.AcquireTimeout):
            ratequeue.Client().acquire_lease(parent, key="alice", timeout=0)
        bob = ratequeue.Client().acquire_lease(parent, key="bob", timeout=10)
        assert bob.resource == f"{parent}/bob"
        assert bob.release() == "RELEASED"

    @ratequeue.limited(parent, key=lambda customer, text: customer, timeout=10)
    def call(customer: str, text: str) -> str:
        return text

    @ratequeue.limited(parent, key="carol", timeout=10)
    async def acall(text: str) -> str:
        return text

    assert call("dave", "hi") == "hi"
    assert asyncio.run(acall("hey")) == "hey"
    children = {r.name: r for r in radmin.list_resources(parent=parent)}
    assert set(children) == {f"{parent}/{k}" for k in ("alice", "bob", "carol", "dave")}
    assert all(r.keyed and r.parent == parent for r in children.values())


def test_a_declared_child_overrides_the_template_for_its_key(url, radmin):
    parent = keyed_parent(radmin)
    radmin.put_resource({"name": f"{parent}/big", "parent": parent, "concurrency": 2, "share": 4})
    with ratequeue.acquire(parent, key="big", timeout=10) as one:
        with ratequeue.acquire(parent, key="big", timeout=10) as two:  # the declared child's cap is 2
            assert one.resource == two.resource == f"{parent}/big"
    # Naming the child directly, without a key, is the same child.
    with ratequeue.acquire(f"{parent}/big", timeout=10) as lease:
        assert lease.resource == f"{parent}/big"


@pytest.mark.parametrize("key, why", [
    ("has space", "key: "),
    ("at@sign", "key: "),
    ("x" * 129, "key: "),
    ("", "key: must not be empty"),  # the client's own check: the server would read it as no key
    (42, "key: must be a string"),
])
def test_an_invalid_key_is_invalid_request(url, radmin, key, why):
    parent = keyed_parent(radmin)
    with pytest.raises(ratequeue.InvalidRequest) as e:
        ratequeue.Client().acquire_lease(parent, key=key, timeout=5)
    assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message.startswith(why), e.value.message

    async def in_async() -> None:
        with pytest.raises(ratequeue.InvalidRequest):
            async with rq.acquire(parent, key=key, timeout=5):
                pass

    asyncio.run(in_async())


def test_a_key_on_a_resource_without_per_key_is_invalid_request(url, radmin):
    name = fresh("flat")
    radmin.put_resource({"name": name})
    with pytest.raises(ratequeue.InvalidRequest):
        with ratequeue.acquire(name, key="k", timeout=5):
            pass


def test_a_tree_round_trips_through_the_admin_client(server, radmin):
    root = fresh("gpt")
    definition = {
        "name": root,
        "limits": [{"dimension": "requests", "amount": 500, "period": "60s", "burst": 20}],
        "concurrency": 16,
        "per_key": {"limits": [{"dimension": "requests", "amount": 60, "period": "60s", "burst": 5}],
                    "concurrency": 4},
        "per_key_idle": "90s",
        "children_from": ["team-a"],
    }
    stored, created = radmin.put_resource(definition)
    assert created
    assert stored.parent is None and stored.share is None and not stored.keyed
    assert stored.per_key == ratequeue.KeyedChildTemplate(
        limits=[ratequeue.Limit("requests", 60, timedelta(seconds=60), 5)], concurrency=4, share=1)  # share filled in
    assert stored.per_key_idle == timedelta(seconds=90)
    assert stored.children_from == ["team-a"]
    assert radmin.get_resource(root) == stored
    assert radmin.put_resource(stored) == (stored, False)

    # The dataclass shapes work as the dicts do; per_key_idle is filled in.
    child = ratequeue.Resource(f"{root}/enterprise-42", parent=root, share=4,
                               limits=[ratequeue.Limit("requests", 200, "60s")],
                               per_key=ratequeue.KeyedChildTemplate(concurrency=1))
    got, _ = radmin.put_resource(child)
    assert (got.parent, got.share, got.keyed) == (root, 4, False)
    assert got.per_key == ratequeue.KeyedChildTemplate([], 1, 1)
    assert got.per_key_idle == timedelta(minutes=10)
    assert radmin.get_resource(child.name) == got
    assert radmin.put_resource(got) == (got, False)

    # A declared child without a share gets 1.
    plain, _ = radmin.put_resource({"name": f"{root}/plain", "parent": root})
    assert plain.share == 1

    # A parent must exist first; one with declared children cannot be deleted.
    with pytest.raises(ratequeue.ResourceNotFound):
        radmin.put_resource({"name": fresh("orphan"), "parent": fresh("missing")})
    with pytest.raises(ratequeue.RateQueueError) as e:
        radmin.delete_resource(root)
    assert e.value.code is grpc.StatusCode.FAILED_PRECONDITION
    radmin.delete_resource(f"{root}/plain")
    radmin.delete_resource(child.name)
    radmin.delete_resource(root)


@pytest.mark.parametrize("fields, message", [
    ({"per_key": {"limits": [{"dimension": "rps", "amount": 1, "period": "1s"}]}},
     "resource.per_key.limits[0].dimension: must be 'requests' or 'load'"),
    ({"per_key": {"concurency": 1}}, "resource.per_key.concurency: unknown key"),
    ({"per_key": 4}, "resource.per_key: must be a KeyedChildTemplate or a mapping"),
    ({"per_key_idle": "soon"}, "resource.per_key_idle: 'soon' is not a duration"),
    ({"children_from": "team-a"}, "resource.children_from: must be a list"),
    ({"share": -1}, "resource.share: must be an integer"),
    # Refused by the server.
    ({"share": 5000}, "resource.share:"),
    ({"per_key": {"share": 5000}}, "resource.per_key.share:"),
    ({"per_key": {}, "per_key_idle": "10ms"}, "resource.per_key_idle:"),
])
def test_bad_tree_fields_are_invalid_request_naming_the_field(radmin, fields, message):
    with pytest.raises(ratequeue.InvalidRequest) as e:
        radmin.put_resource({"name": fresh("refused"), **fields})
    assert e.value.message.startswith(message), e.value.message


def test_children_are_listed_a_page_at_a_time(url, radmin):
    parent = keyed_parent(radmin)
    radmin.put_resource({"name": f"{parent}/declared", "parent": parent})
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        with ratequeue.acquire(parent, key=key, timeout=10):
            pass
    expected = sorted([f"{parent}/declared"] + [f"{parent}/{k}" for k in keys])

    pages = [radmin.list_resources(parent=parent, page_size=2)]
    while pages[-1].next_page_token:
        pages.append(radmin.list_resources(parent=parent, page_size=2, page_token=pages[-1].next_page_token))
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [r.name for p in pages for r in p] == expected
    assert [r.keyed for p in pages for r in p] == [r != f"{parent}/declared" for r in expected]

    # Without a page size, one page (children come at most 1000 a page).
    everything = radmin.list_resources(parent=parent)
    assert isinstance(everything, ratequeue.ResourcePage) and everything.next_page_token == ""
    assert [r.name for r in everything] == expected
    # The namespace's listing has the declared resources only: keyed
    # children are listed through their parent.
    names = {r.name for r in radmin.list_resources()}
    assert {parent, f"{parent}/declared"} <= names and not {f"{parent}/{k}" for k in keys} & names
    with pytest.raises(ratequeue.ResourceNotFound):
        radmin.list_resources(parent=fresh("missing"))
    with pytest.raises(ratequeue.InvalidRequest, match="^page_token: "):
        radmin.list_resources(page_token="not a token")


def test_stats_show_children_and_parent(url, radmin):
    parent = keyed_parent(radmin, limits=[{"dimension": "load", "amount": 1000, "period": "1d"}])
    client = ratequeue.Client()
    held = [client.acquire_lease(parent, key=k, load=load, timeout=10) for k, load in
            (("a", 10), ("b", 20), ("c", 30))]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.acquire_lease, parent, key="c", timeout=30)
        try:
            wait_for(lambda: radmin.resource_stats(f"{parent}/c").lanes[0].queue_depth == 1)
            stats = radmin.resource_stats(parent, children_limit=2)
            assert stats.children_count == 3 and stats.parent is None
            assert stats.leases_in_flight == 3
            # The busiest first: the child with a waiter, then one of the others.
            assert len(stats.children) == 2
            assert stats.children[0] == ratequeue.ChildStats(
                name=f"{parent}/c", share=1, keyed=True, leases_in_flight=1, queue_depth=1, grants=1,
                load_granted=30.0)
            assert stats.children[1].name in (f"{parent}/a", f"{parent}/b")
            assert {c.name for c in radmin.resource_stats(parent).children} == {f"{parent}/{k}" for k in "abc"}

            child = radmin.resource_stats(f"{parent}/a")
            assert child.children == () and child.children_count == 0
            assert isinstance(child.parent, ratequeue.ParentStats)
            assert (child.parent.name, child.parent.leases_in_flight, child.parent.queue_depth) == (parent, 3, 1)
            (limit,) = child.parent.limits
            assert limit.limit == ratequeue.Limit("load", 1000, timedelta(days=1), 1000)
            assert limit.used_last_period == 60
        finally:
            for lease in held:
                lease.release()
            waiting.result(30).release()


def test_the_httpx_transport_charges_the_key_its_function_gives(url, radmin):
    parent = keyed_parent(radmin, concurrency=5)
    answer = httpx.MockTransport(lambda request: httpx.Response(200, json={"usage": {"total_tokens": 3}}))
    transport = RateQueueTransport(parent, transport=answer, key=lambda body: body.get("user"))
    with httpx.Client(transport=transport) as http:
        for user in ("u1", "u2", "u1"):
            assert http.post("https://provider.invalid/v1/chat", json={"user": user, "messages": []}).status_code == 200
        http.post("https://provider.invalid/v1/chat", json={"messages": []})  # None: the parent itself
    children = {r.name: radmin.resource_stats(r.name).grants for r in radmin.list_resources(parent=parent)}
    assert children == {f"{parent}/u1": 2, f"{parent}/u2": 1}
    assert radmin.resource_stats(parent).grants == 4

    fixed = RateQueueTransport(parent, transport=answer, key="u3")
    with httpx.Client(transport=fixed) as http:
        http.post("https://provider.invalid/v1/chat", json={"messages": []})
    assert radmin.resource_stats(f"{parent}/u3").grants == 1


def test_langchain_takes_a_key(url, radmin):
    from langchain_core.runnables import RunnableLambda

    from ratequeue.langchain import RateQueueRateLimiter, with_ratequeue

    parent = keyed_parent(radmin)
    echo = with_ratequeue(RunnableLambda(lambda x: x["text"]), parent, key=lambda x: x["customer"], timeout=10)
    assert echo.invoke({"customer": "acme", "text": "hi"}) == "hi"
    assert asyncio.run(echo.ainvoke({"customer": "globex", "text": "yo"})) == "yo"
    limiter = RateQueueRateLimiter(parent, key="initech", timeout=10)
    assert limiter.acquire()
    assert {r.name for r in radmin.list_resources(parent=parent)} == {
        f"{parent}/{k}" for k in ("acme", "globex", "initech")}
