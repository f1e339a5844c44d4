"""The Celery and FastAPI examples, run for real."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import ratequeue

from conftest import PY_ROOT, PYTHON, child_env, gcra_violations

EXAMPLES = PY_ROOT / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    exe = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server not found: install it or set REDIS_SERVER to its path")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


RATE, BURST, TASKS = 20.0, 3.0, 60


def test_celery_prefork_workers_share_the_limit(url, admin, redis_url, tmp_path):
    from celery import Celery

    name = admin.put(rate=RATE, burst=BURST)
    env = child_env(url, CELERY_BROKER_URL=redis_url, RATEQUEUE_RESOURCE=name)
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "4",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=str(EXAMPLES), env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    producer = Celery("producer", broker=redis_url, backend=redis_url)
    try:
        results = [producer.send_task("celery_app.summarize", args=[f"document {i}"]) for i in range(TASKS)]
        outputs = [r.get(timeout=60) for r in results]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        producer.close()
    print((tmp_path / "worker.log").read_text()[-2000:])

    assert len({o["pid"] for o in outputs}) >= 2, "the prefork children shared the work"
    server_times = [o["server_grant_time"] for o in outputs]
    assert gcra_violations(server_times, rate=RATE, burst=BURST, slack=0.002) == []
    assert gcra_violations([o["granted_at"] for o in outputs], rate=RATE, burst=BURST, slack=0.05, extra=1) == []
    span = max(server_times) - min(server_times)
    assert len(outputs) >= 0.9 * (BURST + span * RATE), (len(outputs), span)
    assert admin.stats(name).grants == TASKS


def _load_fastapi_example():
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLES / "fastapi_app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fastapi_endpoint(url, admin, monkeypatch):
    from fastapi.testclient import TestClient

    name = admin.put(concurrency=1, lanes={"user-facing": 3, "batch": 1})
    monkeypatch.setenv("RATEQUEUE_RESOURCE", name)
    mod = _load_fastapi_example()
    with TestClient(mod.app) as http:
        r = http.post("/chat", json={"message": "hello"})
        assert r.status_code == 200, r.text
        assert r.json()["reply"] == "HELLO"

        # While the slot is taken, a request waits in the user-facing lane...
        held = ratequeue.Client().acquire_lease(name, lane="batch")
        box = {}
        t = threading.Thread(target=lambda: box.update(r=http.post("/chat", json={"message": "queued"})))
        t.start()

        def user_facing_depth():
            return {l.name: l.queue_depth for l in admin.stats(name).lanes}["user-facing"]

        assert admin.wait_for(lambda: user_facing_depth() == 1)
        ratequeue.Client().release(held)
        t.join(10)
        assert box["r"].status_code == 200 and box["r"].json()["waited"] > 0

        # ...and gives up with 429 after its wait limit.
        monkeypatch.setattr(mod, "WAIT_SECONDS", 0.2)
        held = ratequeue.Client().acquire_lease(name, lane="batch")
        try:
            r = http.post("/chat", json={"message": "too late"})
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
        finally:
            ratequeue.Client().release(held)

        # other errors map to 503 with the server's message
        monkeypatch.setattr(mod, "RESOURCE", "no-such-resource")
        r = http.post("/chat", json={"message": "x"})
        assert r.status_code == 503 and r.json()["code"] == "NOT_FOUND"
