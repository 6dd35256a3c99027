"""Model management through Ollama's API: ``DELETE /api/delete``, ``POST /api/copy``,
``POST /api/create``, ``POST /api/push``, ``HEAD``/``POST /api/blobs/:digest``.

Refused (403, Ollama's ``{"error": ...}``) unless the server runs with ``--allow-manage``
(``OLLANG_SERVER_ALLOW_MANAGE``). Otherwise each request goes to one Ollama host: the
one that holds the model, or the one the client names with ``?host=URL`` or an
``X-Ollang-Host: URL`` header (needed when several hosts hold it, or none does yet and
several are up: a create, a blob). The answer names the host in its own
``X-Ollang-Host`` header. Progress (create, push) streams as the host's NDJSON lines.
Afterwards the router checks that host again, so model lists are current at once.

Keys and the allow-list apply as on every route: a model (or a copy's destination, a
create's ``from``) outside ``--allow-model`` is refused with 403. The requests themselves
are :class:`~ollang.transport.manage.ModelManager`'s, the same the CLI's ``ollang rm``,
``cp``, ``create`` and ``push`` send.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ollang.errors import ModelNotFoundError, NotSupportedError, OllamaResponseError, OllangError
from ollang.iterators import aclosing_iter
from ollang.routing.hosts import OllamaHost
from ollang.routing.router import NoHostError
from ollang.server.auth import BEARER_DOC, owner_now
from ollang.server.body import body_schema, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.dialects import ollama as ol
from ollang.server.dialects.common import DialectStream
from ollang.server.errors import BadRequestError, ForbiddenError
from ollang.server.routes.models import unsupported
from ollang.server.schemas import MODEL_NAME_PATTERN, PULL_NAME_PATTERN, ErrorResponse
from ollang.server.streaming import StreamItem
from ollang.settings import parse_ollama_host
from ollang.transport.manage import PullProgress

__all__ = ["HOST_HEADER", "router"]

router = APIRouter(tags=["ollama"])

#: The request header (or ``?host=``) naming the host, and the answer's header naming it.
HOST_HEADER = "X-Ollang-Host"

_DIGEST = re.compile(r"^sha256[:-][0-9a-f]{64}$")
_NAME = Field(None, pattern=MODEL_NAME_PATTERN, max_length=200)
_HOST_PARAM = {
    "name": "host",
    "in": "query",
    "required": False,
    "description": f"The Ollama host to act on (its URL; or the `{HOST_HEADER}` header), "
    "needed when several hosts hold the model or none does yet.",
    "schema": {"type": "string"},
}
_NDJSON = {
    "description": "Progress as NDJSON lines, or one object with `stream: false`.",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def _doc(model: type[BaseModel] | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {**BEARER_DOC, "parameters": [_HOST_PARAM]}
    return {**body_schema(model), **extra} if model is not None else extra


# -- requests ---------------------------------------------------------------------------
class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class OllamaCopyRequest(_Wire):
    """``POST /api/copy``."""

    source: str = Field(..., pattern=MODEL_NAME_PATTERN, max_length=200, examples=["llama3"])
    destination: str = Field(
        ..., pattern=MODEL_NAME_PATTERN, max_length=200, examples=["llama3-backup"]
    )


class OllamaCreateRequest(_Wire):
    """``POST /api/create``: ``from`` a model and/or ``files`` (digests of uploaded blobs)."""

    model: str | None = _NAME
    name: str | None = _NAME
    from_: str | None = Field(None, alias="from", pattern=MODEL_NAME_PATTERN, max_length=200)
    files: dict[str, str] | None = Field(None, max_length=256)
    adapters: dict[str, str] | None = Field(None, max_length=64)
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = Field(None, max_length=1000)
    quantize: str | None = Field(None, pattern=r"^[A-Za-z0-9_]{1,32}$")
    stream: bool = True

    @field_validator("files", "adapters")
    @classmethod
    def _blobs(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, digest in (value or {}).items():
            if not name or name in (".", "..") or re.search(r"[/\\\x00]", name):
                raise ValueError(f"invalid file name {name!r}")
            if not _DIGEST.match(digest):
                raise ValueError(f"{name}: not a blob digest (sha256:<64 hex digits>)")
        return value

    @property
    def which(self) -> str:
        """The model to create."""
        return ol.model_named(self.model, self.name)

    def upstream(self) -> dict[str, Any]:
        """The body passed on (without ``model`` and ``stream``, which the manager sets)."""
        return self.model_dump(
            by_alias=True, exclude_none=True, exclude={"model", "name", "stream"}
        )


class OllamaPushRequest(_Wire):
    """``POST /api/push``: only ``namespace/model[:tag]`` names, to Ollama's registry."""

    model: str | None = Field(None, pattern=PULL_NAME_PATTERN, examples=["me/llama3-mario"])
    name: str | None = Field(None, pattern=PULL_NAME_PATTERN)
    insecure: bool | None = Field(None, description="Ignored: always Ollama's registry.")
    stream: bool = True

    @property
    def which(self) -> str:
        """The model to push."""
        return ol.model_named(self.model, self.name, "NAMESPACE/NAME")


