"""``/chat``, ``/chat/stream``, ``/generate``, ``/generate/stream``: thin over the turn engine."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from ollang.iterators import aclosing_iter
from ollang.server.auth import BEARER_DOC, owner_now
from ollang.server.body import body_schema, check_length, parse_request
from ollang.server.context import context_of
from ollang.server.dialects.common import line_items, run_to_end
from ollang.server.schemas import (
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
)
from ollang.server.streaming import LiveStream, StreamItem, choose_format
from ollang.server.turns import TurnChunk, TurnDone, TurnRequest, split_options
from ollang.turns.images import image_block_from_base64
from ollang.turns.recorder import TurnResult
from ollang.turns.session_settings import resolve_settings

__all__ = ["router"]

router = APIRouter(tags=["chat"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 502, 503, 504)
}
_STREAM_DOC = {
    "description": "The answer as it is generated; the format follows `Accept`.",
    "content": {
        "text/plain": {"schema": {"type": "string"}},
        "text/event-stream": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


# The query-parameter form of a request (``POST /chat?message=Hello``) fills in what the
# body lacks. Read straight from the request, as the key is (auth.owner_now): FastAPI's
# dependency machinery (a sync dataclass dependency runs in a thread pool) cost about a
# millisecond per request under load, more than the rest of the turn's set-up.
_CHAT_QUERY = {
    "message": "The message (if not in the body).",
    "model": "The model (if not in the body).",
    "session_id": "The session (if not in the body).",
    "system": "A system prompt (if not in the body).",
}
_GENERATE_QUERY = {
    "prompt": "The prompt (if not in the body).",
    "model": "The model (if not in the body).",
    "system": "A system prompt (if not in the body).",
}


def _query(request: Request, names: dict[str, str]) -> dict[str, str]:
    params = request.query_params
    return {name: params[name] for name in names if name in params}


def _doc(body: type[BaseModel], names: dict[str, str]) -> dict[str, Any]:
    """``openapi_extra``: the body, the query parameters and the bearer key."""
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        }
        for name, text in names.items()
    ]
    return {**body_schema(body, required=False), **BEARER_DOC, "parameters": parameters}


def summary(result: TurnResult, *, session: bool = True) -> dict[str, Any]:
    """A turn's result as the JSON of ``StreamDone`` (without the answer's text)."""
    out: dict[str, Any] = {
        "model": result.model,
        "status": result.status,
        "done_reason": result.done_reason,
        "usage": asdict(result.usage),
        "timings": asdict(result.timings),
    }
    if session:
        out["session_id"] = result.session_id
        out["message_id"] = result.message_id
    return out


async def _items(
    turns: AsyncIterator[TurnChunk | TurnDone], *, session: bool
) -> AsyncIterator[list[StreamItem]]:
    """A turn's chunks as batches of stream items, the summary last."""
    async with aclosing_iter(turns):
        async for part in turns:
            if isinstance(part, TurnDone):
                data = summary(part.result, session=session)
                if not session:
                    data["response"] = part.result.text
                yield [StreamItem("done", data=data)]
            else:
                items = line_items(part)
                if items:
                    yield items


async def _answer(request: Request, turn: TurnRequest, *, session: bool) -> Any:
    """The turn's answer when complete (``/chat``, ``/generate``); 499 if the client left
    first (nobody to read it; the partial answer is stored)."""
    result = await run_to_end(request, context_of(request).engine.stream(turn))
    if result is None:
        return Response(status_code=499)
    return {
        **summary(result, session=session),
        "response": result.text,
        "reasoning": result.reasoning or None,
    }


def _human(text: str, images: list[str] | None) -> HumanMessage:
    """The user's message, with its images checked (422 not an image, 413 too large)."""
    if not images:
        return HumanMessage(text)
    blocks: list[str | dict[str, Any]] = [{"type": "text", "text": text}]
    blocks += [image_block_from_base64(image, f"image {i + 1}") for i, image in enumerate(images)]
    return HumanMessage(blocks)


