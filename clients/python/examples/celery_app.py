"""Celery tasks that share one provider budget across every worker process.

    celery -A celery_app worker --pool prefork --concurrency 4   # in examples/
    python -c "from celery_app import summarize; print(summarize.delay('hi').get())"

The prefork pool forks its children after importing this module; the
ratequeue client opens its connection lazily in each child, so nothing here
needs a worker_process_init hook.
"""

from __future__ import annotations

import os
import time

from celery import Celery

import ratequeue

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
RESOURCE = os.environ.get("RATEQUEUE_RESOURCE", "openai-gpt4")

app = Celery("ratequeue_example", broker=BROKER, backend=os.environ.get("CELERY_RESULT_BACKEND", BROKER))
app.conf.worker_prefetch_multiplier = 1


def fake_provider_call(prompt: str) -> dict:
    """Stands in for the upstream API."""
    time.sleep(0.02)
    return {"text": prompt[::-1], "usage": {"total_tokens": len(prompt) + 10}}


@app.task
def summarize(prompt: str) -> dict:
    # Waits (in the shared queue, across the whole fleet) until the budget
    # allows the call; the slot is released when the block exits.
    with ratequeue.acquire(RESOURCE, load=len(prompt) + 50, priority=10) as lease:
        resp = fake_provider_call(prompt)
        lease.actual_load = resp["usage"]["total_tokens"]
    # When the server granted the slot (its clock), for the test suite's check.
    return {"text": resp["text"], "pid": os.getpid(), "granted_at": lease.grant_time.isoformat()}
