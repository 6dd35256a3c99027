"""``/chat``, ``/chat/stream``, ``/generate``, ``/generate/stream``: thin over ``chains``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from ollang.chains.chat import ChatChain
from ollang.chains.iterators import aclosing_iter
from ollang.chains.turn import ChatEvent, TurnRecorder, TurnResult
from ollang.server.auth import request_owner
from ollang.server.body import body_schema, check_length, parse_request
from ollang.server.context import context_of
from ollang.server.schemas import (
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
)
from ollang.server.streaming import (
    ClientDisconnected,
    LiveStream,
    StreamItem,
    cancel_on_disconnect,
    choose_format,
)

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


@dataclass
class ChatQuery:
    """The query-parameter form of a chat request (``POST /chat?message=Hello``)."""

    message: str | None = Query(None, description="The message (if not in the body).")
    model: str | None = Query(None, description="The model (if not in the body).")
    session_id: str | None = Query(None, description="The session (if not in the body).")
    system: str | None = Query(None, description="A system prompt (if not in the body).")


@dataclass
class GenerateQuery:
    """The query-parameter form of a generate request."""

    prompt: str | None = Query(None, description="The prompt (if not in the body).")
    model: str | None = Query(None, description="The model (if not in the body).")
    system: str | None = Query(None, description="A system prompt (if not in the body).")


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


@dataclass
class _Turn:
    chain: ChatChain
    input: dict[str, Any]
    config: RunnableConfig


async def _chat_turn(request: Request, query: ChatQuery, owner: str | None) -> _Turn:
    """Parse, check limits, resolve the model, claim the session: all before any output."""
    ctx = context_of(request)
    body = await parse_request(request, ChatRequest, vars(query))
    check_length(ctx.settings.max_message_chars, message=body.message, system=body.system)
    model = await ctx.gate.resolve(body.model)
    chain = ctx.chains.get(model, body.options.as_kwargs() if body.options else {})
    session_id = body.session_id or uuid.uuid4().hex
    await ctx.sessions.claim(session_id, owner)
    turn_input: dict[str, Any] = {"input": body.message}
    if body.system is not None:
        turn_input["system"] = body.system
    return _Turn(chain, turn_input, {"configurable": {"session_id": session_id}})


async def _chat_items(events: AsyncIterator[ChatEvent]) -> AsyncIterator[StreamItem]:
    async with aclosing_iter(events):
        async for event in events:
            if event.type == "done":
                assert event.result is not None
                yield StreamItem("done", data=summary(event.result))
            else:
                yield StreamItem(event.type, event.text)


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses=_ERRORS,
    openapi_extra=body_schema(ChatRequest, required=False),
    summary="One chat turn, answered when complete",
)
async def chat(
    request: Request,
    owner: str | None = Depends(request_owner),
    query: ChatQuery = Depends(),  # noqa: B008
) -> Any:
    """Send a message in a session (a new one unless `session_id` is given) and get the answer.

    The body is read as JSON whatever the `Content-Type` (so `curl -d '{...}'` works);
    query parameters fill in fields the body lacks.
    """
    turn = await _chat_turn(request, query, owner)
    try:
        result: TurnResult = await cancel_on_disconnect(
            request.receive, turn.chain.ainvoke_turn(turn.input, turn.config)
        )
    except ClientDisconnected:
        return Response(status_code=499)  # nobody to read it; the partial answer is stored
    return {**summary(result), "response": result.text, "reasoning": result.reasoning or None}


@router.post(
    "/chat/stream",
    responses={200: _STREAM_DOC, **_ERRORS},
    response_class=Response,
    openapi_extra=body_schema(ChatRequest, required=False),
    summary="One chat turn, streamed",
)
async def chat_stream(
    request: Request,
    owner: str | None = Depends(request_owner),
    query: ChatQuery = Depends(),  # noqa: B008
) -> Response:
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
    turn = await _chat_turn(request, query, owner)
    events = turn.chain.astream_turn(turn.input, turn.config)
    session_id = turn.config["configurable"]["session_id"]
    return LiveStream(_chat_items(events), fmt, headers={"X-Session-Id": session_id})


async def _generate_setup(request: Request, query: GenerateQuery) -> tuple[Any, list[BaseMessage]]:
    ctx = context_of(request)
    body = await parse_request(request, GenerateRequest, vars(query))
    check_length(ctx.settings.max_message_chars, prompt=body.prompt, system=body.system)
    model = await ctx.gate.resolve(body.model)
    chat_model = ctx.chains.model(model, body.options.as_kwargs() if body.options else {})
    messages: list[BaseMessage] = [SystemMessage(body.system)] if body.system else []
    messages.append(HumanMessage(body.prompt))
    return chat_model, messages


async def _generate_items(
    model: BaseChatModel, messages: list[BaseMessage]
) -> AsyncIterator[StreamItem]:
    """One stateless completion, measured like a chat turn (TTFT, usage, speed)."""
    recorder = TurnRecorder(session_id="", model_name=getattr(model, "model", None))
    async with aclosing_iter(model.astream(messages)) as chunks:
        async for chunk in chunks:
            text = recorder.observe(chunk)
            for thought in recorder.drain_reasoning():
                yield StreamItem("reasoning", thought)
            if text:
                yield StreamItem("token", text)
    result = recorder.finish("complete")
    yield StreamItem(
        "done",
        data={**summary(result, session=False), "response": result.text},
    )


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses=_ERRORS,
    openapi_extra=body_schema(GenerateRequest, required=False),
    summary="One-shot generation, no memory",
)
async def generate(
    request: Request,
    owner: str | None = Depends(request_owner),
    query: GenerateQuery = Depends(),  # noqa: B008
) -> Any:
    """Answer a prompt without any session or history."""
    model, messages = await _generate_setup(request, query)

    async def run() -> dict[str, Any]:
        done: dict[str, Any] = {}
        reasoning: list[str] = []
        async for item in _generate_items(model, messages):
            if item.kind == "reasoning":
                reasoning.append(item.text)
            elif item.kind == "done":
                done = item.data or {}
        return {**done, "reasoning": "".join(reasoning) or None}

    try:
        return await cancel_on_disconnect(request.receive, run())
    except ClientDisconnected:
        return Response(status_code=499)


@router.post(
    "/generate/stream",
    responses={200: _STREAM_DOC, **_ERRORS},
    response_class=Response,
    openapi_extra=body_schema(GenerateRequest, required=False),
    summary="One-shot generation, streamed",
)
async def generate_stream(
    request: Request,
    owner: str | None = Depends(request_owner),
    query: GenerateQuery = Depends(),  # noqa: B008
) -> Response:
    """Like `POST /generate`, streamed in the format `Accept` asks for (as `/chat/stream`;
    NDJSON lines carry `response` instead of `message`, as Ollama's `/api/generate`)."""
    fmt = choose_format(request.headers.get("accept"), ndjson_key="response")
    model, messages = await _generate_setup(request, query)
    return LiveStream(_generate_items(model, messages), fmt)