# -- errors -----------------------------------------------------------------------------
class HostRefusedError(OllangError):
    """The host answered the request with an error: its own words, its status (a 4xx),
    else 500 as Ollama answers a failed operation."""

    def __init__(self, detail: str, status: int | None, host: str) -> None:
        super().__init__(detail, f"answered by the Ollama host {host}")
        self.http_status = status if status and 400 <= status < 500 and status != 401 else 500


class AmbiguousHostError(OllangError):
    """Several hosts could take the request: the client must name one."""

    http_status = 409

    def __init__(self, what: str, hosts: list[str]) -> None:
        super().__init__(
            f"{what} on several Ollama hosts ({', '.join(hosts)}): name one",
            f"add ?host=URL or an {HOST_HEADER}: URL header, e.g. {HOST_HEADER}: {hosts[0]}",
        )


def _check_manage(ctx: ServerContext) -> None:
    if not ctx.settings.allow_manage:
        raise ForbiddenError(
            "managing models is disabled on this server",
            "start the server with --allow-manage (OLLANG_SERVER_ALLOW_MANAGE=1), "
            "or run `ollama` on the host's machine",
        )


@contextmanager
def _from_host(host: str) -> Iterator[None]:
    """A host's error answer as :class:`HostRefusedError` (its status, its message)."""
    try:
        yield
    except OllamaResponseError as err:
        if type(err) is not OllamaResponseError:  # cut, garbled: ollang's own errors
            raise
        raise HostRefusedError(err.detail, err.status_code, host) from err


# -- which host -------------------------------------------------------------------------
def _ollama_hosts(ctx: ServerContext) -> list[OllamaHost]:
    return [h for h in ctx.router.hosts if isinstance(h, OllamaHost)]


#: What each route does, as a "not supported by this host" answer names it.
_VERBS = {
    "/api/delete": "deleting models",
    "/api/copy": "copying models",
    "/api/create": "creating models",
    "/api/push": "pushing models",
    "/api/blobs": "uploading model files",
}


def _verb(request: Request) -> str:
    path = request.url.path
    return next((v for p, v in _VERBS.items() if path.startswith(p)), "managing models")


def _named(request: Request, ctx: ServerContext) -> OllamaHost | None:
    """The host named by ``?host=`` or the ``X-Ollang-Host`` header, if any (an engine
    of another kind: 400, not supported)."""
    value = request.query_params.get("host") or request.headers.get(HOST_HEADER)
    if not value:
        return None
    unsupported(ctx, _verb(request), value.strip())
    hosts = _ollama_hosts(ctx)
    try:
        url = parse_ollama_host(value.strip())
    except ValueError:
        url = value
    found = next((h for h in hosts if h.name in (value.strip(), url)), None)
    if found is None:
        raise BadRequestError(
            f"no Ollama host {value!r} behind this server",
            "hosts: " + (", ".join(h.name for h in hosts) or "none"),
        )
    return found


