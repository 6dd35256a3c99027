"""Ollama's API on ollang: ``/api/chat``, ``/api/generate``, ``/api/tags``, ``/api/show``,
``/api/ps``, ``/api/version``, ``/api/pull`` (only with ``--allow-pull``), ``/api/embed``
and ``/api/embeddings`` (passed on to a host that has the model; model management is
:mod:`.ollama_manage`) — thin over the turn engine (translation:
:mod:`.dialect_ollama`).

ollama-python, ollama-js, ``ChatOllama`` and Open WebUI work unchanged with
``host=http://HOST:PORT`` (and ``Authorization: Bearer KEY`` in their headers when the
server has keys). Chat and generate go through ollang's machinery as ``/chat`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ollang import __version__
from ollang.errors import ModelNotFoundError, OllamaResponseError, OllangError
from ollang.iterators import aclosing_iter
from ollang.routing.hosts import OllamaHost
from ollang.server.auth import BEARER_DOC, owner_now
from ollang.server.body import body_schema, check_length, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.dialects import ollama as ol
from ollang.server.dialects.common import DialectStream, check_message_lengths, run_to_end
from ollang.server.keys import request_key
from ollang.server.recording import SESSION_HEADER, attach, record_index, remember_answer
from ollang.server.routes.models import (
    check_pull_allowed,
    pull_hosts,
    pull_progress,
    unsupported,
    usable_models,
)
from ollang.server.schemas import MODEL_NAME_PATTERN, ErrorResponse
from ollang.server.streaming import StreamItem
from ollang.server.turns import TurnChunk, TurnDone, TurnRequest
from ollang.transport.manage import normalise_model
from ollang.turns.recorder import TurnResult

__all__ = ["OLLAMA_API_VERSION", "router"]

router = APIRouter(tags=["ollama"])

#: The version reported when no Ollama host is up: the API these routes speak.
OLLAMA_API_VERSION = "0.12.0"

_NDJSON = {
    "description": "NDJSON lines (Ollama's stream), or one JSON object with `stream: false`.",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}
_SESSION_PARAM = {
    "name": SESSION_HEADER,
    "in": "header",
    "required": False,
    "description": "Record the conversation in this ollang session.",
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def _json(value: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(value, default=str), media_type="application/json", headers=headers
    )


def _loaded(model: str, generate: bool) -> dict[str, Any]:
    """What Ollama answers a request with nothing to answer: the model is loaded."""
    out: dict[str, Any] = {"model": model, "created_at": ol.now_iso()}
    if generate:
        out["response"] = ""
    else:
        out["message"] = {"role": "assistant", "content": ""}
    return {**out, "done_reason": "load", "done": True}


async def _lines(
    turns: AsyncIterator[TurnChunk | TurnDone],
    model: str,
    after: Callable[[TurnResult], None],
) -> AsyncIterator[list[StreamItem]]:
    """The host's stream lines as they came, a done line made up if it sent none."""
    saw_done = False
    async with aclosing_iter(turns):
        async for part in turns:
            if isinstance(part, TurnDone):
                after(part.result)
                if not saw_done:
                    yield [StreamItem("progress", data=ol.done_line(part.result, model))]
                continue
            if part.lines:
                saw_done = saw_done or bool(part.lines[-1].get("done"))
                yield [StreamItem("progress", data=line) for line in part.lines]


async def _answer(
    request: Request,
    ctx: ServerContext,
    turn: TurnRequest,
    *,
    stream: bool,
    generate: bool,
    after: Callable[[TurnResult], None],
    headers: dict[str, str],
) -> Response:
    turns = ctx.engine.stream(turn)
    if stream:
        fmt = ol.OllamaLines(generate=generate)
        return DialectStream(
            _lines(turns, turn.model, after), fmt, ol.error_response, headers=headers
        )
    result = await run_to_end(request, turns)
    if result is None:
        return Response(status_code=499)  # nobody to read it; the partial answer is kept
    after(result)
    render = ol.generate_response if generate else ol.chat_response
    return _json(render(result, turn.model), headers)


def _human(messages: list[BaseMessage]) -> HumanMessage:
    found = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    return found or HumanMessage("")


