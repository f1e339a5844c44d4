"""Pins the public API and the packaging pins."""

from __future__ import annotations

import inspect
import re

import grpc

import ratequeue
import ratequeue.aio

from conftest import PY_ROOT

PUBLIC = [
    "Acquire",
    "AcquireTimeout",
    "Admin",
    "ApiKey",
    "ChildStats",
    "Client",
    "ClientConfig",
    "DimensionFeedback",
    "InvalidRequest",
    "KeyedChildTemplate",
    "LaneStats",
    "Lease",
    "Limit",
    "LimitStats",
    "ParentStats",
    "PermissionDenied",
    "ProviderFeedback",
    "QueueFull",
    "RateQueueError",
    "Resource",
    "ResourceNotFound",
    "ResourcePage",
    "ResourceStats",
    "Unauthenticated",
    "Unavailable",
    "acquire",
    "limited",
]

AIO = [
    "AcquireTimeout",
    "Admin",
    "ApiKey",
    "AsyncAcquire",
    "ChildStats",
    "Client",
    "ClientConfig",
    "DimensionFeedback",
    "InvalidRequest",
    "KeyedChildTemplate",
    "LaneStats",
    "Lease",
    "Limit",
    "LimitStats",
    "ParentStats",
    "PermissionDenied",
    "ProviderFeedback",
    "QueueFull",
    "RateQueueError",
    "Resource",
    "ResourceNotFound",
    "ResourcePage",
    "ResourceStats",
    "Unauthenticated",
    "Unavailable",
    "acquire",
    "limited",
]


def test_public_names():
    assert sorted(ratequeue.__all__) == PUBLIC
    assert sorted(ratequeue.aio.__all__) == AIO
    for mod in (ratequeue, ratequeue.aio):
        for name in mod.__all__:
            assert getattr(mod, name) is not None
    assert not any(n.startswith("_proto") for n in ratequeue.__all__)


def test_leases_release_themselves_sync_and_async():
    assert ratequeue.aio.Lease is not ratequeue.Lease
    assert not inspect.iscoroutinefunction(ratequeue.Lease.release)
    assert inspect.iscoroutinefunction(ratequeue.aio.Lease.release)
    for cls in (ratequeue.Lease, ratequeue.aio.Lease):
        params = inspect.signature(cls.release).parameters
        assert list(params) == ["self", "actual_load"]
        assert params["actual_load"].kind is inspect.Parameter.KEYWORD_ONLY
    # The client's release(lease) stays.
    assert not inspect.iscoroutinefunction(ratequeue.Client.release)
    assert inspect.iscoroutinefunction(ratequeue.aio.Client.release)


ADMIN_METHODS = ["close", "create_key", "delete_resource", "get_resource", "list_keys", "list_resources",
                 "put_resource", "resource_stats", "revoke_key"]


def test_admin_sync_and_async_have_the_same_methods():
    """One implementation behind both; the async one awaits, the sync one
    blocks, with the same signatures (options keyword-only)."""
    sync, aio = ratequeue.Admin, ratequeue.aio.Admin
    assert sync is not aio
    for cls in (sync, aio):
        assert sorted(n for n in vars(cls) if not n.startswith("_")) == ADMIN_METHODS
    for name in ADMIN_METHODS:
        assert not inspect.iscoroutinefunction(getattr(sync, name))
        assert inspect.iscoroutinefunction(getattr(aio, name))
        assert inspect.signature(getattr(sync, name)) == inspect.signature(getattr(aio, name))
    for name in ("create_key", "list_keys", "list_resources"):
        params = inspect.signature(getattr(sync, name)).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in params.items() if n != "self")
    assert list(inspect.signature(sync.list_resources).parameters) == ["self", "page_size", "page_token", "parent"]
    params = inspect.signature(sync.resource_stats).parameters
    assert list(params) == ["self", "name", "children_limit"]
    assert params["children_limit"].kind is inspect.Parameter.KEYWORD_ONLY
    # The shapes are the same classes in both modules.
    for name in ("Resource", "Limit", "ResourceStats", "LaneStats", "LimitStats", "ApiKey", "KeyedChildTemplate",
                 "ChildStats", "ParentStats", "ResourcePage"):
        assert getattr(ratequeue, name) is getattr(ratequeue.aio, name)


