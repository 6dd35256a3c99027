"""``/models``, ``/models/pull`` and ``/health``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ollang.routing.router import NoHostError
from ollang.server.auth import request_owner
from ollang.server.body import body_schema, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.errors import ForbiddenError, ValidationFailedError
from ollang.server.schemas import ErrorResponse, Health, ModelList, PullProgressOut, PullRequest
from ollang.server.streaming import NDJSON, LiveStream, StreamItem
from ollang.transport.manage import ModelDetails

__all__ = [
    "check_pull_allowed",
    "health_router",
    "pull_hosts",
    "pull_progress",
    "router",
    "usable_models",
]

router = APIRouter(tags=["models"], dependencies=[Depends(request_owner)])
health_router = APIRouter(tags=["health"])

#: How long /health waits for Ollama's version before calling it unreachable.
HEALTH_TIMEOUT = 3.0


def usable_models(ctx: ServerContext) -> list[tuple[ModelDetails, list[str]]]:
    """The models clients may use, over every host that is up, with the hosts that have
    each (503 when no host is up)."""
    if not any(h.state.up for h in ctx.router.hosts):
        raise NoHostError(None, ctx.router.hosts)
    return ctx.gate.usable()


@router.get(
    "/models",
    response_model=ModelList,
    responses={code: {"model": ErrorResponse} for code in (401, 503)},
    summary="Installed models this server lets clients use, over every host",
)
async def list_models(request: Request) -> Any:
    """Models on the hosts that are up (filtered by `--allow-model` patterns): name, size,
    details, and `hosts`, the hosts that have each. 503 when no host is up."""
    ctx = context_of(request)
    return {
        "models": [{**details.to_dict(), "hosts": hosts} for details, hosts in usable_models(ctx)],
        "default_model": ctx.router.installed_name(ctx.gate.default_model),
    }


def check_pull_allowed(ctx: ServerContext) -> None:
    """403 unless the server runs with ``--allow-pull``."""
    if not ctx.settings.allow_pull:
        raise ForbiddenError(
            "pulling models is disabled on this server",
            "start the server with --allow-pull, or run `ollama pull` on its machine",
        )


def pull_hosts(ctx: ServerContext, name: str) -> list[str]:
    """The Ollama hosts that are up, where a pull of ``name`` goes (503 if none is)."""
    hosts = [h.name for h in ctx.router.hosts if h.state.up and not h.is_embedded]
    if not hosts:
        raise NoHostError(name, [h for h in ctx.router.hosts if not h.is_embedded])
    return hosts


async def pull_progress(
    ctx: ServerContext, name: str, hosts: list[str], *, name_host: bool
) -> AsyncIterator[list[StreamItem]]:
    """Pull ``name`` on each host in turn: Ollama's progress lines (with the ``host`` of
    each when ``name_host`` and there are several); each host is checked again after."""
    for host in hosts:
        try:
            async for progress in ctx.managers[host].apull(name):
                data = {
                    "status": progress.status,
                    "digest": progress.digest,
                    "total": progress.total,
                    "completed": progress.completed,
                    "host": host if name_host and len(hosts) > 1 else None,
                }
                yield [
                    StreamItem("progress", data={k: v for k, v in data.items() if v is not None})
                ]
        finally:
            await ctx.router.recheck(host)


@router.post(
    "/models/pull",
    responses={
        200: {
            "description": "NDJSON progress lines; the last is `success` or an error.",
            "content": {"application/x-ndjson": {"schema": PullProgressOut.model_json_schema()}},
        },
        **{code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 422, 503)},
    },
    response_class=Response,
    openapi_extra=body_schema(PullRequest),
    summary="Pull a model (only with --allow-pull)",
)
async def pull_model(request: Request) -> Response:
    """Download a model from Ollama's registry, streaming progress as NDJSON.

    `host` names one of the server's Ollama hosts; without it the model is pulled on every
    Ollama host that is up, one after the other (each line then names its `host`).
    403 unless the server runs with `--allow-pull`, or when `--allow-model` patterns
    exclude the name. Only `[namespace/]model[:tag]` names: never another registry.
    """
    ctx = context_of(request)
    check_pull_allowed(ctx)
    body = await parse_request(request, PullRequest)
    ctx.gate.check_allowed(body.model)
    if body.host is not None:
        if body.host not in ctx.managers:
            raise ValidationFailedError(
                f"{body.host!r} is not one of this server's Ollama hosts",
                "hosts: " + ", ".join(ctx.managers),
            )
        hosts = [body.host]
    else:
        hosts = pull_hosts(ctx, body.model)
    return LiveStream(pull_progress(ctx, body.model, hosts, name_host=True), NDJSON())


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus' text format.", "content": {"text/plain": {}}},
        401: {"model": ErrorResponse},
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    """Requests and errors by route and host, in-flight requests and health per host, time
    to first token and tokens per answer (histograms), store batching. With API keys,
    scrape it with the key (Prometheus' `authorization` setting)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = context_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@health_router.get("/health", response_model=Health, summary="Server and host status")
async def health(request: Request) -> Any:
    """Always 200 while this server runs: each host's state (checked now, at most
    3 s), and for compatibility `ollama`, the first Ollama host. Needs no API key."""
    ctx = context_of(request)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(ctx.router.check_all(), timeout=HEALTH_TIMEOUT)
    hosts = ctx.router.status()
    first = next((h for h in hosts if h["url"] != "embedded"), None)
    ollama: dict[str, Any] = {"reachable": False, "url": ctx.ollama_url}
    if first is not None:
        ollama.update(
            reachable=first["up"],
            url=first["url"],
            version=first["version"] if first["up"] else None,
            error=None
            if first["up"]
            else (first["error"] or f"no answer within {HEALTH_TIMEOUT:g} s"),
        )
    return {"status": "ok", "ollama": ollama, "hosts": hosts}
