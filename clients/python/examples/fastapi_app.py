"""A FastAPI endpoint that takes its upstream budget from ratequeue.

    RATEQUEUE_URL=http://localhost:7070 uvicorn fastapi_app:app   # in examples/

User-facing requests go first: priority 100 in the "user-facing" lane.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import ratequeue
import ratequeue.aio as rq

RESOURCE = os.environ.get("RATEQUEUE_RESOURCE", "openai-gpt4")
WAIT_SECONDS = float(os.environ.get("RATEQUEUE_WAIT_SECONDS", "10"))

app = FastAPI()


class ChatRequest(BaseModel):
    message: str


async def fake_provider_call(message: str) -> dict:
    """Stands in for the upstream API."""
    await asyncio.sleep(0.01)
    return {"reply": message.upper(), "usage": {"total_tokens": len(message) // 4 + 20}}


@app.post("/chat")
async def chat(body: ChatRequest) -> dict:
    estimate = len(body.message) // 4 + 100
    async with rq.acquire(RESOURCE, load=estimate, priority=100, lane="user-facing",
                          timeout=WAIT_SECONDS) as lease:
        resp = await fake_provider_call(body.message)
        lease.actual_load = resp["usage"]["total_tokens"]
    return {"reply": resp["reply"], "waited": lease.wait_time}


@app.exception_handler(ratequeue.AcquireTimeout)
async def busy(request: Request, exc: ratequeue.AcquireTimeout) -> JSONResponse:
    return JSONResponse({"error": "busy, try again shortly"}, status_code=429, headers={"Retry-After": "1"})


@app.exception_handler(ratequeue.RateQueueError)
async def unavailable(request: Request, exc: ratequeue.RateQueueError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "code": exc.code.name}, status_code=503)