def test_protocol_constants():
    """The defaults every client shares (docs/protocol.md), defined once in
    ratequeue._protocol and used from there."""
    from ratequeue import _protocol as p

    assert p.DEFAULT_URL == "http://127.0.0.1:7070"
    assert (p.KEEPALIVE_TIME, p.KEEPALIVE_TIMEOUT, p.KEEPALIVE_PERMIT_WITHOUT_CALLS) == (30.0, 10.0, True)
    assert (p.INITIAL_BACKOFF, p.MAX_BACKOFF, p.BACKOFF_JITTER) == (0.05, 1.0, (0.5, 1.0))
    assert (p.RECONNECT_TIMEOUT, p.TIMEOUT_SLACK, p.DEPARTURE_GRACE) == (30.0, 2.0, 0.25)
    assert (p.MAX_LEASE_IDS_PER_HEARTBEAT, p.HEARTBEATS_PER_TTL) == (1000, 3)
    assert (p.AUTHORIZATION_METADATA_KEY, p.NAMESPACE_METADATA_KEY, p.LEADER_METADATA_KEY) == (
        "authorization", "ratequeue-namespace", "ratequeue-leader")
    S = grpc.StatusCode
    assert p.RETRIED_CODES == {S.UNAVAILABLE, S.CANCELLED, S.DEADLINE_EXCEEDED, S.ABORTED, S.INTERNAL, S.UNKNOWN}
    assert p.KEY_REFUSED_CODES == {S.UNAUTHENTICATED, S.PERMISSION_DENIED}
    # The client's configuration starts from them.
    c = ratequeue.ClientConfig()
    assert (c.reconnect_timeout, c.initial_backoff, c.max_backoff) == (30.0, 0.05, 1.0)
    assert dict(p.channel_options()) == {
        "grpc.keepalive_time_ms": 30_000, "grpc.keepalive_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1, "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.min_reconnect_backoff_ms": 50, "grpc.max_reconnect_backoff_ms": 1000}


def test_protocol_names_are_typed_once():
    """No other module of the client spells a metadata name or the default URL."""
    src = PY_ROOT / "src" / "ratequeue"
    literals = ['"authorization"', '"ratequeue-namespace"', '"ratequeue-leader"', '"http://127.0.0.1', '"http://localhost']
    for path in src.glob("*.py"):
        if path.name == "_protocol.py":
            continue
        text = path.read_text()
        for lit in literals:
            assert lit not in text, f"{path.name} spells {lit}: use ratequeue._protocol"


def test_feedback_api_on_leases_and_clients():
    """A lease records feedback without I/O (the same on sync and async
    leases) and sends it with its release; a client reports without a lease."""
    for cls in (ratequeue.Lease, ratequeue.aio.Lease):
        for name in ("observe", "report"):
            assert not inspect.iscoroutinefunction(getattr(cls, name))
        params = inspect.signature(cls.report).parameters
        assert list(params) == ["self", "throttled", "retry_after", "requests", "load", "input_tokens", "output_tokens"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in params.items() if n != "self")
        assert list(inspect.signature(cls.observe).parameters) == ["self", "headers", "status"]
    assert not inspect.iscoroutinefunction(ratequeue.Client.report)
    assert inspect.iscoroutinefunction(ratequeue.aio.Client.report)
    assert list(inspect.signature(ratequeue.Client.report).parameters) == ["self", "resource", "feedback"]
    assert ratequeue.ProviderFeedback is ratequeue.aio.ProviderFeedback is ratequeue.feedback.ProviderFeedback


def test_integration_module_names():
    import ratequeue.anthropic
    import ratequeue.feedback
    import ratequeue.httpx
    import ratequeue.openai

    assert sorted(ratequeue.feedback.__all__) == ["DimensionFeedback", "ProviderFeedback", "THROTTLED_STATUSES",
                                                  "parse_headers"]
    assert sorted(ratequeue.httpx.__all__) == ["AsyncRateQueueTransport", "RateQueueTransport", "default_estimate"]
    assert ratequeue.openai.__all__ == ratequeue.anthropic.__all__ == ["wrap"]
    wrap_params = ["client", "resource", "estimate", "priority", "lane", "key", "api_key", "url", "feedback"]
    for wrap in (ratequeue.openai.wrap, ratequeue.anthropic.wrap):
        params = inspect.signature(wrap).parameters
        assert list(params) == wrap_params
        assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in wrap_params[2:])
    for cls in (ratequeue.httpx.RateQueueTransport, ratequeue.httpx.AsyncRateQueueTransport):
        params = inspect.signature(cls).parameters
        assert list(params) == ["resource", "transport", "estimate", "priority", "lane", "key", "api_key", "url",
                                "client", "feedback"]


