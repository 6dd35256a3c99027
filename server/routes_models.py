"""``/models``, ``/models/pull`` and ``/health``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ollang.server.auth import request_owner
from ollang.server.body import body_schema, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.errors import ForbiddenError
from ollang.server.schemas import ErrorResponse, Health, ModelList, PullProgressOut, PullRequest
from ollang.server.streaming import NDJSON, LiveStream, StreamItem

__all__ = ["health_router", "router"]

router = APIRouter(tags=["models"], dependencies=[Depends(request_owner)])
health_router = APIRouter(tags=["health"])

#: How long /health waits for Ollama's version before calling it unreachable.
HEALTH_TIMEOUT = 3.0


@router.get(
    "/models",
    response_model=ModelList,
    responses={code: {"model": ErrorResponse} for code in (401, 503)},
    summary="Installed models this server lets clients use",
)
async def list_models(request: Request) -> Any:
    """Installed models (filtered by `--allow-model` patterns): name, size, details."""
    models = await context_of(request).gate.usable()
    return {"models": [model.to_dict() for model in models]}


async def _pull_items(ctx: ServerContext, name: str) -> AsyncIterator[StreamItem]:
    try:
        async for progress in ctx.manager.apull(name):
            data = {
                "status": progress.status,
                "digest": progress.digest,
                "total": progress.total,
                "completed": progress.completed,
            }
            yield StreamItem("progress", data={k: v for k, v in data.items() if v is not None})
    finally:
        ctx.gate.forget()


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

    403 unless the server runs with `--allow-pull`, or when `--allow-model` patterns
    exclude the name. Only `[namespace/]model[:tag]` names: never another registry.
    """
    ctx = context_of(request)
    if not ctx.settings.allow_pull:
        raise ForbiddenError(
            "pulling models is disabled on this server",
            "start the server with --allow-pull, or run `ollama pull` on its machine",
        )
    body = await parse_request(request, PullRequest)
    ctx.gate.check_allowed(body.model)
    return LiveStream(_pull_items(ctx, body.model), NDJSON())


@health_router.get("/health", response_model=Health, summary="Server and Ollama status")
async def health(request: Request) -> Any:
    """Always 200 while this server runs; says whether Ollama answers, and its version.

    Needs no API key.
    """
    ctx = context_of(request)
    status: dict[str, Any] = {"reachable": False, "url": ctx.ollama_url}
    try:
        version = await asyncio.wait_for(
            asyncio.to_thread(ctx.manager.version), timeout=HEALTH_TIMEOUT
        )
    except asyncio.TimeoutError:
        status["error"] = f"no answer within {HEALTH_TIMEOUT:g} s"
    except Exception as err:  # any failure means "not reachable"; say which
        status["error"] = getattr(err, "message", None) or type(err).__name__
    else:
        status.update(reachable=True, version=version)
    return {"status": "ok", "ollama": status}
