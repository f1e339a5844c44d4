"""ratequeue: one shared rate budget for a whole fleet of workers.

Sync API here (``ratequeue.acquire``, ``@ratequeue.limited``,
``ratequeue.Client``); the async API is :mod:`ratequeue.aio`; LangChain
integration is :mod:`ratequeue.langchain` (``pip install ratequeue[langchain]``).
"""

from __future__ import annotations

from ._client import Acquire, Client, Lease, acquire, limited
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

__version__ = "0.1.0"

__all__ = [
    "Acquire",
    "AcquireTimeout",
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
