"""The async API: ``import ratequeue.aio as rq``.

    async with rq.acquire("openai-gpt4", load=estimate, priority=100,
                          lane="user-facing") as lease:
        resp = await call_the_api()
        lease.actual_load = resp.usage.total_tokens

    lease = await rq.Client().acquire_lease("openai-gpt4", timeout=30)
    ...
    await lease.release()

    async with rq.Admin() as admin:
        await admin.put_resource({"name": "openai-gpt4", "concurrency": 8})
"""

from __future__ import annotations

from ._admin import (ApiKey, ChildStats, KeyedChildTemplate, LaneStats, Limit, LimitStats, ParentStats, Resource,
                     ResourcePage, ResourceStats)
from ._admin import AsyncAdmin as Admin
from ._client import AsyncAcquire, AsyncClient as Client
from ._client import AsyncLease as Lease
from ._client import acquire_async as acquire
from ._client import limited
from ._config import ClientConfig
from .feedback import DimensionFeedback, ProviderFeedback
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