@router.post(
    "/api/chat",
    response_class=Response,
    responses={200: _NDJSON, **_errors(400, 401, 403, 404, 413, 502, 503, 504)},
    openapi_extra={
        **body_schema(ol.OllamaChatRequest),
        **BEARER_DOC,
        "parameters": [_SESSION_PARAM],
    },
    summary="Ollama: chat",
)
async def api_chat(request: Request) -> Response:
    """Ollama's `POST /api/chat`: `messages` (with `images`, `tool_calls`, tool results),
    `tools`, `format`, `options`, `think`, `keep_alive`, `stream`. The answer streams as
    the host's own NDJSON lines (`message.content`, `message.thinking`,
    `message.tool_calls`, then the done line with its counts).

    With `X-Session-Id: ID` the conversation is recorded in that ollang session, each
    message once."""
    owner = owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, ol.OllamaChatRequest)
    messages = ol.to_messages(body.messages)
    check_message_lengths(ctx.settings.max_message_chars, messages)
    model = ctx.gate.resolve(body.model)
    if not any(m.type != "system" for m in messages):
        return _json(_loaded(model, generate=False))
    options, extra = ol.top_level(body)
    turn = TurnRequest(
        model=model,
        human=_human(messages),
        owner=owner,
        options=options,
        extra=extra,
        messages=messages,
        route="/api/chat",
    )
    index = record_index(request)
    record_all = ctx.settings.record_all
    recording = attach(turn, request, named=None, record_all=record_all, index=index)

    def after(result: TurnResult) -> None:
        remember_answer(recording, index, result.message, record_all=record_all)

    headers = {SESSION_HEADER: turn.session_id} if turn.session_id else {}
    return await _answer(
        request, ctx, turn, stream=body.stream, generate=False, after=after, headers=headers
    )


def _nothing(result: TurnResult) -> None:
    return None


@router.post(
    "/api/generate",
    response_class=Response,
    responses={200: _NDJSON, **_errors(400, 401, 403, 404, 413, 502, 503, 504)},
    openapi_extra={**body_schema(ol.OllamaGenerateRequest), **BEARER_DOC},
    summary="Ollama: generate (one-shot, never recorded)",
)
async def api_generate(request: Request) -> Response:
    """Ollama's `POST /api/generate`, answered by a chat turn of `system` and `prompt`
    (with `images`): `response` and `thinking` lines, then the done line. `template`,
    `raw`, `suffix` and `context` are ignored (ollang talks to hosts through chat)."""
    owner = owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, ol.OllamaGenerateRequest)
    check_length(ctx.settings.max_message_chars, prompt=body.prompt, system=body.system)
    model = ctx.gate.resolve(body.model)
    if not body.prompt and not body.images:
        return _json(_loaded(model, generate=True))
    messages = ol.generate_messages(body)
    options, extra = ol.top_level(body)
    turn = TurnRequest(
        model=model,
        human=_human(messages),
        owner=owner,
        options=options,
        extra=extra,
        messages=messages,
        route="/api/generate",
    )
    return await _answer(
        request, ctx, turn, stream=body.stream, generate=True, after=_nothing, headers={}
    )


@router.get(
    "/api/tags",
    responses=_errors(401, 503),
    openapi_extra=BEARER_DOC,
    summary="Ollama: the models clients may use",
)
async def api_tags(request: Request) -> Any:
    """Installed models this server lets clients use, over every host that is up."""
    owner_now(request)
    ctx = context_of(request)
    return {"models": [ol.tag_entry(details) for details, _ in usable_models(ctx)]}


