"""The model gate: which models a request may use (the allow-list and the installed models)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase

from ollang.chains.errors import ModelNotFoundError
from ollang.chains.manage import ModelDetails, normalise_model
from ollang.server.errors import ForbiddenError

__all__ = ["ModelGate"]


class ModelGate:
    """Answers "may this request use that model, and what is it called there?".

    Args:
        patterns: ``--allow-model`` fnmatch patterns; none admits every installed model.
        lister: Lists the installed models (blocking; run in a worker thread).
        default_model: The model used when a request names none.
        cache_seconds: How long a model list is reused (concurrent callers share one
            request; failures are not cached).
    """

    def __init__(
        self,
        patterns: Sequence[str],
        lister: Callable[[], list[ModelDetails]],
        *,
        default_model: str,
        cache_seconds: float = 5.0,
    ) -> None:
        self.patterns = list(patterns)
        self.default_model = default_model
        self._lister = lister
        self._ttl = cache_seconds
        self._installed: list[ModelDetails] | None = None
        self._installed_at = 0.0
        self._lock = asyncio.Lock()

    def allowed(self, name: str) -> bool:
        """Whether the allow patterns (if any) admit ``name``."""
        if not self.patterns:
            return True
        full = normalise_model(name)
        return any(
            fnmatchcase(name, p) or fnmatchcase(full, p) or full == normalise_model(p)
            for p in self.patterns
        )

    def check_allowed(self, name: str) -> None:
        """Raise :class:`ForbiddenError` (403) unless ``name`` is allowed."""
        if not self.allowed(name):
            raise ForbiddenError(
                f"model {name!r} is not allowed on this server",
                "allowed: " + ", ".join(self.patterns),
            )

    def _fresh(self) -> bool:
        return self._installed is not None and time.monotonic() - self._installed_at < self._ttl

    async def installed(self) -> list[ModelDetails]:
        """Installed models, listed at most every ``cache_seconds``."""
        if self._fresh():
            assert self._installed is not None
            return self._installed
        async with self._lock:
            if not self._fresh():
                self._installed = await asyncio.to_thread(self._lister)
                self._installed_at = time.monotonic()
            assert self._installed is not None
            return self._installed

    def forget(self) -> None:
        """Drop the cached list (after a pull)."""
        self._installed = None

    async def usable(self) -> list[ModelDetails]:
        """Installed models that the allow patterns admit."""
        return [m for m in await self.installed() if self.allowed(m.name)]

    async def resolve(self, requested: str | None) -> str:
        """The installed model a request may use, as it is installed (never pulls one).

        Raises:
            ForbiddenError: the allow patterns exclude it (403).
            ModelNotFoundError: it is not installed (404, with the pull hint).
            OllamaUnavailableError: Ollama does not answer (503).
        """
        name = requested or self.default_model
        self.check_allowed(name)
        wanted = normalise_model(name)
        installed = await self.installed()
        for model in installed:
            if normalise_model(model.name) == wanted:
                return model.name
        raise ModelNotFoundError(name, [m.name for m in installed if self.allowed(m.name)])
