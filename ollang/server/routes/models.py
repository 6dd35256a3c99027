"""``/models``, ``/models/{name}/fit``, ``/models/pull`` and ``/health``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ollang.catalog.facts import ModelFacts
from ollang.catalog.fit import Machine
from ollang.errors import NotSupportedError
from ollang.routing.router import NoHostError, model_not_found
from ollang.server.auth import request_owner
from ollang.server.body import body_schema, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.errors import ForbiddenError, ValidationFailedError
from ollang.server.facts import FitUnknownError, facts_of, fit_json
from ollang.server.schemas import (
    MODEL_NAME_PATTERN,
    ErrorResponse,
    Health,
    ModelInfo,
    ModelList,
    PullProgressOut,
    PullRequest,
)
from ollang.server.streaming import NDJSON, LiveStream, StreamItem
from ollang.transport.manage import ModelDetails, normalise_model

__all__ = [
    "FitOut",
    "ModelListWithFacts",
    "ModelWithFacts",
    "check_pull_allowed",
    "health_router",
    "pull_hosts",
    "pull_progress",
    "router",
    "unsupported",
    "usable_model",
    "usable_models",
]

router = APIRouter(tags=["models"], dependencies=[Depends(request_owner)])
health_router = APIRouter(tags=["health"])

#: How long /health waits for Ollama's version before calling it unreachable.
HEALTH_TIMEOUT = 3.0


#: The largest context a fit may be asked for (as ``options.num_ctx``).
MAX_FIT_CTX = 1_048_576


class FitOut(BaseModel):
    """Where a model would run on the server's machine at one context size (an estimate
    of llama.cpp's allocations, placed as Ollama's scheduler places them)."""

    model: str
    ctx: int = Field(..., description="The context the fit is for, in tokens.")
    kv_cache_type: str = Field(..., description="f16, q8_0 or q4_0.")
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int = Field(..., description="llama.cpp's compute (graph) buffer.")
    total_bytes: int = Field(..., description="The three together.")
    gpu_bytes: int = Field(..., description="What lands in VRAM.")
    cpu_bytes: int = Field(..., description="What lands in RAM.")
    gpu_percent: int
    runs_on: Literal["gpu", "split", "cpu", "none"]
    max_ctx: int = Field(..., description="The largest context that runs (0: none does).")
    processor: str = Field(..., description="As `ollama ps` prints it: `100% GPU`, ...")
    warning: str | None = Field(
        None, description="Set when the asked context was above the trained one (clamped)."
    )


class ModelWithFacts(ModelInfo):
    """A listed model with what it can do and where it would run (``null``: unknown)."""

    capabilities: list[str] = Field(
        default_factory=list, description="Ollama's: completion, tools, vision, thinking..."
    )
    parameter_count: int | None = None
    context_length: int | None = Field(None, description="The trained context, in tokens.")
    quantization: str | None = Field(None, description="Q4_0, Q4_K_M, F16...")
    fit: FitOut | None = Field(
        None, description="At the model's default context on the server's machine."
    )


class ModelListWithFacts(ModelList):
    """``GET /models``."""

    models: list[ModelWithFacts]  # type: ignore[assignment]  # narrower: ModelInfo with facts


def usable_models(ctx: ServerContext) -> list[tuple[ModelDetails, list[str]]]:
    """The models clients may use, over every host that is up, with the hosts that have
    each (503 when no host is up)."""
    if not any(h.state.up for h in ctx.router.hosts):
        raise NoHostError(None, ctx.router.hosts)
    return ctx.gate.usable()


def usable_model(ctx: ServerContext, name: str) -> tuple[ModelDetails, list[str]]:
    """One model clients may use, with the hosts that have it.

    Raises:
        ModelNotFoundError: no host has it, or the allow patterns exclude it (the same
            404, naming the allowed models: a client learns nothing of the others).
        NoHostError: no host is up, or one that is down was last seen with it (503).
    """
    if not ctx.gate.allowed(name):
        raise model_not_found(name, [d.name for d, _ in ctx.gate.usable()])
    ctx.router.check_model(name, allowed=ctx.gate.allowed)
    wanted = normalise_model(ctx.router.installed_name(name))
    for details, hosts in usable_models(ctx):
        if normalise_model(details.name) == wanted:
            return details, hosts
    raise model_not_found(name, [d.name for d, _ in ctx.gate.usable()])  # removed meanwhile


def _with_facts(
    details: ModelDetails, hosts: list[str], facts: ModelFacts | None, machine: Machine
) -> dict[str, Any]:
    """One entry of ``GET /models``: the listing, then the facts and the default fit."""
    entry: dict[str, Any] = {**details.to_dict(), "hosts": hosts}
    if facts is None:  # an engine's model (openai kind): what it listed, its window
        return {
            **entry,
            "quantization": details.quantization_level,
            "context_length": details.context_length,
            "fit": None,
        }
    fit = facts.fit(machine)
    if entry["details"]["context_length"] is None:
        entry["details"]["context_length"] = facts.context_length
    return {
        **entry,
        "capabilities": list(facts.capabilities),
        "parameter_count": facts.parameter_count,
        "context_length": facts.context_length,
        "quantization": facts.quantization,
        "fit": fit_json(fit) if fit is not None else None,
    }


@router.get(
    "/models",
    response_model=ModelListWithFacts,
    responses={code: {"model": ErrorResponse} for code in (401, 503)},
    summary="Installed models this server lets clients use, over every host",
)
async def list_models(request: Request) -> Any:
    """Models on the hosts that are up (filtered by `--allow-model` patterns): name, size,
    details, and `hosts`, the hosts that have each; `capabilities`, `parameter_count`,
    `context_length`, `quantization`, and `fit`: where it would run on the server's
    machine at its default context (`null` when its header does not tell). Each model's
    `/api/show` is asked once per digest. 503 when no host is up."""
    ctx = context_of(request)
    models = usable_models(ctx)
    facts = facts_of(request)
    found, machine = await asyncio.gather(facts.of(models), facts.machine())
    return {
        "models": [_with_facts(d, hosts, found.get(d.name), machine) for d, hosts in models],
        "default_model": ctx.router.installed_name(ctx.gate.default_model),
    }


@router.get(
    "/models/{name:path}/fit",
    response_model=FitOut,
    responses={code: {"model": ErrorResponse} for code in (401, 404, 422, 503)},
    summary="Where a model would run on the server's machine, at a context size",
)
async def model_fit(
    request: Request,
    name: Annotated[
        str,
        Path(
            pattern=MODEL_NAME_PATTERN,
            max_length=200,
            description="An installed model: `llama3:8b`, `hf.co/user/repo:Q4_K_M`.",
        ),
    ],
    ctx: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_FIT_CTX,
            description="Context size in tokens; default: Ollama's (4096, or the trained "
            "context when smaller). Above the trained context it is clamped to it.",
        ),
    ] = None,
    kv_cache: Annotated[
        Literal["f16", "q8_0", "q4_0"],
        Query(description="The KV cache type (Ollama's `OLLAMA_KV_CACHE_TYPE`)."),
    ] = "f16",
) -> Any:
    """The memory the model needs at `ctx` tokens (weights, KV cache, compute buffer) and
    where it would go on the server's machine (GPUs, RAM), with the largest context that
    runs. An estimate. 404 for a model that is not installed or not allowed; 422 for a
    bad `ctx` or `kv_cache`, or a model whose header does not tell."""
    server = context_of(request)
    details, hosts = usable_model(server, name)
    facts = facts_of(request)
    found, machine = await asyncio.gather(facts.of([(details, hosts)]), facts.machine())
    model = found.get(details.name)
    fit = model.fit(machine, ctx, kv_cache) if model is not None else None
    if fit is None:
        raise FitUnknownError(details.name)
    return fit_json(fit)


def check_pull_allowed(ctx: ServerContext) -> None:
    """403 unless the server runs with ``--allow-pull``."""
    if not ctx.settings.allow_pull:
        raise ForbiddenError(
            "pulling models is disabled on this server",
            "start the server with --allow-pull, or run `ollama pull` on its machine",
        )


def unsupported(ctx: ServerContext, what: str, host: str | None = None) -> None:
    """Raise :class:`NotSupportedError` (400) when ``what`` (a verb only Ollama has: pull,
    delete, copy, create, push) is asked of a host of another kind: the one named
    ``host``, or — named none — the server's hosts, when none of them is Ollama."""
    remote = [h for h in ctx.router.hosts if not h.is_embedded]
    if host is not None:
        named = next((h for h in remote if host in (h.name, h.spec.address)), None)
        if named is not None and named.kind != "ollama":
            raise NotSupportedError(what, named.name, named.kind)
    elif remote and all(h.kind != "ollama" for h in remote):
        raise NotSupportedError(what, remote[0].name, remote[0].kind)


def pull_hosts(ctx: ServerContext, name: str) -> list[str]:
    """The Ollama hosts that are up, where a pull of ``name`` goes (503 if none is; 400
    when the server has only hosts of other kinds)."""
    unsupported(ctx, "pulling models")
    hosts = [h.name for h in ctx.router.hosts if h.state.up and h.kind == "ollama"]
    if not hosts:
        raise NoHostError(name, [h for h in ctx.router.hosts if h.kind == "ollama"])
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
        unsupported(ctx, "pulling models", body.host)
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
    first = next((h for h in hosts if h["kind"] == "ollama"), None)
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
