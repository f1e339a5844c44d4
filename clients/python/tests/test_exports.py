"""Pins the public API and the packaging pins."""

from __future__ import annotations

import re

import ratequeue
import ratequeue.aio

from conftest import PY_ROOT

PUBLIC = [
    "Acquire",
    "AcquireTimeout",
    "Client",
    "ClientConfig",
    "InvalidRequest",
    "Lease",
    "PermissionDenied",
    "QueueFull",
    "RateQueueError",
    "ResourceNotFound",
    "Unauthenticated",
    "Unavailable",
    "acquire",
    "limited",
]

AIO = [
    "AcquireTimeout",
    "AsyncAcquire",
    "Client",
    "ClientConfig",
    "InvalidRequest",
    "Lease",
    "PermissionDenied",
    "QueueFull",
    "RateQueueError",
    "ResourceNotFound",
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
