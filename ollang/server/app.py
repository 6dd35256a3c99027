"""The application factory and ``serve``: wiring only, no logic."""

from __future__ import annotations

import gc
import inspect
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollang import __version__
from ollang.server.auth import request_owner
from ollang.server.body import BODY_MODELS, BodyLimit
from ollang.server.context import ServerContext
from ollang.server.errors import AddressInUseError, install_error_handler
from ollang.server.routes import chat as routes_chat
from ollang.server.routes import models as routes_models
from ollang.server.routes import sessions as routes_sessions
from ollang.server.security import HostOriginGuard, Policy
from ollang.server.settings import ServerSettings

__all__ = ["create_app", "serve"]

log = logging.getLogger("ollang.server")

STATIC_DIR = Path(str(resources.files("ollang.server") / "static"))

#: Only what the page itself needs: its own scripts, styles and API. Model output
#: is escaped by the page; this stops any script that got through anyway.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

DESCRIPTION = """\
Chat with local Ollama models, with durable sessions.

Bodies are JSON (read as JSON whatever the `Content-Type`, so `curl -d '{...}'` works);
errors are `{"error": ..., "hint": ...}`. With API keys configured, send
`Authorization: Bearer KEY` (every endpoint but `/health`).
"""


class PageHeaders:
    """ASGI middleware: security headers (CSP...) on the page and its assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        # Only the page: wrapping `send` costs a call per streamed token elsewhere.
        if not (path == "/" or path.startswith("/static/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", PAGE_CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _swagger_assets() -> Path | None:
    try:
        import swagger_ui_bundle  # packaged Swagger UI: /docs works offline, no CDN
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema, plus the models of bodies the routes read by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[name] = body
    app.openapi_schema = schema
    return schema


def freeze_startup_objects() -> None:
    """Keep what start-up built (modules, LangChain, pydantic schemas) out of the cyclic GC.

    The imported world is a few hundred thousand objects that live as long as the
    process; a full collection walks all of them, 100-120 ms on this project's machine,
    and every stream in flight waits (they showed as the p99 of the server benchmark).
    ``gc.freeze()`` (the standard remedy) moves them to a permanent generation, so
    collections walk only what requests made. Called once the serving process's app has
    started (``create_app(freeze_gc=True)``), never for an app embedded in someone else's
    process.
    """
    gc.collect()
    gc.freeze()


def create_app(settings: ServerSettings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """The ollang HTTP API and chat page as a FastAPI app.

    Args:
        settings: Configuration; default: :class:`ServerSettings` from the environment.
        freeze_gc: The process serves only this app: once started, move everything built
            so far out of the cyclic GC (:func:`freeze_startup_objects`).

    Opens the session store at once (``settings.store_url``) and closes it at shutdown.
    """
    settings = settings or ServerSettings()
    ctx = ServerContext(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.start()
        if freeze_gc:
            freeze_startup_objects()
        try:
            yield
        finally:
            await ctx.stop()
            ctx.close()

    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters and not settings.otel:
        # FastAPI's own OpenTelemetry (newer versions) looks its providers up on every
        # request, about 6% of a turn's CPU here; ollang has /metrics. On with --otel.
        extra["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        title="ollang",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        **extra,
    )
    app.state.ctx = ctx
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    install_error_handler(app)
    error_shapes = _install_routes(app)
    _install_docs(app, settings)
    _install_page(app)
    _install_middleware(app, settings, error_shapes)
    return app


def _install_routes(app: FastAPI) -> dict[str, Any]:
    """ollang's own routes and the OpenAI and Ollama dialects'; returns each dialect's
    error renderer by path prefix (its errors answer in its shape)."""
    from ollang.server.dialects import ollama as dialect_ollama
    from ollang.server.dialects import openai as dialect_openai
    from ollang.server.dialects.common import install_error_shapes
    from ollang.server.routes import admin as routes_admin
    from ollang.server.routes import compare as routes_compare
    from ollang.server.routes import ollama as routes_ollama
    from ollang.server.routes import ollama_manage as routes_ollama_manage
    from ollang.server.routes import openai as routes_openai

    for router in (
        routes_models.health_router,
        routes_chat.router,
        routes_models.router,
        routes_sessions.router,
        routes_compare.router,
        routes_openai.router,
        routes_ollama.router,
        routes_ollama_manage.router,
        routes_admin.router,
    ):
        app.include_router(router)
    error_shapes = {
        dialect_openai.ERROR_PREFIX: dialect_openai.error_response,
        dialect_ollama.ERROR_PREFIX: dialect_ollama.error_response,
    }
    install_error_shapes(app, error_shapes)
    return error_shapes


def _install_docs(app: FastAPI, settings: ServerSettings) -> None:
    """``/openapi.json`` and ``/docs`` (Swagger UI from the bundled copy when installed)."""
    docs_deps = [] if settings.public_docs else [Depends(request_owner)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_deps)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    assets = _swagger_assets()
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False, dependencies=docs_deps)
    async def docs() -> HTMLResponse:
        parameters = {"persistAuthorization": True}
        if assets is None:  # Swagger UI from its CDN (only without the bundled copy)
            return get_swagger_ui_html(
                openapi_url="/openapi.json", title="ollang API", swagger_ui_parameters=parameters
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="ollang API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
            swagger_ui_parameters=parameters,
        )


def _install_page(app: FastAPI) -> None:
    """``/``: the chat page for browsers, Ollama's own answer for every other client."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page(request: Request) -> Response:
        # Browsers get the chat page; every other client Ollama's own answer, which the
        # `ollama` CLI (HEAD / before each command) and health checks look for.
        if "text/html" in request.headers.get("accept", "").lower():
            return FileResponse(
                STATIC_DIR / "index.html",
                media_type="text/html; charset=utf-8",
                headers={"Vary": "Accept"},
            )
        return PlainTextResponse("Ollama is running", headers={"Vary": "Accept"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _install_middleware(
    app: FastAPI, settings: ServerSettings, error_shapes: dict[str, Any]
) -> None:
    """Outermost last: the Host and Origin checks see requests first, then the body limit."""
    app.add_middleware(PageHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept",
                "X-Session-Id",
                "X-Ollang-Host",
            ],
            # /chat/stream names its new session there; model management, the host it used
            expose_headers=["X-Session-Id", "X-Ollang-Host"],
        )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        image_bytes=settings.max_image_body_bytes,
        shapes=error_shapes,
    )
    # Issue 26: no web page of another site (nor DNS rebinding) drives the server.
    app.add_middleware(
        HostOriginGuard,
        policy=Policy.of(settings.host, settings.allowed_hosts, settings.cors_origins),
        shapes=error_shapes,
    )


