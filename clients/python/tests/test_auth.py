"""API keys and namespaces against a real server started with RATEQUEUE_ROOT_KEY.

Keys are made and revoked through the admin API. A missing, wrong or revoked
key raises ``Unauthenticated``, also for an acquire already waiting on an
open stream when its key is revoked; a key naming another namespace raises
``PermissionDenied``.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import ratequeue
import ratequeue.aio as rq
from conftest import Admin, start_server, wait_for
from ratequeue._proto.ratequeue.v1 import admin_pb2

ROOT_KEY = "py-test-root-key-0123456789abcdefghijklmnop"

CONFIG = """\
resources:
  shared:
    concurrency: 1
    lease_ttl: 30s
namespaces:
  team-a:
    resources:
      only-a: { concurrency: 1 }
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("auth") / "ratequeue.yaml"
    cfg.write_text(CONFIG)
    srv = start_server(cfg, env={"RATEQUEUE_ROOT_KEY": ROOT_KEY})
    root = Admin(srv.target, api_key=ROOT_KEY)
    yield srv, root
    root.channel.close()
    assert srv.stop() == 0, "".join(srv.log[-20:])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("RATEQUEUE_URL", "RATEQUEUE_API_KEY", "RATEQUEUE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_a_created_worker_key_acquires(secured):
    srv, root = secured
    made = root.create_key("worker")
    assert made.key.startswith("rq_") and made.api_key.namespace == "default"
    client = ratequeue.Client(srv.url, api_key=made.key)
    with client.acquire("shared", timeout=5) as lease:
        assert lease.resource == "shared"
    client.close()


@pytest.mark.parametrize("key", [None, "nope", "rq_000000000000_" + "A" * 43])
def test_missing_or_wrong_key_is_unauthenticated(secured, key):
    srv, _ = secured
    client = ratequeue.Client(srv.url, api_key=key)
    with pytest.raises(ratequeue.Unauthenticated) as e:
        with client.acquire("shared", timeout=5):
            pass
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.message
    client.close()


def test_another_namespace_is_permission_denied(secured):
    """A worker key naming a namespace other than its own, through the
    client's ``namespace`` option: refused whether or not it exists."""
    srv, root = secured
    key = root.create_key("worker").key
    for ns in ("team-a", "no-such-team"):
        client = ratequeue.Client(srv.url, api_key=key, namespace=ns)
        with pytest.raises(ratequeue.PermissionDenied) as e:
            with client.acquire("only-a", timeout=5):
                pass
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert ns in e.value.message
        client.close()
    # A key of team-a reaches its resource without naming a namespace, and a
    # root key reaches it by naming team-a.
    for client in (ratequeue.Client(srv.url, api_key=root.create_key("worker", namespace="team-a").key),
                   ratequeue.Client(srv.url, api_key=ROOT_KEY, namespace="team-a")):
        with client.acquire("only-a", timeout=5) as lease:
            assert lease.resource == "only-a"
        client.close()


def test_worker_key_may_not_call_admin_rpcs(secured):
    """The Python client has no admin API: the generated stub, with a worker key."""
    srv, root = secured
    worker = Admin(srv.target, api_key=root.create_key("worker").key)
    try:
        with pytest.raises(grpc.RpcError) as e:
            worker.put("made-by-a-worker")
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as e:
            worker.create_key("worker")
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        worker.channel.close()


def test_revoked_key_closes_the_open_stream_and_fails_the_waiting_acquire(secured):
    srv, root = secured
    made = root.create_key("worker")
    client = rq.Client(srv.url, api_key=made.key)
    stats = lambda: root.stub.GetResourceStats(admin_pb2.GetResourceStatsRequest(name="shared"), timeout=5).stats  # noqa: E731

    async def main():
        held = await client.acquire_lease("shared", timeout=5)
        waiter = asyncio.ensure_future(client.acquire_lease("shared", timeout=20))
        await asyncio.to_thread(wait_for, lambda: sum(lane.queue_depth for lane in stats().lanes) == 1)
        revoked = time.monotonic()
        await asyncio.to_thread(root.revoke_key, made.api_key.id)
        # The open stream ends with UNAUTHENTICATED: the waiting acquire raises at once.
        with pytest.raises(ratequeue.Unauthenticated) as e:
            await asyncio.wait_for(waiter, 5)
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert time.monotonic() - revoked < 2
        # The held lease can no longer be heartbeated: it is reported lost,
        # and lives on at the server until its TTL.
        assert held.lost
        assert stats().leases_in_flight == 1
        # A new acquire with the revoked key is refused too, whatever its
        # timeout: one attempt (timeout 0) must not turn the refusal into
        # DEADLINE_EXCEEDED, however the new stream's refusal and the
        # client's own timing interleave. Several times, to leave no luck.
        for _ in range(5):
            with pytest.raises(ratequeue.Unauthenticated) as e:
                await client.acquire_lease("shared", timeout=0)
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(ratequeue.Unauthenticated):
            await client.acquire_lease("shared", timeout=0.5)
        await client.close()

    asyncio.run(main())
