"""The Celery and FastAPI examples, run for real."""

from __future__ import annotations

import datetime as dt
import importlib.util
import signal
import subprocess
import threading

import ratequeue

from conftest import PY_ROOT, PYTHON, child_env, gcra_violations, wait_for
from fleet_worker import grant_ms

EXAMPLES = PY_ROOT / "examples"


RATE, BURST, TASKS = 20, 3, 60


def test_celery_prefork_workers_share_the_limit(url, admin, redis_server, tmp_path):
    from celery import Celery

    redis_url = redis_server.url
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
    grants = [grant_ms(dt.datetime.fromisoformat(o["granted_at"])) for o in outputs]
    assert gcra_violations(grants, amount=RATE, period_ms=1000, burst=BURST) == []
    # Every task ran, so the span of their grants shows the pace: at least
    # 90% of what the limit allows over it.
    span_s = (max(grants) - min(grants)) / 1000
    assert TASKS >= 0.9 * (BURST + span_s * RATE), (TASKS, span_s)
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

        wait_for(lambda: user_facing_depth() == 1)
        held.release()
        t.join(10)
        assert box["r"].status_code == 200 and box["r"].json()["waited"] > 0

        # ...and gives up with 429 after its wait limit.
        monkeypatch.setattr(mod, "WAIT_SECONDS", 0.2)
        held = ratequeue.Client().acquire_lease(name, lane="batch")
        try:
            r = http.post("/chat", json={"message": "too late"})
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
        finally:
            held.release()

        # A streamed answer takes a lease, which releases itself when the stream ends.
        grants = admin.stats(name).grants
        r = http.post("/chat/stream", json={"message": "one two three"})
        assert r.status_code == 200 and r.text == "ONE\nTWO\nTHREE\n"
        assert admin.stats(name).grants == grants + 1
        wait_for(lambda: admin.stats(name).leases_in_flight == 0)

        # other errors map to 503 with the server's message
        monkeypatch.setattr(mod, "RESOURCE", "no-such-resource")
        r = http.post("/chat", json={"message": "x"})
        assert r.status_code == 503 and r.json()["code"] == "NOT_FOUND"