@router.post(
    "/api/show",
    response_class=Response,
    responses={200: {"description": "Ollama's `show` answer."}, **_errors(400, 401, 403, 404)},
    openapi_extra={**body_schema(ol.OllamaModelRequest), **BEARER_DOC},
    summary="Ollama: show a model",
)
async def api_show(request: Request) -> Response:
    """The host's own `/api/show` answer for the model (`model_info` holds its context
    length); for the embedded backend, what it knows."""
    owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, ol.OllamaModelRequest)
    name = ctx.gate.resolve(body.which)
    hosts = ctx.router.order(name)
    if not hosts:
        raise ModelNotFoundError(name, [d.name for d, _ in ctx.gate.usable()])
    host = hosts[0]
    if isinstance(host, OllamaHost):
        ask: dict[str, Any] = {"model": host.installed_name(name)}
        if body.verbose:
            ask["verbose"] = True
        return _json(await host.wire.post_json("/api/show", ask))
    length = await host.context_length(name)
    details = next((d for d, _ in ctx.gate.usable() if d.name == name), None)
    return _json(
        {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": ol.tag_entry(details)["details"] if details is not None else {},
            "model_info": {"general.architecture": "llama", "llama.context_length": length},
            "capabilities": ["completion"],
        }
    )


@router.get(
    "/api/ps",
    responses=_errors(400, 401),
    openapi_extra=BEARER_DOC,
    summary="Ollama: models in memory",
)
async def api_ps(request: Request) -> Any:
    """The models the Ollama hosts have loaded now (those clients may use)."""
    owner_now(request)
    ctx = context_of(request)
    unsupported(ctx, "listing loaded models")  # 400 when every host is an engine
    hosts = [h for h in ctx.router.hosts if isinstance(h, OllamaHost) and h.state.up]
    answers = await asyncio.gather(
        *(h.wire.get_json("/api/ps", timeout=3.0) for h in hosts), return_exceptions=True
    )
    models = [
        entry
        for answer in answers
        if isinstance(answer, dict)
        for entry in answer.get("models") or []
        if ctx.gate.allowed(str(entry.get("model") or entry.get("name") or ""))
    ]
    return {"models": models}


@router.get(
    "/api/version",
    responses=_errors(401),
    openapi_extra=BEARER_DOC,
    summary="Ollama: version",
)
async def api_version(request: Request) -> Any:
    """The first Ollama host's version (what its features are), and ollang's."""
    owner_now(request)
    ctx = context_of(request)
    version = next(
        (
            h.state.version
            for h in ctx.router.hosts
            if isinstance(h, OllamaHost) and h.state.up and h.state.version
        ),
        OLLAMA_API_VERSION,
    )
    return {"version": version, "ollang": __version__}


@router.post(
    "/api/pull",
    response_class=Response,
    responses={200: _NDJSON, **_errors(400, 401, 403, 404, 503)},
    openapi_extra={**body_schema(ol.OllamaPullRequest), **BEARER_DOC},
    summary="Ollama: pull a model (only with --allow-pull)",
)
async def api_pull(request: Request) -> Response:
    """Pull the model on every Ollama host that is up, one after the other, with Ollama's
    progress lines. 403 unless the server runs with `--allow-pull` (or when `--allow-model`
    excludes the name); only `[namespace/]model[:tag]` names, never another registry."""
    owner_now(request)
    ctx = context_of(request)
    check_pull_allowed(ctx)
    body = await parse_request(request, ol.OllamaPullRequest)
    name = body.which
    ctx.gate.check_allowed(name)
    lines = pull_progress(ctx, name, pull_hosts(ctx, name), name_host=False)
    if body.stream:
        return DialectStream(lines, ol.OllamaLines(), ol.error_response)
    async with aclosing_iter(lines):
        async for _ in lines:
            pass
    return _json({"status": "success"})


class CannotEmbedError(OllangError):
    """The model has no ``embedding`` capability: Ollama's own 400 and words."""

    http_status = 400

    def __init__(self, model: str, hint: str = "") -> None:
        super().__init__(
            f'"{model}" does not support embeddings',
            hint or "use an embedding model (nomic-embed-text, all-minilm...)",
        )
        self.model = model


