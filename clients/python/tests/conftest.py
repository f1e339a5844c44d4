"""Fixtures: real ratequeue server processes, a private redis-server, and
admin helpers.

The server is the built one (``npm run build`` first); the session fixture
starts it on a free port with a temporary config and stops it with SIGTERM.
Tests that need their own server (keys, TLS, a Redis group) start it with
:func:`start_server`; :func:`start_redis` runs a private redis-server
(``REDIS_SERVER`` or the one on ``PATH``) on a free port.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import grpc
import pytest
from google.protobuf import duration_pb2

from ratequeue._proto.ratequeue.v1 import admin_pb2, admin_pb2_grpc
from ratequeue._protocol import AUTHORIZATION_METADATA_KEY, NAMESPACE_METADATA_KEY

import fleet_worker

HERE = Path(__file__).resolve().parent
PY_ROOT = HERE.parent
REPO = PY_ROOT.parent.parent
# RATEQUEUE_SERVER_JS points the suite at another build of the server.
SERVER_JS = Path(os.environ.get("RATEQUEUE_SERVER_JS") or REPO / "server" / "dist" / "main.js")

BASE_CONFIG = """\
resources:
  openai-gpt4:
    limits:
      - { dimension: requests, amount: 500, period: 60s, burst: 20 }
      - { dimension: load, amount: 30000, period: 60s }
    concurrency: 8
    lanes: { user-facing: 3, batch: 1 }
    lease_ttl: 30s
    max_queue: 10000
"""


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    log: List[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def entries(self) -> List[dict]:
        """The JSON log lines printed so far."""
        out = []
        for line in list(self.log):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for_log(self, msg: str, timeout: float = 10.0, after: int = 0) -> dict:
        """The first log entry with this ``msg`` (from entry index ``after`` on)."""
        return wait_for(lambda: next((e for e in self.entries()[after:] if e.get("msg") == msg), None), timeout,
                        what=lambda: f"a {msg!r} log line; the last lines:\n" + "".join(self.log[-10:]))

    def kill(self) -> None:
        """SIGKILL, and wait for the exit."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, *, interval: float = 0.02,
             what: Union[str, Callable[[], str], None] = None) -> Any:
    """Polls ``predicate()`` until it returns a true value, and returns that
    value; fails the test when ``timeout`` seconds pass first. The one way the
    tests wait for a state (from async code: ``await asyncio.to_thread(wait_for, ...)``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not within {timeout}s: {said or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def free_port() -> int:
    """A free loopback port (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config_path: Optional[Path], *, port: int = 0, args: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None) -> ServerProcess:
    """Starts ``node server/dist/main.js serve`` and waits for its "listening" line.

    ``args`` are further flags (``--tls-cert``, ``--redis``...); ``env`` is
    added to the environment (``RATEQUEUE_ROOT_KEY``...).
    """
    if not SERVER_JS.exists():
        raise RuntimeError(f"{SERVER_JS} is missing: run `npm run build` at the repository root first")
    # A free HTTP port too: a restart on a fixed --port would otherwise take the default 7071.
    cmd = ["node", str(SERVER_JS), "serve", "--host", "127.0.0.1", "--port", str(port), "--http-port", "0"]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("RATEQUEUE_")}
    server_env.update(env or {})
    proc = subprocess.Popen(
        cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=str(SERVER_JS.parent), env=server_env,
    )
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    log: List[str] = []

    def pump() -> None:  # keep draining stdout so the server never blocks on it
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if line is None:
            break
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "listening" and "port" in entry:
            return ServerProcess(proc, int(entry["port"]), log)
    proc.kill()
    raise RuntimeError("the ratequeue server did not start listening:\n" + "".join(log))


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    cfg = tmp_path_factory.mktemp("server") / "ratequeue.yaml"
    cfg.write_text(BASE_CONFIG)
    srv = start_server(cfg)
    yield srv
    code = srv.stop()
    assert code == 0, "the server did not shut down cleanly on SIGTERM:\n" + "".join(srv.log[-20:])


class RedisProcess:
    """A private redis-server on a free loopback port, saving nothing."""

    def __init__(self) -> None:
        binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
        if not binary:
            pytest.fail("redis-server not found: install it or set REDIS_SERVER to its path")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ratequeue-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out: List[str] = []
        deadline = time.monotonic() + 10
        for line in self.proc.stdout:
            out.append(line)
            if "Ready to accept connections" in line:
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("redis-server exited:\n" + "".join(out))
        if "Ready to accept connections" not in out[-1]:
            self.proc.kill()
            raise RuntimeError("redis-server not ready within 10 s:\n" + "".join(out))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    r = RedisProcess()
    yield r
    r.stop()


