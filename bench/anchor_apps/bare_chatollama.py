"""The bare anchor: one FastAPI endpoint streaming ``ChatOllama.astream`` as SSE, no memory.

What a developer writes with LangChain: one ``ChatOllama`` for the app, its chunks sent as
server-sent events, nothing stored. Two choices keep it an anchor of LangChain's streaming
path rather than of a configuration pitfall: the model is built once, not per request
(building one costs ~100 ms of CPU here: two httpx clients, each loading an SSL context),
and its async client's pool is unbounded (httpx's default of 100 connections would queue
streams 101-200 of load B for a whole answer; the tutorial server shows that). The server
benchmark runs it with uvicorn in its own process, with the same uvicorn options as
``ollang serve`` (uvloop and httptools when installed, no access log), and calls it with
the same request and event names as ollang's ``/chat/stream``:

``POST /chat/stream {"message": "...", "model": "..."}`` ->
``event: token`` (data: the text) ... ``event: done`` (or ``event: error``).

Environment: ``BENCH_OLLAMA_URL`` (the fake Ollama), ``BENCH_MODEL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from langchain_core.messages import HumanMessage
from langchain_ollama import ChatOllama
from pydantic import BaseModel

OLLAMA_URL = os.environ.get("BENCH_OLLAMA_URL", "http://127.0.0.1:11434")
MODEL = os.environ.get("BENCH_MODEL", "llama3:latest")

app = FastAPI()
llm = ChatOllama(
    model=MODEL,
    base_url=OLLAMA_URL,
    async_client_kwargs={
        "limits": httpx.Limits(max_connections=None, max_keepalive_connections=500)
    },
)


class ChatIn(BaseModel):
    message: str
    model: str | None = None


def _event(name: str, data: str) -> bytes:
    lines = data.splitlines() or [""]
    return (f"event: {name}\r\n" + "".join(f"data: {x}\r\n" for x in lines) + "\r\n").encode()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/chat/stream")
async def chat_stream(body: ChatIn) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        try:
            model = (
                llm if body.model in (None, MODEL) else llm.model_copy(update={"model": body.model})
            )
            async for chunk in model.astream([HumanMessage(body.message)]):
                if chunk.content:
                    yield _event("token", str(chunk.content))
        except Exception as err:  # the client is told, as ollang's route does
            yield _event("error", json.dumps({"error": str(err)}))
            return
        yield _event("done", "{}")

    return StreamingResponse(events(), media_type="text/event-stream")
