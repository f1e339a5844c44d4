"""Auth metadata, standby redirects, server lists and reconnect + re-attach."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

import ratequeue
import ratequeue.aio as rq
from conftest import Admin, start_server
from ratequeue._proto.ratequeue.v1 import ratequeue_pb2_grpc


class _FakeServicer(ratequeue_pb2_grpc.RateQueueServiceServicer):
    """Answers the session like an auth-checking server, or a standby node."""

    def __init__(self, leader=None):
        self.leader = leader
        self.seen_auth = []

    def Session(self, request_iterator, context):
        auth = dict(context.invocation_metadata()).get("authorization")
        self.seen_auth.append(auth)
        if self.leader is not None:
            context.set_trailing_metadata((("ratequeue-leader", self.leader),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "this node is a standby")
        if auth is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing api key: send authorization: Bearer <key>")
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "this api key may not use the resource")


@pytest.fixture
def fake():
    servicers = []
    servers = []

    def start(**kw):
        servicer = _FakeServicer(**kw)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        ratequeue_pb2_grpc.add_RateQueueServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servicers.append(servicer)
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0)


def test_unauthenticated_and_permission_denied(fake, monkeypatch):
    monkeypatch.delenv("RATEQUEUE_API_KEY", raising=False)
    servicer, target = fake()
    with pytest.raises(ratequeue.Unauthenticated) as e:
        with ratequeue.acquire("openai-gpt4", url=target, timeout=5):
            pass
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "api key" in e.value.message
    monkeypatch.setenv("RATEQUEUE_API_KEY", "sk-wrong")
    with pytest.raises(ratequeue.PermissionDenied) as e:
        with ratequeue.acquire("openai-gpt4", url=target, timeout=5):
            pass
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert servicer.seen_auth[0] is None
    assert servicer.seen_auth[-1] == "Bearer sk-wrong"


def test_standby_redirects_to_the_leader(fake, server, admin, monkeypatch):
    monkeypatch.delenv("RATEQUEUE_URL", raising=False)
    standby, target = fake(leader=server.target)
    name = admin.put(concurrency=1)
    with ratequeue.acquire(name, url=f"http://{target}", api_key="k1", timeout=5) as lease:
        assert lease.resource == name
    assert standby.seen_auth and standby.seen_auth[0] == "Bearer k1"


def test_server_list_skips_a_dead_server(server, admin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    name = admin.put()
    client = ratequeue.Client(f"http://127.0.0.1:{dead},{server.url}")
    with client.acquire(name, timeout=5):
        pass


class _Proxy:
    """A TCP proxy whose connections the test can cut."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.cut()


def test_reconnect_reattaches_leases_and_resends_waits(server, admin):
    name = admin.put(concurrency=1, lease_ttl=1.0)
    proxy = _Proxy(server.port)
    client = rq.Client(f"127.0.0.1:{proxy.port}")

    async def main():
        lease = await client.acquire_lease(name)
        waiter = asyncio.ensure_future(client.acquire_lease(name, timeout=20))
        assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth(name) == 1)
        proxy.cut()  # the stream drops: the server withdraws the wait
        await asyncio.sleep(1.6)  # past the TTL: only a re-attaching heartbeat keeps the lease
        assert not lease.lost
        assert admin.stats(name).expirations == 0
        assert admin.stats(name).leases_in_flight == 1
        # the wait was re-sent on the new stream
        assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth(name) == 1)
        assert await client.release(lease) == "RELEASED"
        second = await asyncio.wait_for(waiter, 10)
        await client.release(second)
        await client.close()

    try:
        asyncio.run(main())
    finally:
        proxy.close()


ONE_SLOT_CONFIG = """\
resources:
  one:
    concurrency: 1
    lease_ttl: 30s
"""


def test_waiting_acquire_rides_through_a_graceful_shutdown(tmp_path):
    """A server shutting down answers the waiting acquire UNAVAILABLE; the
    client keeps it and sends it again to the server that comes up next."""
    cfg = tmp_path / "ratequeue.yaml"
    cfg.write_text(ONE_SLOT_CONFIG)
    own = start_server(cfg)
    servers = [own]
    admin = Admin(own.target)
    client = rq.Client(own.url)

    async def main():
        held = await client.acquire_lease("one")
        waiter = asyncio.ensure_future(client.acquire_lease("one", timeout=20))
        assert await asyncio.to_thread(admin.wait_for, lambda: admin.queue_depth("one") == 1)
        assert await asyncio.to_thread(own.stop) == 0, "".join(own.log[-20:])
        await asyncio.sleep(0.3)
        # The departing server answered the waiter UNAVAILABLE: it must not surface.
        assert not waiter.done(), waiter.exception() if waiter.done() else None
        nxt = await asyncio.to_thread(start_server, cfg, port=own.port)
        servers.append(nxt)
        started = time.monotonic()
        lease = await asyncio.wait_for(waiter, 10)
        assert lease.resource == "one"
        assert time.monotonic() - started < 3, "the new server should be found within about a second"
        assert await client.release(lease) == "RELEASED"
        await client.release(held)  # unknown to the new server: harmless
        await client.close()

    try:
        asyncio.run(main())
    finally:
        admin.channel.close()
        for s in servers:
            assert s.stop() == 0, "".join(s.log[-20:])