def test_key_is_a_keyword_option_of_every_acquire():
    """``key=`` (a keyed child's quota inside the resource) wherever an
    acquire's options are taken, keyword-only."""
    import ratequeue.langchain as lc

    takers = [ratequeue.acquire, ratequeue.aio.acquire, ratequeue.limited, ratequeue.Client.acquire,
              ratequeue.Client.acquire_lease, ratequeue.aio.Client.acquire, ratequeue.aio.Client.acquire_lease,
              lc.RateQueueRateLimiter, lc.RateQueueRunnable]
    for taker in takers:
        params = inspect.signature(taker).parameters
        assert params["key"].kind is inspect.Parameter.KEYWORD_ONLY, taker
        assert params["key"].default is None, taker


def test_langchain_names():
    import ratequeue.langchain as lc

    assert sorted(lc.__all__) == ["RateQueueRateLimiter", "RateQueueRunnable", "estimate_tokens", "with_ratequeue"]


def test_error_hierarchy():
    for name in ("AcquireTimeout", "ResourceNotFound", "InvalidRequest", "Unauthenticated", "PermissionDenied",
                 "Unavailable", "QueueFull"):
        assert issubclass(getattr(ratequeue, name), ratequeue.RateQueueError)
    assert ratequeue.aio.AcquireTimeout is ratequeue.AcquireTimeout


def test_dependency_pins_match_the_generated_stubs():
    """The stubs refuse older runtimes at import: pyproject must ask for them."""
    gen = PY_ROOT / "src" / "ratequeue" / "_proto" / "ratequeue" / "v1"
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", (gen / "ratequeue_pb2_grpc.py").read_text())[1]
    pb = re.search(r"Protobuf Python Version: ([\d.]+)", (gen / "ratequeue_pb2.py").read_text())[1]
    pyproject = (PY_ROOT / "pyproject.toml").read_text()
    assert f'"grpcio>={grpc_version}"' in pyproject
    assert f'"protobuf>={pb},<{int(pb.split(".")[0]) + 1}"' in pyproject


def test_url_parsing():
    from ratequeue._config import Endpoint, parse_url

    assert parse_url("http://h1:7070, https://h2:8443,h3:1,h4") == (
        Endpoint("h1:7070"), Endpoint("h2:8443", tls=True), Endpoint("h3:1"), Endpoint("h4:7070"))
    assert parse_url("https://api.example.com") == (Endpoint("api.example.com:443", tls=True),)


def test_default_url(monkeypatch):
    monkeypatch.delenv("RATEQUEUE_URL", raising=False)
    c = ratequeue.Client()
    assert c.config.url == "http://127.0.0.1:7070"
    assert [str(ep) for ep in c.config.endpoints] == ["http://127.0.0.1:7070"]


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("RATEQUEUE_URL", "http://a:1,http://b:2")
    monkeypatch.setenv("RATEQUEUE_API_KEY", "sk-1")
    c = ratequeue.Client()
    assert c.config.url == "http://a:1,http://b:2" and c.config.api_key == "sk-1"
    c = ratequeue.Client("c:3", api_key="sk-2", reconnect_timeout=5)
    assert c.config.url == "c:3" and c.config.api_key == "sk-2" and c.config.reconnect_timeout == 5


def test_readme_python_snippets_compile():
    text = (PY_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    for block in blocks:
        compile(block, "README.md", "exec")