def _target(
    request: Request,
    ctx: ServerContext,
    model: str | None,
    *,
    must_hold: bool,
    prefer: str | None = None,
) -> OllamaHost:
    """The host a management request goes to: the one named, else the one up that holds
    ``model`` (or ``prefer``, a create's ``from``), else the only one up.

    Raises:
        ModelNotFoundError: ``must_hold`` and no host holds ``model`` (404).
        AmbiguousHostError: several could take it and none is named (409).
        NoHostError: no Ollama host is up (503).
    """
    named = _named(request, ctx)
    if named is not None:
        return named
    unsupported(ctx, _verb(request))
    hosts = _ollama_hosts(ctx)
    up = [h for h in hosts if h.state.up]
    if not up:
        raise NoHostError(model, hosts)
    for name in (model, prefer):
        holders = [h for h in up if name and h.has(name)]
        if len(holders) == 1:
            return holders[0]
        if holders:
            raise AmbiguousHostError(f"model {name!r} is", [h.name for h in holders])
        if must_hold and name == model and model is not None:
            _held_elsewhere(request, ctx, model)
            raise ModelNotFoundError(model, [d.name for d, _ in ctx.gate.usable()])
    if len(up) == 1:
        return up[0]
    raise AmbiguousHostError("there are models", [h.name for h in up])


def _held_elsewhere(request: Request, ctx: ServerContext, model: str) -> None:
    """400, not supported, when only hosts of another kind (an engine) hold ``model``."""
    engine = next(
        (h for h in ctx.router.hosts if h.kind == "openai" and h.state.up and h.has(model)),
        None,
    )
    if engine is not None:
        raise NotSupportedError(_verb(request), engine.name, engine.kind)


def _header(host: OllamaHost) -> dict[str, str]:
    return {HOST_HEADER: host.name}


# -- routes -----------------------------------------------------------------------------
@router.delete(
    "/api/delete",
    response_class=Response,
    responses={200: {"description": "Deleted (empty body)."}, **_errors(400, 401, 403, 404, 409)},
    openapi_extra=_doc(ol.OllamaModelRequest),
    summary="Ollama: delete a model (only with --allow-manage)",
)
async def api_delete(request: Request) -> Response:
    """Delete the model from the host that holds it (or the one named)."""
    owner_now(request)
    ctx = context_of(request)
    _check_manage(ctx)
    body = await parse_request(request, ol.OllamaModelRequest)
    name = body.which
    ctx.gate.check_allowed(name)
    host = _target(request, ctx, name, must_hold=True)
    try:
        with _from_host(host.name):
            await ctx.managers[host.name].adelete(host.installed_name(name))
    finally:
        await ctx.router.recheck(host.name)
    return Response(status_code=200, headers=_header(host))


@router.post(
    "/api/copy",
    response_class=Response,
    responses={200: {"description": "Copied (empty body)."}, **_errors(400, 401, 403, 404, 409)},
    openapi_extra=_doc(OllamaCopyRequest),
    summary="Ollama: copy a model (only with --allow-manage)",
)
async def api_copy(request: Request) -> Response:
    """Copy the model under a new name, on the host that holds it (or the one named)."""
    owner_now(request)
    ctx = context_of(request)
    _check_manage(ctx)
    body = await parse_request(request, OllamaCopyRequest)
    ctx.gate.check_allowed(body.source)
    ctx.gate.check_allowed(body.destination)
    host = _target(request, ctx, body.source, must_hold=True)
    try:
        with _from_host(host.name):
            await ctx.managers[host.name].acopy(host.installed_name(body.source), body.destination)
    finally:
        await ctx.router.recheck(host.name)
    return Response(status_code=200, headers=_header(host))


async def _progress_lines(
    ctx: ServerContext, host: OllamaHost, progress: AsyncIterator[PullProgress]
) -> AsyncIterator[list[StreamItem]]:
    """Progress as Ollama's lines; the host checked again at the end, whatever happened."""
    try:
        async with aclosing_iter(progress):
            with _from_host(host.name):
                async for line in progress:
                    data = {
                        "status": line.status,
                        "digest": line.digest,
                        "total": line.total,
                        "completed": line.completed,
                    }
                    yield [
                        StreamItem(
                            "progress", data={k: v for k, v in data.items() if v is not None}
                        )
                    ]
    finally:
        await ctx.router.recheck(host.name)


async def _answer(
    lines: AsyncIterator[list[StreamItem]], stream: bool, host: OllamaHost
) -> Response:
    if stream:
        return DialectStream(lines, ol.OllamaLines(), ol.error_response, headers=_header(host))
    async with aclosing_iter(lines):
        async for _ in lines:
            pass
    return Response(
        orjson.dumps({"status": "success"}), media_type="application/json", headers=_header(host)
    )