class Admin:
    """A thin sync AdminService client for the tests.

    ``api_key`` and ``namespace`` go in every call's metadata; ``credentials``
    makes a TLS channel.
    """

    _names = itertools.count(1)

    def __init__(self, target: str, *, api_key: Optional[str] = None, namespace: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None) -> None:
        self.channel = (grpc.secure_channel(target, credentials) if credentials is not None
                        else grpc.insecure_channel(target))
        md = []
        if api_key:
            md.append((AUTHORIZATION_METADATA_KEY, f"Bearer {api_key}"))
        if namespace:
            md.append((NAMESPACE_METADATA_KEY, namespace))
        self.stub = admin_pb2_grpc.AdminServiceStub(_with_metadata(self.channel, tuple(md)))

    def create_key(self, role: str = "worker", namespace: str = "") -> "admin_pb2.CreateApiKeyResponse":
        """Creates an API key (``worker``, ``admin`` or ``root``); ``.key`` is its secret."""
        value = admin_pb2.ApiKeyRole.Value(f"API_KEY_ROLE_{role.upper()}")
        return self.stub.CreateApiKey(admin_pb2.CreateApiKeyRequest(namespace=namespace, role=value,
                                                                    description="python client tests"), timeout=10)

    def revoke_key(self, key_id: str) -> None:
        self.stub.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(id=key_id), timeout=10)

    def put(self, name: Optional[str] = None, *, rate: Optional[float] = None, burst: float = 0,
            period: float = 1.0, load_rate: Optional[float] = None, load_burst: float = 0,
            concurrency: int = 0, lease_ttl: float = 30.0, max_queue: int = 0,
            lanes: Optional[dict] = None) -> str:
        """Creates a resource (a fresh unique name unless given) and returns its name."""
        name = name or f"r{os.getpid()}-{next(self._names)}-{int(time.time() * 1000) % 100000}"
        res = admin_pb2.Resource(name=name, concurrency=concurrency, max_queue=max_queue)
        res.lease_ttl.CopyFrom(_dur(lease_ttl))
        if rate is not None:
            res.limits.add(dimension=admin_pb2.DIMENSION_REQUESTS, amount=rate * period, burst=burst,
                           period=_dur(period))
        if load_rate is not None:
            res.limits.add(dimension=admin_pb2.DIMENSION_LOAD, amount=load_rate * period, burst=load_burst,
                           period=_dur(period))
        for lane, weight in (lanes or {}).items():
            res.lanes.add(name=lane, weight=weight)
        self.stub.PutResource(admin_pb2.PutResourceRequest(resource=res), timeout=10)
        return name

    def stats(self, name: str):
        return self.stub.GetResourceStats(admin_pb2.GetResourceStatsRequest(name=name), timeout=10).stats

    def queue_depth(self, name: str) -> int:
        return sum(lane.queue_depth for lane in self.stats(name).lanes)


class _Metadata(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, md: tuple) -> None:
        self.md = md

    def intercept_unary_unary(self, continuation, details, request):
        if self.md:
            details = details._replace(metadata=tuple(details.metadata or ()) + self.md)
        return continuation(details, request)


def _with_metadata(channel: grpc.Channel, md: tuple) -> grpc.Channel:
    return grpc.intercept_channel(channel, _Metadata(md)) if md else channel


def _dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


@pytest.fixture(scope="session")
def admin(server: ServerProcess) -> Iterator[Admin]:
    a = Admin(server.target)
    yield a
    a.channel.close()


@pytest.fixture
def url(server: ServerProcess, monkeypatch) -> str:
    """The server's URL, also exported as RATEQUEUE_URL for the default API."""
    monkeypatch.setenv("RATEQUEUE_URL", server.url)
    monkeypatch.delenv("RATEQUEUE_API_KEY", raising=False)
    return server.url


