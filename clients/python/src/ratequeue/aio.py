"""The async API: ``import ratequeue.aio as rq``.

    async with rq.acquire("openai-gpt4", load=estimate, priority=100,
                          lane="user-facing") as lease:
        resp = await call_the_api()
        lease.actual_load = resp.usage.total_tokens

    lease = await rq.Client().acquire_lease("openai-gpt4", timeout=30)
    ...
    await lease.release()
"""

from __future__ import annotations

from ._client import AsyncAcquire, AsyncClient as Client
from ._client import AsyncLease as Lease
from ._client import acquire_async as acquire
from ._client import limited
from ._config import ClientConfig
from ._errors import (
    AcquireTimeout,
    InvalidRequest,
    PermissionDenied,
    QueueFull,
    RateQueueError,
    ResourceNotFound,
    Unauthenticated,
    Unavailable,
)

__all__ = [
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
