"""``ratequeue.Admin`` and ``ratequeue.aio.Admin`` against a real server with
keys on: resources in the config file's shape in and out (the server's
defaults filled in, so get then put stores the same resource), statistics
and keys as dataclasses, the ``RATEQUEUE_URL`` / ``RATEQUEUE_API_KEY``
defaults, and input refused with ``InvalidRequest`` naming the field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import timedelta

import pytest

import ratequeue
import ratequeue.aio
from conftest import start_server

ROOT_KEY = "py-admin-test-root-key-0123456789abcdefghij"


CONFIG = """\
namespaces:
  team-n:
    resources:
      seeded-in-n: { concurrency: 1 }
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("admin") / "ratequeue.yaml"
    cfg.write_text(CONFIG)
    s = start_server(cfg, env={"RATEQUEUE_ROOT_KEY": ROOT_KEY})
    yield s
    assert s.stop() == 0, "".join(s.log[-20:])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("RATEQUEUE_URL", "RATEQUEUE_API_KEY", "RATEQUEUE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def admin(srv):
    with ratequeue.Admin(srv.url, api_key=ROOT_KEY) as a:
        yield a


def test_a_dict_in_the_config_files_shape_comes_back_as_stored(admin):
    definition = {
        "name": "openai-gpt4",
        "limits": [
            {"dimension": "requests", "amount": 500, "period": "1m", "burst": 20},
            {"dimension": "load", "amount": 30000, "period": 60},
        ],
        "concurrency": 8,
        "lanes": {"user-facing": 3, "batch": 1},
        "default_lane": "batch",
        "lease_ttl": "1.5m",
        "max_queue": 100,
    }
    stored = ratequeue.Resource(
        name="openai-gpt4",
        limits=[
            ratequeue.Limit("requests", 500, timedelta(seconds=60), 20),
            ratequeue.Limit("load", 30000, timedelta(seconds=60), 30000),  # burst filled in
        ],
        concurrency=8,
        lanes={"user-facing": 3, "batch": 1},
        default_lane="batch",
        lease_ttl=timedelta(seconds=90),
        max_queue=100,
        cooldown=timedelta(seconds=1),  # the defaults, filled in
        learn_limits=True,
    )
    assert admin.put_resource(definition) == (stored, True)
    assert admin.get_resource("openai-gpt4") == stored
    assert list(admin.get_resource("openai-gpt4").lanes) == ["user-facing", "batch"]  # in order
    assert admin.put_resource(definition) == (stored, False)


def test_a_resource_with_only_a_name_gets_the_defaults_and_round_trips(admin):
    admin.put_resource(ratequeue.Resource("bare"))
    got = admin.get_resource("bare")
    assert got == ratequeue.Resource(name="bare", limits=[], concurrency=0, lanes={"default": 1},
                                     default_lane="default", lease_ttl=timedelta(seconds=30), max_queue=10000,
                                     cooldown=timedelta(seconds=1), learn_limits=True)
    assert admin.put_resource(got) == (got, False)
    assert admin.get_resource("bare") == got


def test_the_provider_feedback_settings_round_trip(admin):
    definition = {
        "name": "claude",
        "limits": [
            {"dimension": "requests", "amount": 50, "period": "1m"},
            {"dimension": "load", "amount": 40000, "period": "1m", "unit": "input_tokens"},
            {"dimension": "load", "amount": 8000, "period": "1m", "unit": "output_tokens"},
        ],
        "cooldown": "2s",
        "learn_limits": False,
    }
    stored, _ = admin.put_resource(definition)
    assert [l.unit for l in stored.limits] == ["", "input_tokens", "output_tokens"]
    assert (stored.cooldown, stored.learn_limits) == (timedelta(seconds=2), False)
    assert admin.get_resource("claude") == stored
    stats = admin.resource_stats("claude")
    assert stats.paused_until is None and stats.throttles == 0
    assert [l.learned_amount for l in stats.limits] == [None, None, None]
    with pytest.raises(ratequeue.InvalidRequest, match=r"^resource\.learn_limits: "):
        admin.put_resource({"name": "x", "learn_limits": "yes"})
    with pytest.raises(ratequeue.InvalidRequest, match=r"^resource\.cooldown: "):
        admin.put_resource({"name": "x", "cooldown": "soon"})


@pytest.mark.parametrize("period, seconds", [
    ("500ms", 0.5), ("1.5s", 1.5), ("1.5m", 90), ("1h", 3600), ("1d", 86400),
    (90, 90), (0.25, 0.25), (timedelta(milliseconds=2500), 2.5),
])
def test_durations_are_read_like_the_config_file_and_come_back_as_timedelta(admin, period, seconds):
    resource, _ = admin.put_resource({"name": "periods", "limits": [{"dimension": "requests", "amount": 1,
                                                                      "period": period}]})
    assert resource.limits[0].period == timedelta(seconds=seconds)
    assert admin.get_resource("periods").limits[0].period == timedelta(seconds=seconds)


def test_list_returns_every_resource_ordered_by_name(admin):
    admin.put_resource({"name": "list-b", "concurrency": 2})
    admin.put_resource(ratequeue.Resource("list-a", limits=[{"dimension": "load", "amount": 10, "period": "1s"}]))
    listed = [r for r in admin.list_resources() if r.name.startswith("list-")]
    assert listed == [admin.get_resource("list-a"), admin.get_resource("list-b")]
    assert listed[0].limits == [ratequeue.Limit("load", 10, timedelta(seconds=1), 10)]


def test_stats_are_plain_numbers_and_timedeltas(srv, admin):
    admin.put_resource({"name": "measured", "limits": [{"dimension": "load", "amount": 100, "period": "1d"}],
                        "lanes": {"fast": 2, "slow": 1}})
    client = ratequeue.Client(srv.url, api_key=ROOT_KEY)
    try:
        with client.acquire("measured", load=40, lane="slow", timeout=5):
            stats = admin.resource_stats("measured")
        assert stats.name == "measured" and stats.leases_in_flight == 1
        assert stats.lanes == (ratequeue.LaneStats("fast", 2, 0, 0, 0.0), ratequeue.LaneStats("slow", 1, 0, 1, 40.0))
        (limit,) = stats.limits
        assert limit.limit == ratequeue.Limit("load", 100, timedelta(days=1), 100)
        assert limit.available == pytest.approx(60, abs=0.5)
        assert limit.utilisation == pytest.approx(0.4, abs=0.005)
        assert limit.used_last_period == 40
        assert (stats.grants, stats.rejections, stats.timeouts, stats.cancellations, stats.expirations) == (1, 0, 0, 0, 0)
        for wait in (stats.wait_p50, stats.wait_p90, stats.wait_p99, stats.wait_max):
            assert isinstance(wait, timedelta) and wait >= timedelta(0)
        assert admin.resource_stats("measured").leases_in_flight == 0
    finally:
        client.close()


def test_delete_removes_the_resource(srv, admin):
    admin.put_resource({"name": "doomed", "concurrency": 1})
    admin.delete_resource("doomed")
    with pytest.raises(ratequeue.ResourceNotFound):
        admin.get_resource("doomed")
    client = ratequeue.Client(srv.url, api_key=ROOT_KEY)
    try:
        with pytest.raises(ratequeue.ResourceNotFound):
            client.acquire_lease("doomed", timeout=0)
    finally:
        client.close()
    with pytest.raises(ratequeue.ResourceNotFound):
        admin.delete_resource("doomed")


def test_keys_are_created_listed_and_revoked(srv, admin):
    before = dt.datetime.now(dt.timezone.utc)
    made = admin.create_key(role="admin", namespace="team-a", description="python admin test")
    assert made.key.startswith(f"rq_{made.id}_")
    assert (made.namespace, made.role, made.description) == ("team-a", "admin", "python admin test")
    assert before - timedelta(seconds=1) <= made.create_time <= dt.datetime.now(dt.timezone.utc) + timedelta(seconds=1)
    assert made.key not in repr(made)
    listed = admin.list_keys(namespace="team-a")
    assert listed == [ratequeue.ApiKey(made.id, "team-a", "admin", "python admin test", made.create_time)]
    assert listed[0].key is None
    assert listed[0] in admin.list_keys()

    # The new key acts in its own namespace, until it is revoked.
    with ratequeue.Admin(srv.url, api_key=made.key) as team:
        team.put_resource({"name": "team-only"})
        assert [r.name for r in team.list_resources()] == ["team-only"]
        admin.revoke_key(made.id)
        assert admin.list_keys(namespace="team-a") == []
        with pytest.raises(ratequeue.Unauthenticated):
            team.list_resources()
    with pytest.raises(ratequeue.InvalidRequest, match=r"^role: "):
        admin.create_key(role="boss")


def test_a_root_key_picks_the_namespace_with_the_namespace_option(srv, admin):
    with ratequeue.Admin(srv.url, api_key=ROOT_KEY, namespace="team-n") as in_team:
        in_team.put_resource({"name": "in-team-n"})
        assert [r.name for r in in_team.list_resources()] == ["in-team-n", "seeded-in-n"]
    assert not {"in-team-n", "seeded-in-n"} & {r.name for r in admin.list_resources()}


def test_url_and_key_default_to_the_environment(srv, monkeypatch):
    monkeypatch.setenv("RATEQUEUE_URL", srv.url)
    with ratequeue.Admin() as anonymous:
        with pytest.raises(ratequeue.Unauthenticated):
            anonymous.list_resources()
    monkeypatch.setenv("RATEQUEUE_API_KEY", ROOT_KEY)
    with ratequeue.Admin() as keyed:
        keyed.put_resource({"name": "from-env"})
        assert keyed.get_resource("from-env").name == "from-env"


def test_the_async_admin_works_from_one_event_loop_after_another(srv):
    admin = ratequeue.aio.Admin(srv.url, api_key=ROOT_KEY)

    async def put() -> ratequeue.Resource:
        resource, created = await admin.put_resource({"name": "async", "lease_ttl": 5})
        assert created
        return resource

    async def read_and_delete(expected: ratequeue.Resource) -> None:
        assert await admin.get_resource("async") == expected
        assert expected in await admin.list_resources()
        assert (await admin.resource_stats("async")).leases_in_flight == 0
        await admin.delete_resource("async")
        with pytest.raises(ratequeue.ResourceNotFound):
            await admin.get_resource("async")
        await admin.close()

    resource = asyncio.run(put())
    assert resource.lease_ttl == timedelta(seconds=5)
    asyncio.run(read_and_delete(resource))


@pytest.mark.parametrize("fields, message", [
    # Refused by the client: it cannot encode these.
    ({"limits": [{"dimension": "rps", "amount": 1, "period": "1s"}]}, "resource.limits[0].dimension: must be 'requests' or 'load'"),
    ({"limits": [{"dimension": "load", "amount": 1, "period": "5 minutes"}]}, "resource.limits[0].period: '5 minutes' is not a duration"),
    ({"limits": [{"dimension": "load", "amount": 1}]}, "resource.limits[0].period: is required"),
    ({"leaseTtl": "30s"}, "resource.leaseTtl: unknown key"),
    ({"concurrency": -1}, "resource.concurrency: must be an integer"),
    ({"lanes": {"a": 1.5}}, "resource.lanes.a: must be an integer"),
    ({"lease_ttl": "30"}, "resource.lease_ttl: '30' is not a duration"),
    # Refused by the server's validation.
    ({"limits": [{"dimension": "requests", "amount": 0, "period": "1s"}]}, "resource.limits[0].amount: must be greater than 0"),
    ({"lanes": {"a": 5000}}, "resource.lanes[0].weight:"),
    ({"lanes": {"a": 1}, "default_lane": "b"}, "resource.default_lane: 'b' is not one of the lanes"),
    ({"lease_ttl": "10ms"}, "resource.lease_ttl:"),
])
def test_bad_input_is_invalid_request_naming_the_field(admin, fields, message):
    with pytest.raises(ratequeue.InvalidRequest) as e:
        admin.put_resource({"name": "refused", **fields})
    assert e.value.message.startswith(message), e.value.message
    with pytest.raises(ratequeue.ResourceNotFound):
        admin.get_resource("refused")


def test_the_dataclasses_check_their_fields_when_built():
    with pytest.raises(ratequeue.InvalidRequest, match=r"^period: "):
        ratequeue.Limit("load", 1, "soon")
    with pytest.raises(ratequeue.InvalidRequest, match=r"^limits\[1\]\.dimension: "):
        ratequeue.Resource("r", limits=[ratequeue.Limit("load", 1, 1), {"dimension": "tokens", "amount": 1, "period": 1}])
    assert ratequeue.Limit("load", 1, "250ms").period == timedelta(milliseconds=250)


_forked_admin = None  # the parent's admin, inherited by forked children


def _get_in_child(name):
    return _forked_admin.get_resource(name).concurrency


def test_an_admin_used_before_a_fork_works_in_the_children_and_the_parent(admin):
    """The parent's channels are closed before the fork (gRPC cannot cross
    one); the children open their own on first use."""
    import multiprocessing as mp

    global _forked_admin
    admin.put_resource({"name": "forked", "concurrency": 3})
    _forked_admin = admin
    try:
        with mp.get_context("fork").Pool(2) as pool:
            assert pool.map(_get_in_child, ["forked"] * 4) == [3] * 4
    finally:
        _forked_admin = None
    assert admin.get_resource("forked").concurrency == 3
