"""A LangChain chain whose model calls share one ratequeue budget.

Runs offline with LangChain's fake chat model; swap in a real one (commented
below) for production. Run it with a server up and the resource declared:

    RATEQUEUE_URL=http://127.0.0.1:7070 python examples/langchain_chain.py
"""

from __future__ import annotations

import itertools
import os

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from ratequeue.langchain import RateQueueRateLimiter, with_ratequeue

RESOURCE = os.environ.get("RATEQUEUE_RESOURCE", "openai-gpt4")


def make_model(**kwargs):
    # In production, for example:
    #   from langchain_openai import ChatOpenAI
    #   return ChatOpenAI(model="gpt-4o", max_tokens=512, **kwargs)
    replies = (
        AIMessage(content=f"summary {i}",
                  usage_metadata={"input_tokens": 30, "output_tokens": 10, "total_tokens": 40})
        for i in itertools.count()
    )
    return GenericFakeChatModel(messages=replies, **kwargs)


def build_chain():
    """Token budget and concurrency: each model call holds a lease for its
    estimated tokens and releases it with the real count."""
    prompt = ChatPromptTemplate.from_messages([("system", "Summarize in one line."), ("human", "{text}")])
    return prompt | with_ratequeue(make_model(), RESOURCE) | StrOutputParser()


def build_request_limited_model():
    """Request budget only, through LangChain's own rate_limiter hook."""
    return make_model(rate_limiter=RateQueueRateLimiter(RESOURCE))


if __name__ == "__main__":
    chain = build_chain()
    for line in chain.batch([{"text": t} for t in ("first document", "second document", "third document")]):
        print(line)
    print(build_request_limited_model().invoke("hello").content)
