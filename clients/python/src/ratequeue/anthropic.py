"""The Anthropic SDK behind a ratequeue resource (``pip install ratequeue[anthropic]``).

    from anthropic import Anthropic
    import ratequeue.anthropic

    client = ratequeue.anthropic.wrap(Anthropic(), "claude")

Every HTTP request the returned client sends, its own retries included, waits
for a lease on the resource; a 429 (or a 529 "overloaded") pauses the whole
fleet until the provider's ``retry-after``, its ``anthropic-ratelimit-*``
headers lower the budget (input and output tokens map to load limits with
``unit: input_tokens`` / ``output_tokens``), and the tokens really used
(``usage``, also in streams) reconcile the estimate. See
:mod:`ratequeue.httpx` for the details.
"""

from __future__ import annotations

from typing import Optional, TypeVar

import anthropic

from .httpx import Estimate, Key, _wrap_sdk

__all__ = ["wrap"]

C = TypeVar("C", anthropic.Anthropic, anthropic.AsyncAnthropic)


def wrap(client: C, resource: str, *, estimate: Optional[Estimate] = None, priority: int = 10,
         lane: Optional[str] = None, key: Optional[Key] = None, api_key: Optional[str] = None,
         url: Optional[str] = None, feedback: bool = True) -> C:
    """A copy of an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic``
    client (``client.with_options``) whose every request holds a lease on
    ``resource``. Options as :func:`ratequeue.openai.wrap`; the default
    estimate counts ``system`` and ``messages[].content``, plus
    ``max_tokens``.
    """
    return _wrap_sdk(anthropic, client, (anthropic.Anthropic, anthropic.AsyncAnthropic), resource,
                     estimate=estimate, priority=priority, lane=lane, key=key, api_key=api_key, url=url,
                     feedback=feedback)
