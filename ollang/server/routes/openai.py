"""OpenAI's API on ollang: ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /v1/models/{id}`` — thin over the turn engine (translation: :mod:`.dialect_openai`).

Any OpenAI client works with ``base_url=http://HOST:PORT/v1`` and, when the server has
keys, ``api_key=KEY`` (sent as ``Authorization: Bearer KEY``, as ollang expects). The
turn goes through ollang's machinery like ``/chat``'s: keys, the allow-list, body and
message limits, the hosts and their failover, the embedded backend, ``num_ctx`` set to
fit when the client sets none, and a client disconnect closing the upstream request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from ollang.errors import ModelNotFoundError
from ollang.iterators import aclosing_iter
from ollang.server.auth import BEARER_DOC, owner_now
from ollang.server.body import body_schema, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.dialects import openai as oa
from ollang.server.dialects.common import (
    DialectStream,
    check_message_lengths,
    line_items,
    run_to_end,
)
from ollang.server.errors import ValidationFailedError
from ollang.server.keys import request_key
from ollang.server.recording import (
    SESSION_HEADER,
    Recording,
    attach,
    record_index,
    remember_answer,
)
from ollang.server.routes.models import usable_models
from ollang.server.streaming import StreamItem
from ollang.server.turns import TurnChunk, TurnDone, TurnRequest
from ollang.turns.recorder import TurnResult

__all__ = ["router"]

router = APIRouter(tags=["openai"])

ROUTE = "/v1/chat/completions"


class OpenAIErrorDetail(BaseModel):
    """What went wrong, as OpenAI says it (plus ollang's ``hint``)."""

    message: str
    type: str = Field(..., description="invalid_request_error, permission_error, server_error")
    param: str | None = None
    code: str | None = Field(None, description="e.g. model_not_found, invalid_api_key")
    hint: str | None = Field(None, description="What to do about it (ollang's).")


class OpenAIError(BaseModel):
    """Every error answer of the ``/v1`` endpoints."""

    error: OpenAIErrorDetail


class OpenAIModel(BaseModel):
    """A model (``GET /v1/models/{id}``)."""

    id: str
    object: str = "model"
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    """``GET /v1/models``."""

    object: str = "list"
    data: list[OpenAIModel]


class OpenAIChatCompletion(BaseModel):
    """A ``chat.completion`` (``stream: false``)."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str | None
    system_fingerprint: str
    choices: list[dict[str, Any]]
    usage: dict[str, int]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": OpenAIError} for code in codes}


_SESSION_PARAM = {
    "name": SESSION_HEADER,
    "in": "header",
    "required": False,
    "description": "Record the conversation in this ollang session (see README: "
    '"Sessions for stateless clients").',
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
}


async def _turn(
    request: Request, ctx: ServerContext
) -> tuple[TurnRequest, oa.OpenAIChatRequest, Recording | None]:
    """Check the key, parse, check limits, resolve the model: all before any output."""
    owner = owner_now(request)
    body = await parse_request(request, oa.OpenAIChatRequest)
    messages = oa.to_messages(body)
    check_message_lengths(ctx.settings.max_message_chars, messages)
    if not any(m.type != "system" for m in messages):
        raise ValidationFailedError(
            "messages has no user, assistant or tool message", "send the conversation"
        )
    model = ctx.gate.resolve(body.model)
    options, extra = oa.turn_options(body)
    human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    turn = TurnRequest(
        model=model,
        human=human or HumanMessage(""),
        owner=owner,
        options=options,
        extra=extra,
        messages=messages,
        route=ROUTE,
    )
    named = (body.metadata or {}).get("session_id")
    recording = attach(
        turn,
        request,
        named=named,
        record_all=ctx.settings.record_all,
        index=record_index(request),
    )
    return turn, body, recording


def _done_data(result: TurnResult) -> dict[str, Any]:
    return {
        "finish_reason": oa.finish_reason(result),
        "tool_calls": oa.tool_calls(result),
        "usage": oa.usage(result),
    }


_ROLE = StreamItem("progress")


async def _items(
    turns: AsyncIterator[TurnChunk | TurnDone],
    after: Callable[[TurnResult], None],
) -> AsyncIterator[list[StreamItem]]:
    """The turn as OpenAI stream items: the role first (with the first batch), the
    deltas, then the end (tool calls, finish reason, usage, ``[DONE]``)."""
    first = True
    async with aclosing_iter(turns):
        async for part in turns:
            if isinstance(part, TurnDone):
                after(part.result)
                yield [StreamItem("done", data=_done_data(part.result))]
                continue
            items = line_items(part)
            if first:
                items.insert(0, _ROLE)
                first = False
            if items:
                yield items


_BODY_DOC = body_schema(oa.OpenAIChatRequest)


@router.post(
    ROUTE,
    response_class=Response,
    responses={
        200: {
            "description": "A `chat.completion` (JSON), or with `stream: true` its "
            "`chat.completion.chunk` events (SSE) ending in `data: [DONE]`.",
            "content": {
                "application/json": {"schema": OpenAIChatCompletion.model_json_schema()},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **_errors(400, 401, 403, 404, 413, 502, 503, 504),
    },
    openapi_extra={**_BODY_DOC, **BEARER_DOC, "parameters": [_SESSION_PARAM]},
    summary="OpenAI chat completions (stream and not)",
)
async def chat_completions(request: Request) -> Response:
    """OpenAI's `POST /chat/completions`: messages (text, images as `data:` URLs, tool
    calls and results), `temperature`, `top_p`, `max_tokens`/`max_completion_tokens`,
    `stop`, `seed`, `frequency_penalty`, `presence_penalty`, `response_format`
    (`json_object`, `json_schema`), `tools`/`tool_choice`, `reasoning_effort`,
    `stream` and `stream_options.include_usage`. Reasoning comes in the message's
    `reasoning` field, never in `content`.

    With `X-Session-Id: ID` (or `metadata.session_id`) the conversation is recorded in
    that ollang session, each message once. Errors are OpenAI's
    `{"error": {"message", "type", "param", "code"}}`.
    """
    ctx = context_of(request)
    turn, body, recording = await _turn(request, ctx)
    record_all = ctx.settings.record_all
    index = record_index(request) if recording is not None else None
    headers = {SESSION_HEADER: turn.session_id} if turn.session_id else {}
    key = request_key(request)

    def after(result: TurnResult) -> None:
        if index is not None:
            remember_answer(recording, index, result.message, record_all=record_all)

    completion_id, created = oa.new_id(), oa.now()
    turns = ctx.engine.stream(turn)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        fmt = oa.OpenAIStream(completion_id, created, turn.model, include_usage)
        headers.update(ctx.limits.headers(key, upcoming=1))  # x-ratelimit-*, this one counted
        return DialectStream(_items(turns, after), fmt, oa.error_response, headers=headers)
    result = await run_to_end(request, turns)
    if result is None:
        return Response(status_code=499)  # nobody to read it; the partial answer is kept
    after(result)
    payload = oa.completion(result, completion_id=completion_id, created=created)
    headers.update(ctx.limits.headers(key))  # x-ratelimit-*
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


@router.get(
    "/v1/models",
    response_model=OpenAIModelList,
    responses=_errors(401, 503),
    openapi_extra=BEARER_DOC,
    summary="OpenAI: the models clients may use",
)
async def list_models(request: Request) -> Any:
    """The installed models this server lets clients use (over every host that is up)."""
    owner_now(request)
    data = [
        oa.model_entry(d.name, d.modified_at.timestamp() if d.modified_at else None)
        for d, _ in usable_models(context_of(request))
    ]
    return {"object": "list", "data": data}


@router.get(
    "/v1/models/{model_id:path}",
    response_model=OpenAIModel,
    responses=_errors(401, 404, 503),
    openapi_extra=BEARER_DOC,
    summary="OpenAI: one model",
)
async def get_model(
    request: Request,
    model_id: str = Path(..., description="A model name, as `GET /v1/models` lists it."),
) -> Any:
    """The model, if installed and allowed; else 404 (`model_not_found`), as OpenAI
    answers for a model the key cannot use."""
    owner_now(request)
    ctx = context_of(request)
    if not ctx.gate.allowed(model_id):
        raise ModelNotFoundError(model_id, [d.name for d, _ in ctx.gate.usable()])
    name = ctx.gate.resolve(model_id)
    for details, _ in ctx.gate.usable():
        if details.name == name:
            modified = details.modified_at.timestamp() if details.modified_at else None
            return oa.model_entry(details.name, modified)
    raise ModelNotFoundError(model_id, [d.name for d, _ in ctx.gate.usable()])
