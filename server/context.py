"""What the routes share, each job in its own small object.

One :class:`ServerContext` lives on ``app.state.ctx``. Routes go through its parts:

* :attr:`~ServerContext.gate` (:class:`~ollang.server.gate.ModelGate`): the allow-list
  and the installed models;
* :attr:`~ServerContext.chains` (:class:`~ollang.server.chain_cache.ChainCache`): chat
  chains per model and options;
* :attr:`~ServerContext.sessions` (:class:`~ollang.server.sessions.SessionAccess`):
  ownership, claims, reading and deleting sessions;
* :attr:`~ServerContext.auth` and :attr:`~ServerContext.manager` (model management).

No route reaches into the store by itself.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.language_models import BaseChatModel

from ollang.chains.backend import choose_backend
from ollang.chains.gguf import EMBEDDED_DEFAULT_MODEL, list_embedded_models
from ollang.chains.manage import ModelDetails, ModelManager
from ollang.memory import ChatStore, open_store
from ollang.server.auth import Authenticator
from ollang.server.chain_cache import ChainCache
from ollang.server.gate import ModelGate
from ollang.server.sessions import SessionAccess
from ollang.server.settings import ServerSettings
from ollang.settings import Settings, parse_ollama_host

__all__ = ["ServerContext", "context_of"]

log = logging.getLogger("ollang.server")


class ServerContext:
    """Shared state of one app instance (see the module docstring).

    Server settings that are ``None`` fall back to the environment's
    :class:`~ollang.settings.Settings` (``OLLAMA_HOST``, ``OLLANG_BACKEND``, ...).
    """

    def __init__(self, settings: ServerSettings, base: Settings | None = None) -> None:
        self.settings = settings
        base = base or Settings.from_env()
        url = parse_ollama_host(settings.ollama_url) if settings.ollama_url else base.ollama_url
        self.chain_settings = dataclasses.replace(
            base,
            ollama_url=url,
            model=settings.default_model or base.model,
            backend=settings.backend or base.backend,
        )
        self.ollama_url = url
        self.auth = Authenticator(settings.key_values())
        self.store: ChatStore = open_store(settings.store_url or base.store_url)
        self.manager = ModelManager(url, settings=self.chain_settings)
        # Chosen once at start-up: Ollama when it answers, else the embedded backend.
        self.backend = choose_backend(settings=self.chain_settings)
        if self.backend.notice:
            log.warning("%s", self.backend.notice)
        default_model = self.chain_settings.default_model
        if self.backend.name == "embedded" and self.chain_settings.model is None:
            default_model = EMBEDDED_DEFAULT_MODEL
        lister = self.manager.list if self.backend.name == "ollama" else self._embedded_models
        self.gate = ModelGate(
            settings.allow_models,
            lister,
            default_model=default_model,
            cache_seconds=settings.models_cache_seconds,
        )
        self.chains = ChainCache(self._make_model, self.store, settings.chain_cache_size)
        self.sessions = SessionAccess(self.store)

    @property
    def default_model(self) -> str:
        """The model used when a request names none."""
        return self.gate.default_model

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def _embedded_models(self) -> list[ModelDetails]:
        return [
            ModelDetails(name=m.name, size=m.size, modified_at=m.modified_at, backend="embedded")
            for m in list_embedded_models(self.chain_settings)
        ]

    def _make_model(self, model: str, options: Mapping[str, Any]) -> BaseChatModel:
        if self.backend.name == "embedded":
            from ollang.chains.embedded import make_embedded_chat_model

            return make_embedded_chat_model(model, settings=self.chain_settings, **options)
        from ollang.chains.models import make_chat_model

        return make_chat_model(model, settings=self.chain_settings, **options)


def context_of(request_or_app: Request | FastAPI) -> ServerContext:
    """The :class:`ServerContext` of an app, or of the app serving a request."""
    app = request_or_app if isinstance(request_or_app, FastAPI) else request_or_app.app
    ctx: ServerContext = app.state.ctx
    return ctx
