"""Fixtures: a real ratequeue server process, and admin helpers.

The server is the built one (``npm run build`` first); the session fixture
starts it on a free port with a temporary config and stops it with SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import grpc
import pytest
from google.protobuf import duration_pb2

from ratequeue._proto.ratequeue.v1 import admin_pb2, admin_pb2_grpc

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

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(config_path: Path, *, port: int = 0) -> ServerProcess:
    """Starts ``node server/dist/main.js serve`` and waits for its "listening" line."""
    if not SERVER_JS.exists():
        raise RuntimeError(f"{SERVER_JS} is missing: run `npm run build` at the repository root first")
    proc = subprocess.Popen(
        ["node", str(SERVER_JS), "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(SERVER_JS.parent),
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


class Admin:
    """A thin sync AdminService client for the tests."""

    _names = itertools.count(1)

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)

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

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()


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


def gcra_violations(times: List[float], *, rate: float, burst: float, slack: float = 0.0,
                    extra: int = 0) -> List[str]:
    """Checks that any window of length t holds at most burst + t * rate grants.

    ``slack`` (seconds) and ``extra`` (grants) absorb timestamp jitter.
    """
    ts = sorted(times)
    bad = []
    j = 0
    for i in range(len(ts)):
        # the longest run of grants starting at ts[i]: check every end point
        for j in range(i, len(ts)):
            count = j - i + 1
            allowed = burst + (ts[j] - ts[i] + slack) * rate + extra
            if count > allowed + 1e-9:
                bad.append(f"{count} grants in {ts[j] - ts[i]:.3f}s > {allowed:.2f}")
                break
    return bad


PYTHON = sys.executable
