"""OpenAI-compatible engines as hosts: vLLM, SGLang, llama.cpp's server, LM Studio, TGI.

An ``openai+http://host:port/v1`` entry (:class:`~ollang.settings.HostSpec` of kind
``openai``) is an :class:`OpenAIHost`: routed, health-checked, leased and failed over
like an Ollama host, its answers in Ollama's stream lines
(:class:`~ollang.transport.openai_wire.OpenAIWire`), so the server's turn engine and
every dialect run on it unchanged.

What differs is what such an engine can say about itself. Its health and models come
from ``GET /models``; an answer of another shape marks it down with the reason (shown
in ``/health``). Every model it lists is loaded (an engine serves what it loaded when
it started), and its context window is the ``max_model_len`` it reports (vLLM, SGLang),
else the host's ``ctx=`` setting, else unknown (the turn engine's default). It does
not take the window per request (:attr:`~ollang.routing.hosts.Host.sizes_window`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from ollang.errors import HostBusyError
from ollang.routing.hosts import Host, Line
from ollang.settings import HostSpec, Settings
from ollang.transport.manage import ModelDetails, normalise_model

if TYPE_CHECKING:
    from ollang.transport.openai_translate import EngineModel
    from ollang.transport.openai_wire import OpenAIWire

__all__ = ["OpenAIHost"]


class OpenAIHost(Host):
    """An OpenAI-compatible engine (see the module docstring).

    Args:
        spec: Its entry: the base URL (with its ``/v1``), ``key=``, ``ctx=``...
        settings: The timeouts.
    """

    sizes_window = False

    def __init__(self, spec: HostSpec, settings: Settings) -> None:
        super().__init__(spec)
        self.settings = settings
        self.check_timeout = min(settings.connect_timeout, 2.0)
        self._wire: OpenAIWire | None = None

    @property
    def wire(self) -> OpenAIWire:
        """The host's client, a keep-alive pool (made on first use)."""
        if self._wire is None:
            from ollang.transport.openai_wire import OpenAIWire

            self._wire = OpenAIWire(
                self.spec.url,
                key=self.spec.key,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
            )
        return self._wire

    def _listed(self, models: list[EngineModel]) -> None:
        """What ``GET /models`` said: up, these models, all of them loaded."""
        state = self.state
        state.up, state.error, state.failures = True, None, 0
        state.version = None
        state.models = {
            normalise_model(m.id): ModelDetails(
                name=m.id,
                size=0,
                backend="openai",
                context_length=m.context or self.spec.context,
            )
            for m in models
        }
        state.loaded = set(state.models)
        state.checked_at = time.monotonic()

    async def probe(self) -> None:
        """``GET /models`` (left alone while it rests after a 429, and while it streams
        answers: it is up, and llama-cpp-python's server cuts a stream when another
        request arrives, unless it runs with ``--interrupt_requests False``)."""
        if self.resting or (self.in_flight and self.state.up):
            return
        try:
            models = await self.wire.models(timeout=self.check_timeout)
        except Exception as err:  # any failure means "down"; say which
            self._unreachable(err)
        else:
            self._listed(models)

    def probe_sync(self) -> None:
        """:meth:`probe` over a synchronous client (the CLI's, with no event loop)."""
        from ollang.transport.openai_client import fetch_models

        try:
            models = fetch_models(self.spec.url, self.spec.key, timeout=self.check_timeout)
        except Exception as err:  # any failure means "down"; say which
            self._unreachable(err)
        else:
            self._listed(models)

    async def chat(self, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """``POST /chat/completions``, answered in Ollama's stream lines. A 429 with a
        ``Retry-After`` rests the host that long (the router has marked it down)."""
        stream = self.wire.chat(body)
        try:
            async for lines in stream:
                yield lines
        except HostBusyError as err:
            if err.retry_after:
                self.rest(err.retry_after)
            raise
        finally:
            await stream.aclose()

    async def fetch_context_length(self, model: str) -> int | None:
        """The context the engine reported for ``model`` (``max_model_len``), else the
        host's ``ctx=``, else ``None``."""
        details = self.state.models.get(normalise_model(model))
        if details is not None and details.context_length:
            return details.context_length
        return self.spec.context

    async def context_length(self, model: str) -> int | None:
        """As :meth:`fetch_context_length`: known from the last check, nothing to cache."""
        return await self.fetch_context_length(model)

    def status(self) -> dict[str, Any]:
        """The host as ``/health`` shows it (its key never: :attr:`HostSpec.url` has none)."""
        return {**super().status(), "context": self.spec.context}

    async def close(self) -> None:
        """Close the connection pool of the running loop."""
        if self._wire is not None:
            await self._wire.close()