def child_env(url: str, **extra: str) -> dict:
    """Environment for child processes: the server URL and our sources on the path."""
    env = dict(os.environ)
    env["RATEQUEUE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join([str(PY_ROOT), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def gcra_violations(times_ms: Sequence[int], *, amount: float, period_ms: int, burst: float,
                    costs: Optional[Sequence[float]] = None) -> List[str]:
    """The intervals that break a GCRA limit of ``amount`` per ``period_ms``
    with ``burst``: the units granted in any interval of length t must not
    exceed ``burst + t * amount / period_ms``.

    Checked exactly, in rationals, on server grant times in integer ms
    (:func:`fleet_worker.grant_ms`): no slack, no float rounding.
    """
    grants = sorted(zip(times_ms, costs if costs is not None else [1] * len(times_ms)))
    assert all(isinstance(t, int) for t, _ in grants), "grant times must be integer ms"
    rate = Fraction(amount) / period_ms
    bad = []
    for i in range(len(grants)):
        units = Fraction(0)
        for j in range(i, len(grants)):
            units += Fraction(grants[j][1])
            allowed = Fraction(burst) + (grants[j][0] - grants[i][0]) * rate
            if units > allowed:
                bad.append(f"{units} units in [{grants[i][0]}, {grants[j][0]}] ms > {float(allowed):.3f}")
                break
    return bad


def in_window(times_ms: Sequence[int], start_ms: int, seconds: float) -> int:
    """How many grants fall in [start_ms, start_ms + seconds]."""
    return sum(start_ms <= t <= start_ms + int(seconds * 1000) for t in times_ms)


def run_fleet(worker: Callable[..., Any], args_list: Sequence[tuple], *, seconds: float,
              timeout: float = 120.0) -> Tuple[int, List[Any]]:
    """Runs ``worker(*args, window)`` in one spawned process per ``args``.

    Each worker connects first (a warm-up acquire), then calls
    ``window.wait()``: when every worker is ready, they all start at the
    same instant and run for ``seconds`` (see :class:`fleet_worker.Window`).
    Returns the start (epoch ms) and the workers' results, in order.
    """
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start_ms = ctx.Value("q", 0)
    window = fleet_worker.Window(ready, go, start_ms, seconds)
    procs = [ctx.Process(target=fleet_worker.run_member, args=(i, worker, args, window, results), daemon=True)
             for i, args in enumerate(args_list)]
    for p in procs:
        p.start()
    try:
        deadline = time.monotonic() + timeout
        for _ in procs:
            ready.get(timeout=max(deadline - time.monotonic(), 0.1))
        # Every worker is connected and waiting: start them together.
        start_ms.value = int(time.time() * 1000) + 200
        go.set()
        out: Dict[int, Any] = {}
        for _ in procs:
            i, ok, value = results.get(timeout=max(deadline - time.monotonic(), 0.1))
            if not ok:
                raise AssertionError(f"fleet worker {i} failed:\n{value}")
            out[i] = value
        for p in procs:
            p.join(10)
        return start_ms.value, [out[i] for i in range(len(procs))]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


class TcpProxy:
    """A TCP proxy to a local server, whose connections a test can cut
    (:meth:`cut`) and which can refuse new ones for a while (:meth:`refuse`,
    :meth:`admit`): a network that drops."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0  # connections let through
        self.refusing = False
        self.conns: List[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
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
        """Drops every open connection."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def refuse(self) -> None:
        """Drops every open connection and closes new ones at once."""
        self.refusing = True
        self.cut()

    def admit(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.sock.close()
        self.cut()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[TcpProxy]:
    """A :class:`TcpProxy` to the session's server."""
    p = TcpProxy(server.port)
    yield p
    p.close()


FAKE_PROVIDER_JS = REPO / "test" / "fixtures" / "fake-provider.mjs"


class FakeProvider:
    """``node test/fixtures/fake-provider.mjs``: an OpenAI- and
    Anthropic-shaped provider behind its own token buckets (see its header).
    Stopped with SIGTERM by :meth:`stop`."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(["node", str(FAKE_PROVIDER_JS), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        try:
            self.url = json.loads(line)["url"]
        except (ValueError, KeyError):
            self.proc.kill()
            raise RuntimeError(f"the fake provider did not start: {line!r} {self.proc.stderr.read()}")

    def _call(self, method: str, path: str) -> dict:
        import urllib.request

        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        """``{"calls", "ok", "throttled", "overloaded", "log": [{"t", "status", "tokens"}]}``, t in ms since the
        start or the last :meth:`reset`."""
        return self._call("GET", "/stats")

    def reset(self) -> None:
        """Empty stats, full buckets, t = 0 from now."""
        self._call("POST", "/reset")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def fake_provider() -> Iterator[Callable[..., FakeProvider]]:
    """Starts fake providers with the given flags (``fake_provider("--rpm", "60")``); stops them after the test."""
    started: List[FakeProvider] = []

    def start(*args: str) -> FakeProvider:
        p = FakeProvider(*args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


PYTHON = sys.executable
