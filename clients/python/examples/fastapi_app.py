"""A FastAPI endpoint that takes its upstream budget from ratequeue.

    RATEQUEUE_URL=http://127.0.0.1:7070 uvicorn fastapi_app:app   # in examples/

User-facing requests go first: priority 100 in the "user-facing" lane. A
streamed answer holds its lease until the last chunk is sent, so the lease
outlives the handler and releases itself at the end of the stream.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
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


@app.post("/chat/stream")
async def chat_stream(body: ChatRequest) -> StreamingResponse:
    lease = await rq.Client().acquire_lease(RESOURCE, load=len(body.message) // 4 + 100, priority=100,
                                            lane="user-facing", timeout=WAIT_SECONDS)

    async def chunks():
        sent = 0
        try:
            for word in body.message.split():
                sent += 1
                yield word.upper() + "\n"
                await asyncio.sleep(0.01)  # stands in for the provider's stream
        finally:  # also when the client hangs up mid-stream
            await lease.release(actual_load=sent + 20)

    return StreamingResponse(chunks(), media_type="text/plain")


@app.exception_handler(ratequeue.AcquireTimeout)
async def busy(request: Request, exc: ratequeue.AcquireTimeout) -> JSONResponse:
    return JSONResponse({"error": "busy, try again shortly"}, status_code=429, headers={"Retry-After": "1"})


@app.exception_handler(ratequeue.RateQueueError)
async def unavailable(request: Request, exc: ratequeue.RateQueueError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "code": exc.code.name}, status_code=503)
