"""What the routes share: settings, the store, auth, the model gate and cached chains.

One :class:`ServerContext` lives on ``app.state.ctx``. It owns the blocking
things (the store, the ``ollama`` client) and offers async methods that run
them in worker threads, so no route blocks the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections import OrderedDict
from fnmatch import fnmatchcase
from typing import Any

from chains.backend import choose_backend
from chains.errors import ModelNotFoundError
from chains.gguf import EMBEDDED_DEFAULT_MODEL, list_embedded_models
from chains.manage import ModelDetails, ModelManager
from chains.settings import Settings, parse_ollama_host
from memory import ChatStore, open_store
from server.auth import Authenticator
from server.errors import ForbiddenError, session_not_found
from server.settings import ServerSettings

__all__ = ["ServerContext", "normalise_model"]

log = logging.getLogger("ollang.server")


def _embedded_models() -> list[ModelDetails]:
    return [
        ModelDetails(name=m.name, size=m.size, modified_at=m.modified_at, backend="embedded")
        for m in list_embedded_models()
    ]


def normalise_model(name: str) -> str:
    """Ollama's reading of a model name: no tag means ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class ServerContext:
    """Shared state of one app instance (see the module docstring)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        base = Settings.from_env()
        url = parse_ollama_host(settings.ollama_url) if settings.ollama_url else base.ollama_url
        self.chain_settings = dataclasses.replace(
            base, ollama_url=url, model=settings.default_model or base.model
        )
        self.ollama_url = url
        self.default_model = self.chain_settings.model
        self.auth = Authenticator(settings.key_values())
        self.store: ChatStore = open_store(settings.store_url)
        self.manager = ModelManager(url, settings=self.chain_settings)
        # Chosen once at start-up: Ollama when it answers, else the embedded backend.
        self.backend = choose_backend(
            settings.backend or None, base_url=url, settings=self.chain_settings
        )
        if self.backend.notice:
            log.warning("%s", self.backend.notice)
        if self.backend.name == "embedded" and not (
            settings.default_model or os.environ.get("OLLANG_MODEL")
        ):
            self.default_model = EMBEDDED_DEFAULT_MODEL
        self._installed: list[ModelDetails] | None = None
        self._installed_at = 0.0
        self._installed_lock = asyncio.Lock()
        self._chains: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    # -- models ---------------------------------------------------------------
    def allowed(self, name: str) -> bool:
        """Whether ``--allow-model`` patterns (if any) admit ``name``."""
        patterns = self.settings.allow_models
        if not patterns:
            return True
        full = normalise_model(name)
        return any(
            fnmatchcase(name, p) or fnmatchcase(full, p) or full == normalise_model(p)
            for p in patterns
        )

    async def installed(self) -> list[ModelDetails]:
        """Installed models, from Ollama at most every ``models_cache_seconds``.

        Concurrent callers share one request. Failures are not cached.
        """
        ttl = self.settings.models_cache_seconds
        if self._installed is not None and time.monotonic() - self._installed_at < ttl:
            return self._installed
        async with self._installed_lock:
            if self._installed is None or time.monotonic() - self._installed_at >= ttl:
                lister = self.manager.list if self.backend.name == "ollama" else _embedded_models
                self._installed = await asyncio.to_thread(lister)
                self._installed_at = time.monotonic()
            return self._installed

    def forget_installed(self) -> None:
        """Drop the cached model list (after a pull)."""
        self._installed = None

    async def usable_models(self) -> list[ModelDetails]:
        """Installed models that the allow patterns admit."""
        return [m for m in await self.installed() if self.allowed(m.name)]

    async def resolve_model(self, requested: str | None) -> str:
        """The installed model a request may use (never pulls one).

        Raises:
            ForbiddenError: ``--allow-model`` patterns exclude it (403).
            ModelNotFoundError: it is not installed (404, with the pull hint).
            OllamaUnavailableError: Ollama does not answer (503).
        """
        name = requested or self.default_model
        if not self.allowed(name):
            raise ForbiddenError(
                f"model {name!r} is not allowed on this server",
                "allowed: " + ", ".join(self.settings.allow_models),
            )
        wanted = normalise_model(name)
        installed = await self.installed()
        for model in installed:
            if normalise_model(model.name) == wanted:
                return model.name
        raise ModelNotFoundError(name, [m.name for m in installed if self.allowed(m.name)])

    def chain_for(self, model: str, options: dict[str, Any]) -> Any:
        """A chat chain for ``model`` with ``options``; chat models (and their HTTP
        clients) are kept in a small LRU cache, since building them is not free."""
        from chains import build_chat_chain, make_chat_model

        key = (model, json.dumps(options, sort_keys=True, default=str))
        chain = self._chains.get(key)
        if chain is not None:
            self._chains.move_to_end(key)
            return chain
        if self.backend.name == "embedded":
            from chains.embedded import make_embedded_chat_model

            chat_model = make_embedded_chat_model(model, **options)
        else:
            chat_model = make_chat_model(model, settings=self.chain_settings, **options)
        chain = build_chat_chain(chat_model, store=self.store)
        self._chains[key] = chain
        while len(self._chains) > self.settings.chain_cache_size:
            self._chains.popitem(last=False)
        return chain

    # -- sessions -------------------------------------------------------------
    async def claim(self, session_id: str, owner: str | None) -> None:
        """Make sure ``owner`` may write ``session_id`` (creating it as theirs if new).

        Raises:
            SessionNotFoundError: it belongs to another key (404, as if absent).
        """
        if owner is None:
            return
        if not await asyncio.to_thread(self.store.claim_session, session_id, owner):
            raise session_not_found(session_id)

    async def visible_session(self, session_id: str, owner: str | None) -> Any:
        """The session's info if it exists and ``owner`` may see it; else 404."""
        info = await asyncio.to_thread(self.store.get_session, session_id)
        if info is None or (owner is not None and info.owner != owner):
            raise session_not_found(session_id)
        return info