@router.post(
    "/api/create",
    response_class=Response,
    responses={200: _NDJSON, **_errors(400, 401, 403, 404, 409, 503)},
    openapi_extra=_doc(OllamaCreateRequest),
    summary="Ollama: create a model (only with --allow-manage)",
)
async def api_create(request: Request) -> Response:
    """Create a model `from` another and/or from `files` uploaded first with
    `POST /api/blobs/:digest`, on the host named, else the one holding the model (or its
    `from`), else the only one up. Progress streams as Ollama's lines."""
    owner_now(request)
    ctx = context_of(request)
    _check_manage(ctx)
    body = await parse_request(request, OllamaCreateRequest)
    name = body.which
    ctx.gate.check_allowed(name)
    if body.from_:
        ctx.gate.check_allowed(body.from_)
    host = _target(request, ctx, name, must_hold=False, prefer=body.from_)
    ask = body.upstream()
    if body.from_:
        if host.has(body.from_):
            ask["from"] = host.installed_name(body.from_)
        elif not re.match(PULL_NAME_PATTERN, body.from_):
            raise ForbiddenError(
                f"{body.from_!r} is not on {host.name}, and pulls come only from Ollama's registry",
                "create from a model the host has, or a [namespace/]model[:tag] name",
            )
    lines = _progress_lines(ctx, host, ctx.managers[host.name].acreate(name, ask))
    return await _answer(lines, body.stream, host)


@router.post(
    "/api/push",
    response_class=Response,
    responses={200: _NDJSON, **_errors(400, 401, 403, 404, 409, 503)},
    openapi_extra=_doc(OllamaPushRequest),
    summary="Ollama: push a model to ollama.com (only with --allow-manage)",
)
async def api_push(request: Request) -> Response:
    """Push the model from the host that holds it (or the one named) to Ollama's
    registry, with the host's own credentials. Progress streams as Ollama's lines."""
    owner_now(request)
    ctx = context_of(request)
    _check_manage(ctx)
    body = await parse_request(request, OllamaPushRequest)
    name = body.which
    ctx.gate.check_allowed(name)
    host = _target(request, ctx, name, must_hold=True)
    lines = _progress_lines(ctx, host, ctx.managers[host.name].apush(host.installed_name(name)))
    return await _answer(lines, body.stream, host)


def _digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise BadRequestError(
            f"invalid blob digest {digest[:80]!r}", "sha256:<64 lowercase hex digits>"
        )
    return digest


@router.head(
    "/api/blobs/{digest}",
    response_class=Response,
    responses={
        200: {"description": "The host has the blob."},
        404: {"description": "It has not."},
        **_errors(400, 401, 403, 409),
    },
    openapi_extra=_doc(),
    summary="Ollama: does the host have a blob (only with --allow-manage)",
)
async def api_blob_head(request: Request, digest: str) -> Response:
    """200 when the host (named, or the only one up) has the blob, else 404."""
    owner_now(request)
    ctx = context_of(request)
    _check_manage(ctx)
    digest = _digest(digest)
    host = _target(request, ctx, None, must_hold=False)
    with _from_host(host.name):
        held = await ctx.managers[host.name].ahas_blob(digest)
    return Response(status_code=200 if held else 404, headers=_header(host))


@router.post(
    "/api/blobs/{digest}",
    response_class=Response,
    responses={201: {"description": "Stored."}, **_errors(400, 401, 403, 409)},
    openapi_extra={
        **_doc(),
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
    },
    summary="Ollama: upload a blob for create (only with --allow-manage)",
)
async def api_blob_upload(request: Request, digest: str) -> Response:
    """The body passed on to the host as it arrives (no size limit: a model file); the
    host checks it against the digest."""
    owner_now(request)
    ctx = context_of(request)
    _check_manage(ctx)
    digest = _digest(digest)
    host = _target(request, ctx, None, must_hold=False)
    with _from_host(host.name):
        status = await ctx.managers[host.name].aupload_blob(digest, request.stream())
    return Response(status_code=status, headers=_header(host))
