"""Model hosts: Ollama servers, OpenAI-compatible engines, and the embedded backend as a
host like the others.

A :class:`Host` knows what it runs (models installed, models loaded), whether it is up,
how many requests it has in flight, and answers a chat request with Ollama's own
``/api/chat`` stream lines, whichever kind of host it is (:attr:`Host.kind`: ``ollama``,
``openai`` — :class:`~ollang.routing.engines.OpenAIHost` — or ``embedded``) — so
everything above (the router, the server's turn engine, the OpenAI and Ollama dialects)
deals with one shape of answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ollang.errors import InvalidInputError, ModelNotFoundError
from ollang.settings import HostSpec, Settings
from ollang.transport.manage import ModelDetails, context_length, model_details, normalise_model

if TYPE_CHECKING:  # the async client is imported only by the server's path (the CLI's is sync)
    from langchain_core.messages import BaseMessage

    from ollang.transport.wire import OllamaWire

Line = dict[str, Any]

__all__ = ["EmbeddedHost", "Host", "HostState", "OllamaHost", "make_hosts"]


@dataclass
class HostState:
    """What the health checks (and failed requests) last learnt about a host.

    Attributes:
        up: ``True``/``False``; ``None`` until the first check.
        version: The server's version.
        models: Installed models, by normalised name.
        loaded: Normalised names of the models in memory now (``/api/ps``).
        error: Why it is down.
        checked_at: When it was last checked (monotonic seconds).
        failures: Checks failed in a row (the backoff grows with it).
        resting_until: A host that answered 429 is left alone until then (monotonic
            seconds; its ``Retry-After``): its checks do not bring it back sooner.
    """

    up: bool | None = None
    version: str | None = None
    models: dict[str, ModelDetails] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)
    error: str | None = None
    checked_at: float = 0.0
    failures: int = 0
    resting_until: float = 0.0


class Host(ABC):
    """A place models run. Subclasses: :class:`OllamaHost`, :class:`EmbeddedHost`,
    :class:`~ollang.routing.engines.OpenAIHost`."""

    #: Whether the request tells the host the context window (Ollama's ``num_ctx``): an
    #: OpenAI-compatible engine runs its own, fixed when it started.
    sizes_window = True

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.state = HostState()
        self.in_flight = 0
        self._context: dict[str, int | None] = {}

    @property
    def name(self) -> str:
        """The host's URL, or ``embedded``."""
        return self.spec.url

    @property
    def is_embedded(self) -> bool:
        """Whether this is the in-process backend."""
        return self.spec.is_embedded

    @property
    def kind(self) -> str:
        """``ollama``, ``openai`` or ``embedded``: which API the host speaks."""
        return self.spec.kind

    @property
    def resting(self) -> bool:
        """Whether the host asked to be left alone for now (a 429's ``Retry-After``)."""
        return time.monotonic() < self.state.resting_until

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, up={self.state.up})"

    @property
    def full(self) -> bool:
        """Whether the host is at its ``max`` concurrent requests."""
        most = self.spec.max_concurrent
        return most is not None and self.in_flight >= most

    def has(self, model: str) -> bool:
        """Whether ``model`` is installed here (as last checked)."""
        return normalise_model(model) in self.state.models

    def installed_name(self, model: str) -> str:
        """The name the host has ``model`` under (``llama3`` → ``llama3:latest``)."""
        details = self.state.models.get(normalise_model(model))
        return details.name if details is not None else model

    def loaded(self, model: str) -> bool:
        """Whether ``model`` is in the host's memory now (a cold load costs seconds)."""
        return normalise_model(model) in self.state.loaded

    def mark_down(self, error: str) -> None:
        """Record a failure seen by a request: down at once, checked again soon."""
        self.state.up = False
        self.state.error = error
        self.state.failures = max(self.state.failures, 1)

    def rest(self, seconds: float) -> None:
        """The host asked for a pause (a 429's ``Retry-After``): its checks leave it down
        until then, so no request goes there sooner."""
        self.state.resting_until = max(self.state.resting_until, time.monotonic() + seconds)

    def forget_model(self, model: str) -> None:
        """The host said it lacks ``model`` (its list was stale)."""
        self.state.models.pop(normalise_model(model), None)

    def status(self) -> dict[str, Any]:
        """The host as ``/health`` and ``/metrics`` show it."""
        return {
            "url": self.name,
            "kind": self.kind,
            "up": bool(self.state.up),
            "checked": self.state.up is not None,
            "version": self.state.version,
            "error": None if self.state.up else self.state.error,
            "models": sorted(d.name for d in self.state.models.values()),
            "loaded": sorted(self.state.loaded),
            "in_flight": self.in_flight,
            "priority": self.spec.priority,
            "weight": self.spec.weight,
            "max_concurrent": self.spec.max_concurrent,
        }

    @abstractmethod
    async def probe(self) -> None:
        """Check the host now and update :attr:`state` (never raises)."""

    @abstractmethod
    def probe_sync(self) -> None:
        """:meth:`probe` for synchronous callers (the CLI), without an event loop."""

    def _checked(
        self, version: Mapping[str, Any], tags: Mapping[str, Any], ps: Mapping[str, Any]
    ) -> None:
        state = self.state
        state.up, state.error, state.failures = True, None, 0
        state.version = str(version.get("version", "unknown"))
        state.models = {
            normalise_model(d.name): d
            for d in (model_details(entry) for entry in tags.get("models") or [])
            if d.name
        }
        state.loaded = {
            normalise_model(str(m.get("model") or m.get("name") or ""))
            for m in ps.get("models") or []
        }
        state.checked_at = time.monotonic()

    def _unreachable(self, err: BaseException) -> None:
        state = self.state
        state.up = False
        state.error = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
        state.failures += 1
        state.checked_at = time.monotonic()

    @abstractmethod
    def chat(self, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """Stream an ``/api/chat`` request as batches of Ollama stream lines.

        Raises:
            OllangError: the host cannot answer (before or during the stream).
        """

    @abstractmethod
    async def fetch_context_length(self, model: str) -> int | None:
        """The model's trained context length, from the host (uncached)."""

    async def context_length(self, model: str) -> int | None:
        """The model's context length, cached per host and model."""
        key = normalise_model(model)
        if key not in self._context:
            self._context[key] = await self.fetch_context_length(model)
        return self._context[key]

    async def close(self) -> None:  # noqa: B027 - only hosts with connections need it
        """Release connections."""


class OllamaHost(Host):
    """An Ollama server, reached through ollang's clients: the async
    :class:`~ollang.transport.wire.OllamaWire` (requests, probes), the sync
    :class:`~ollang.transport.client.OllamaClient` (:meth:`probe_sync`)."""

    def __init__(self, spec: HostSpec, settings: Settings) -> None:
        super().__init__(spec)
        self.settings = settings
        self.check_timeout = min(settings.connect_timeout, 2.0)
        self._wire: OllamaWire | None = None

    @property
    def wire(self) -> OllamaWire:
        """The host's async client, a keep-alive pool (made on first use)."""
        if self._wire is None:
            from ollang.transport.wire import OllamaWire

            self._wire = OllamaWire(
                self.spec.url,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
            )
        return self._wire

    async def probe(self) -> None:
        """``/api/version``, then ``/api/tags`` and ``/api/ps``."""
        if self.resting:
            return
        try:
            version = await self.wire.get_json("/api/version", timeout=self.check_timeout)
            tags, ps = await asyncio.gather(
                self.wire.get_json("/api/tags", timeout=self.check_timeout),
                self.wire.get_json("/api/ps", timeout=self.check_timeout),
            )
        except Exception as err:  # any failure means "down"; say which
            self._unreachable(err)
        else:
            self._checked(version, tags, ps)

    def probe_sync(self) -> None:
        """The same checks over the sync client (the CLI's, with no event loop)."""
        from ollang.transport.client import OllamaClient

        try:
            with OllamaClient(
                self.spec.url,
                connect_timeout=self.check_timeout,
                read_timeout=self.check_timeout,
            ) as client:
                answers = [
                    client.get_json(path, timeout=self.check_timeout)
                    for path in ("/api/version", "/api/tags", "/api/ps")
                ]
        except Exception as err:  # any failure means "down"; say which
            self._unreachable(err)
        else:
            self._checked(*answers)

    def chat(self, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """Stream ``POST /api/chat``."""
        return self.wire.stream("/api/chat", body)

    async def fetch_context_length(self, model: str) -> int | None:
        """``<architecture>.context_length`` from ``/api/show``."""
        return context_length(await self.wire.post_json("/api/show", {"model": model}))

    async def close(self) -> None:
        """Close the connection pool of the running loop."""
        if self._wire is not None:
            await self._wire.close()


class EmbeddedHost(Host):
    """The in-process llama.cpp backend as a host: its models are routable like any other.

    It answers in Ollama's stream lines, made from the LangChain model's chunks.
    """

    def __init__(self, spec: HostSpec, settings: Settings) -> None:
        super().__init__(spec)
        self.settings = settings
        self._models: dict[str, Any] = {}

    async def probe(self) -> None:
        """The models it can run without downloading anything (bundled, GGUF, Ollama's store)."""
        await asyncio.to_thread(self.probe_sync)

    def probe_sync(self) -> None:
        """:meth:`probe`, in this thread."""
        from ollang.embedded.gguf import embedded_available, list_embedded_models

        state = self.state
        if not embedded_available():
            state.up, state.error = False, 'not installed (pip install "ollang[embedded]")'
        else:
            found = list_embedded_models(self.settings)
            state.up, state.error, state.version = True, None, "llama.cpp"
            state.models = {
                normalise_model(m.name): ModelDetails(
                    name=m.name, size=m.size, modified_at=m.modified_at, backend="embedded"
                )
                for m in found
            }
        state.checked_at = time.monotonic()

    def has(self, model: str) -> bool:
        """Listed models, and any path to a ``.gguf`` file."""
        if super().has(model):
            return True
        return bool(self.state.up) and model.endswith(".gguf") and _is_file(model)

    def _model(self, name: str, options: Mapping[str, Any]) -> Any:
        from ollang.embedded.model import make_embedded_chat_model

        key = json.dumps([name, options], sort_keys=True, default=str)
        model = self._models.get(key)
        if model is None:
            model = make_embedded_chat_model(name, settings=self.settings, **dict(options))
            self._models[key] = model
        return model

    async def chat(self, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """Run the request on llama.cpp (in a worker thread), as Ollama stream lines."""
        name = str(body.get("model", ""))
        options = dict(body.get("options") or {})
        if body.get("format") is not None:
            options["format"] = body["format"]
        try:
            model = self._model(name, options)
        except ModelNotFoundError:
            raise
        if body.get("tools"):
            raise InvalidInputError(
                f"the embedded model {name} cannot choose among tools",
                "use a tool-calling model on an Ollama host (llama-cpp-python's handler can "
                "only force one named tool, which Ollama's API has no way to ask for)",
            )
        from ollang.transport.translate import to_ollama_line

        messages = [_from_wire(m, name) for m in body.get("messages") or []]
        stream = model.astream(messages)
        try:
            async for chunk in stream:
                yield [to_ollama_line(chunk, name)]
        finally:
            await stream.aclose()

    async def fetch_context_length(self, model: str) -> int | None:
        """The GGUF's own context length, capped as the embedded backend runs it."""
        chat_model = await asyncio.to_thread(self._model, model, {})
        length: int | None = await chat_model.aget_context_length()
        # Here, not at the top: ollang.turns.context loads LangChain (a second of every
        # `ollang list`), and only the embedded backend needs the cap.
        from ollang.turns.context import MAX_AUTO_CONTEXT

        return min(length, MAX_AUTO_CONTEXT) if length else None


def _from_wire(m: Mapping[str, Any], model: str) -> BaseMessage:
    """One of Ollama's wire messages as the LangChain message the embedded model takes."""
    from ollang.transport.translate import from_ollama

    if m.get("images"):
        raise InvalidInputError(
            f"the embedded model {model} takes no images", "use a vision model on an Ollama host"
        )
    return from_ollama(m)


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_file()


def make_hosts(settings: Settings, backend: str | None = None) -> list[Host]:
    """The hosts for ``backend`` (default ``settings.backend``): ``ollama`` the configured
    servers; ``embedded`` the embedded backend alone; ``auto`` both, the embedded backend
    last (in a tier of its own) unless the configuration lists it itself.

    Under ``auto`` the embedded backend is a host only when llama-cpp-python is installed
    (the ``embedded`` extra): one that is not would be a host that is always down, and a
    model merely not pulled would look like "no host reachable". Asked for alone
    (``embedded``), it stays, so the error says how to install it.

    The configured OpenAI-compatible engines (``openai+`` entries) come with the Ollama
    hosts: the backend names where models run (remote hosts, or in-process).
    """
    from ollang.routing.engines import OpenAIHost

    name = (backend or settings.backend).lower()
    hosts: list[Host] = []
    if name in ("auto", "ollama"):
        hosts += [
            OpenAIHost(spec, settings) if spec.kind == "openai" else OllamaHost(spec, settings)
            for spec in settings.remote_hosts
        ]
    if name == "embedded":
        hosts.append(EmbeddedHost(HostSpec("embedded"), settings))
    elif name == "auto" and _embedded_installed():
        listed = next((spec for spec in settings.hosts if spec.is_embedded), None)
        lowest = max((h.spec.priority for h in hosts), default=-1) + 1
        hosts.append(EmbeddedHost(listed or HostSpec("embedded", priority=lowest), settings))
    return hosts


def _embedded_installed() -> bool:
    from ollang.embedded.gguf import embedded_available

    return embedded_available()