async def _chat_turn(request: Request) -> TurnRequest:
    """Check the key, parse, check limits, take the session's settings, resolve the model:
    all before any output."""
    owner = owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, ChatRequest, _query(request, _CHAT_QUERY))
    check_length(ctx.settings.max_message_chars, message=body.message, system=body.system)
    human = _human(body.message, body.images)
    info = await ctx.sessions.settings(body.session_id, owner) if body.session_id else None
    settings = resolve_settings(
        info,
        model=body.model,
        system=body.system,
        options=body.options.as_kwargs() if body.options else None,
    )
    model = ctx.gate.resolve(settings.model)
    options, extra = split_options(settings.options)
    return TurnRequest(
        model=model,
        human=human,
        system=settings.system,
        session_id=body.session_id or uuid.uuid4().hex,
        owner=owner,
        options=options,
        extra=extra,
        route="/chat",
        remember=settings.options if (settings.changed or info is None) else None,
        fresh=body.session_id is None,
    )


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses=_ERRORS,
    openapi_extra=_doc(ChatRequest, _CHAT_QUERY),
    summary="One chat turn, answered when complete",
)
async def chat(request: Request) -> Any:
    """Send a message in a session (a new one unless `session_id` is given) and get the answer.

    The body is read as JSON whatever the `Content-Type` (so `curl -d '{...}'` works);
    query parameters fill in fields the body lacks.
    """
    return await _answer(request, await _chat_turn(request), session=True)


@router.post(
    "/chat/stream",
    responses={200: _STREAM_DOC, **_ERRORS},
    response_class=Response,
    openapi_extra=_doc(ChatRequest, _CHAT_QUERY),
    summary="One chat turn, streamed",
)
async def chat_stream(request: Request) -> Response:
    """Like `POST /chat`, streamed as generated, in the format `Accept` asks for.

    * `text/plain` (default): the answer's text; an error mid-stream ends it with
      a line `[error] message (hint)`.
    * `text/event-stream`: SSE events `token` and `reasoning` (data: the text),
      `done` (JSON: session_id, model, usage, timings, status) or `error` (JSON: error, hint).
    * `application/x-ndjson`: Ollama-style lines `{"message": {"content"}, "done": false}`,
      then `{"done": true, ...}` with usage and timings, or `{"error", "hint", "done": true}`.

    Errors before the first token are plain HTTP errors (e.g. 503, 404). If the client
    disconnects, the Ollama request is cancelled and the partial answer is stored as
    `interrupted`.
    """
    fmt = choose_format(request.headers.get("accept"))
    turn = await _chat_turn(request)
    turns = context_of(request).engine.stream(turn)
    assert turn.session_id is not None
    return LiveStream(_items(turns, session=True), fmt, headers={"X-Session-Id": turn.session_id})


async def _generate_turn(request: Request) -> TurnRequest:
    owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, GenerateRequest, _query(request, _GENERATE_QUERY))
    check_length(ctx.settings.max_message_chars, prompt=body.prompt, system=body.system)
    model = ctx.gate.resolve(body.model)
    options, extra = split_options(body.options.as_kwargs() if body.options else {})
    return TurnRequest(
        model=model,
        human=_human(body.prompt, body.images),
        system=body.system,
        options=options,
        extra=extra,
        route="/generate",
    )


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses=_ERRORS,
    openapi_extra=_doc(GenerateRequest, _GENERATE_QUERY),
    summary="One-shot generation, no memory",
)
async def generate(request: Request) -> Any:
    """Answer a prompt without any session or history."""
    return await _answer(request, await _generate_turn(request), session=False)


@router.post(
    "/generate/stream",
    responses={200: _STREAM_DOC, **_ERRORS},
    response_class=Response,
    openapi_extra=_doc(GenerateRequest, _GENERATE_QUERY),
    summary="One-shot generation, streamed",
)
async def generate_stream(request: Request) -> Response:
    """Like `POST /generate`, streamed in the format `Accept` asks for (as `/chat/stream`;
    NDJSON lines carry `response` instead of `message`, as Ollama's `/api/generate`)."""
    fmt = choose_format(request.headers.get("accept"), ndjson_key="response")
    turn = await _generate_turn(request)
    return LiveStream(_items(context_of(request).engine.stream(turn), session=False), fmt)
