"""What the routes share, each job in its own small object.

One :class:`ServerContext` lives on ``app.state.ctx``. Routes go through its parts:

* :attr:`~ServerContext.gate` (:class:`~ollang.server.gate.ModelGate`): the allow-list
  and which models the hosts have;
* :attr:`~ServerContext.engine` (:class:`~ollang.server.turns.TurnEngine`): every model
  request, over :attr:`~ServerContext.router` (the hosts) and the store writer;
* :attr:`~ServerContext.sessions` (:class:`~ollang.server.sessions.SessionAccess`):
  ownership, claims, reading and deleting sessions;
* :attr:`~ServerContext.auth`, :attr:`~ServerContext.metrics`, and
  :attr:`~ServerContext.managers` (model management per Ollama host).

No route reaches into the store by itself.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request

from ollang.memory import ChatStore, open_store
from ollang.routing.queueing import WaitingRoom
from ollang.routing.router import Router
from ollang.server.auth import Authenticator
from ollang.server.gate import ModelGate
from ollang.server.limits import Limiter
from ollang.server.metrics import Metrics
from ollang.server.prefix_routing import PrefixRouting
from ollang.server.sessions import SessionAccess
from ollang.server.settings import ServerSettings
from ollang.server.turns import TurnEngine
from ollang.server.usage import UsageMeter
from ollang.server.writer import StoreWriter
from ollang.transport.manage import ModelManager

__all__ = ["ServerContext", "context_of"]

log = logging.getLogger("ollang.server")


class ServerContext:
    """Shared state of one app instance (see the module docstring).

    Built from one :class:`ServerSettings`: the routes read its server fields
    (``ctx.settings.max_message_chars``...), and everything about models and storage
    comes from its core settings, ``settings.core`` (hosts, backend, default model,
    store, timeouts). Call :meth:`start` on the app's event loop (the lifespan does)
    before serving.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        core = settings.core
        self.store: ChatStore = open_store(core.store_url, settings=core)
        self.auth = Authenticator(
            settings.key_values(), settings.admin_key_values(), store=self.store
        )
        self.router = Router.from_settings(core)
        self.router.queue = WaitingRoom(
            settings.queue_policy,
            max_queue=settings.max_queue,
            max_queue_per_key=settings.max_queue_per_key,
        )
        self.managers = {
            h.name: ModelManager(h.name, settings=core)
            for h in self.router.hosts
            if h.kind == "ollama"  # engines of the openai kind have no model management
        }
        self.gate = ModelGate(settings.allow_models, self.router, default_model=core.model)
        self.writer = StoreWriter(self.store)
        self.metrics = Metrics(self.router, self.writer)
        self.limits = Limiter(self.writer)
        self.usage = UsageMeter(self.store, self.writer, self.metrics.registry)
        prefix = PrefixRouting(self.store, self.writer) if settings.prefix_routing else None
        self.engine = TurnEngine(
            self.router,
            self.store,
            self.writer,
            self.metrics,
            prefix=prefix,
            usage=self.usage,
            limits=self.limits,
        )
        self.sessions = SessionAccess(self.store)

    @property
    def ollama_url(self) -> str:
        """The first Ollama host's base URL."""
        return self.settings.core.ollama_url

    @property
    def manager(self) -> ModelManager:
        """Model management on the first Ollama host."""
        return (
            next(iter(self.managers.values()))
            if self.managers
            else ModelManager(self.ollama_url, settings=self.settings.core)
        )

    async def start(self) -> None:
        """Check the hosts once (the server starts even when every host is down), then
        keep checking them in the background."""
        await self.router.start()
        self.auth.start()
        self.usage.start()
        down = [h.name for h in self.router.hosts if not h.state.up]
        if down:
            log.warning("not reachable now (checked again every few seconds): %s", ", ".join(down))

    async def stop(self) -> None:
        """Stop the checks and close upstream connections."""
        await self.auth.stop()
        await self.usage.stop()
        await self.router.stop()

    def close(self) -> None:
        """Finish queued store writes, then release the store."""
        self.writer.close()
        self.store.close()


def context_of(request_or_app: Request | FastAPI) -> ServerContext:
    """The :class:`ServerContext` of an app, or of the app serving a request."""
    app = request_or_app if isinstance(request_or_app, FastAPI) else request_or_app.app
    ctx: ServerContext = app.state.ctx
    return ctx