def _check_address(host: str, port: int) -> None:
    """Fail with one clear line (exit 5) when the address is taken, before anything starts:
    uvicorn would log its own bind error and exit as if Ollama were the problem."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                raise AddressInUseError(host, port, err.strerror or str(err)) from err
            raise


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: Seconds an idle keep-alive connection stays open. uvicorn's default (5 s) equals
#: httpx's client-side expiry (5 s), so a client could send its next request on a
#: connection the server was closing that moment ("ReadError" after a minute of load in
#: the reliability suite). Longer than the usual client expiry, the race cannot happen.
KEEP_ALIVE_S = 30


def serve(settings: ServerSettings | None = None, *, workers: int = 1) -> None:
    """Run the server with uvicorn until interrupted (what ``ollang serve`` calls).

    Args:
        settings: Everything the server is told (default: :class:`ServerSettings` from
            the environment); ``ollang serve`` builds it from its options over the
            environment.
        workers: Processes serving one socket (they share the store). Each builds its app
            from these very settings, which travel inside uvicorn's ``Config``
            (:class:`~ollang.server.workers.ServeConfig`), not through the environment.
    """
    import uvicorn

    from ollang.server.logs import log_config

    settings = settings if settings is not None else ServerSettings()
    _check_address(settings.host, settings.port)
    if not _is_loopback(settings.host) and not settings.api_keys:
        log.warning(
            "listening on %s without --api-key: unless the store holds managed keys "
            "(ollang keys create), anyone who can reach it can use your models and read "
            "every session",
            settings.host,
        )
    given = [
        f"{len(keys)} {what}"
        for keys, what in ((settings.api_keys, "API key(s)"), (settings.admin_keys, "admin key(s)"))
        if keys
    ]
    auth = (", ".join(given) or "no API keys given") + "; managed keys from the store"
    if workers > 1:
        auth += f", {workers} worker processes"
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": settings.access_log,
        "log_config": log_config(),
        "log_level": "info",
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": 5,
    }
    if workers > 1:
        from ollang.server.workers import ServeConfig, run_workers

        config = ServeConfig(settings, workers=workers, **options)
        log.warning("ollang server on http://%s:%s (%s)", settings.host, settings.port, auth)
        run_workers(config)
        return
    # One process: the app is built here first, so a store that cannot open is reported
    # as an ollang error before anything listens.
    app = create_app(settings, freeze_gc=True)
    log.warning("ollang server on http://%s:%s (%s)", settings.host, settings.port, auth)
    uvicorn.run(app, **options)