class OllamaEmbeddingsRequest(BaseModel):
    """``POST /api/embeddings`` (Ollama's older call): one ``prompt``, one vector back."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(..., pattern=MODEL_NAME_PATTERN, max_length=200, examples=["all-minilm"])
    prompt: str = Field("", examples=["Why is the sky blue?"])
    options: dict[str, ol.OptionValue] | None = None
    keep_alive: str | int | float | None = None

    _options = field_validator("options")(ol._check_options)


#: Capabilities per (host, installed name, digest), from the hosts' ``/api/show``.
_CAPABILITIES = "ollama_capabilities"


async def _capabilities(request: Request, host: OllamaHost, installed: str) -> list[str]:
    """The model's capabilities as its host reports them (``[]``: it does not say)."""
    cache: dict[tuple[str, str, str], list[str]] | None = getattr(
        request.app.state, _CAPABILITIES, None
    )
    if cache is None:
        cache = {}
        setattr(request.app.state, _CAPABILITIES, cache)
    details = host.state.models.get(normalise_model(installed))
    key = (host.name, installed, (details.digest if details else None) or "")
    if key not in cache:
        try:
            shown = await host.wire.post_json("/api/show", {"model": installed})
        except OllangError:
            return []  # the embed request itself will say what is wrong
        if len(cache) > 4096:
            cache.clear()
        cache[key] = [str(c) for c in shown.get("capabilities") or []]
    return cache[key]


async def _embed(
    request: Request, ctx: ServerContext, requested: str, path: str, ask: dict[str, Any]
) -> Response:
    """``ask`` passed on to ``path`` of an Ollama host that has the model and can embed
    with it (the allow-list, the embedded backend's models and capabilities checked)."""
    model = ctx.gate.resolve(requested)
    # Only Ollama hosts embed here: the embedded backend and engines (openai kind) chat.
    embedded = [h for h in ctx.router.hosts if not isinstance(h, OllamaHost)]
    if not any(isinstance(h, OllamaHost) for h in ctx.router.order(model)):
        raise CannotEmbedError(
            requested,
            "only Ollama hosts embed here (the embedded backend and OpenAI-compatible "
            "engines serve chat); pull an embedding model",
        )
    lease = await ctx.router.lease(model, exclude=embedded, key=request_key(request))
    try:
        host = lease.host
        assert isinstance(host, OllamaHost)
        installed = host.installed_name(model)
        capabilities = await _capabilities(request, host, installed)
        if capabilities and "embedding" not in capabilities:
            raise CannotEmbedError(requested)
        try:
            answer = await host.wire.post_json(path, {**ask, "model": installed})
        except OllamaResponseError as err:
            if err.status_code == 400 and "does not support" in err.detail:
                raise CannotEmbedError(requested) from err
            raise
    finally:
        lease.release()
    return _json(answer)


_EMBED_ERRORS = _errors(400, 401, 403, 404, 413, 502, 503, 504)


@router.post(
    "/api/embed",
    response_class=Response,
    responses={200: {"description": "Ollama's `embed` answer."}, **_EMBED_ERRORS},
    openapi_extra={**body_schema(ol.OllamaEmbedRequest), **BEARER_DOC},
    summary="Ollama: embeddings (passed on to a host that has the model)",
)
async def api_embed(request: Request) -> Response:
    """Passed on to an Ollama host that has the model (the embedded backend has no
    embeddings); a model that cannot embed gets Ollama's 400 `"x" does not support
    embeddings`."""
    owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, ol.OllamaEmbedRequest)
    inputs = [body.input] if isinstance(body.input, str) else body.input
    for index, text in enumerate(inputs):
        check_length(ctx.settings.max_message_chars, **{f"input[{index}]": text})
    return await _embed(request, ctx, body.model, "/api/embed", body.model_dump(exclude_none=True))


@router.post(
    "/api/embeddings",
    response_class=Response,
    responses={200: {"description": '`{"embedding": [...]}`'}, **_EMBED_ERRORS},
    openapi_extra={**body_schema(OllamaEmbeddingsRequest), **BEARER_DOC},
    summary="Ollama: embeddings, the older call (passed on to a host that has the model)",
)
async def api_embeddings(request: Request) -> Response:
    """Ollama's older `POST /api/embeddings` (`{"model", "prompt"}` ->
    `{"embedding": [...]}`), as `/api/embed`: the same keys, allow-list and limits."""
    owner_now(request)
    ctx = context_of(request)
    body = await parse_request(request, OllamaEmbeddingsRequest)
    check_length(ctx.settings.max_message_chars, prompt=body.prompt)
    ask = body.model_dump(exclude_none=True)
    return await _embed(request, ctx, body.model, "/api/embeddings", ask)
