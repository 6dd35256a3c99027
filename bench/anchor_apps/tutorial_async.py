"""The tutorial server, async: FastAPI + one shared ``ollama.AsyncClient``, StreamingResponse.

The shape most "stream Ollama through FastAPI" tutorials give: a module-level
``AsyncClient`` (httpx underneath, with httpx's default pool of 100 connections), an
``async def`` endpoint returning a ``StreamingResponse`` over ``client.chat(stream=True)``.
Same request and events as ``bare_chatollama.py`` (and ollang's ``/chat/stream``).

Environment: ``BENCH_OLLAMA_URL`` (the fake Ollama), ``BENCH_MODEL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from ollama import AsyncClient
from pydantic import BaseModel

OLLAMA_URL = os.environ.get("BENCH_OLLAMA_URL", "http://127.0.0.1:11434")
MODEL = os.environ.get("BENCH_MODEL", "llama3:latest")

app = FastAPI()
client = AsyncClient(host=OLLAMA_URL)


class ChatIn(BaseModel):
    message: str
    model: str | None = None


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/chat/stream")
async def chat_stream(body: ChatIn) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        try:
            stream = await client.chat(
                model=body.model or MODEL,
                messages=[{"role": "user", "content": body.message}],
                stream=True,
            )
            async for part in stream:
                if part.message.content:
                    yield f"event: token\r\ndata: {part.message.content}\r\n\r\n"
        except Exception as err:
            yield f"event: error\r\ndata: {json.dumps({'error': str(err)})}\r\n\r\n"
            return
        yield "event: done\r\ndata: {}\r\n\r\n"

    return StreamingResponse(events(), media_type="text/event-stream")
