"""ratequeue: one shared rate budget for a whole fleet of workers.

Sync API here (``ratequeue.acquire``, ``@ratequeue.limited``,
``ratequeue.Client``, and ``ratequeue.Admin`` for resources and keys); the async API is :mod:`ratequeue.aio`; LangChain
integration is :mod:`ratequeue.langchain` (``pip install ratequeue[langchain]``). What a provider says (429s,
rate-limit headers) reaches the server through the lease (``lease.observe``, ``lease.report``; parser in
:mod:`ratequeue.feedback`); :mod:`ratequeue.openai` and :mod:`ratequeue.anthropic` wrap those SDKs in one line,
on :mod:`ratequeue.httpx`'s transports.
"""

from __future__ import annotations

from ._admin import (Admin, ApiKey, ChildStats, KeyedChildTemplate, LaneStats, Limit, LimitStats, ParentStats,
                     Resource, ResourcePage, ResourceStats)
from ._client import Acquire, Client, Lease, acquire, limited
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

__version__ = "0.1.0"

__all__ = [
    "Acquire",
    "AcquireTimeout",
    "Admin",
    "ApiKey",
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
