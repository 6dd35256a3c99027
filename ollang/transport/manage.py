"""Model management: list, pull, show, rm, ps, stop, copy — over ollang's clients.

The CLI and the HTTP server both call these. The synchronous calls go through
:class:`~ollang.transport.client.OllamaClient` (the official client's httpx client), an
async pull through :class:`~ollang.transport.wire.OllamaWire`; both raise ollang's errors
(:mod:`ollang.transport.errors`), in-stream errors of a pull included. Ollama's JSON
for a model (``/api/tags``, ``/api/show``, ``/api/ps`` entries) is read here once, for
the manager and for the router's health checks alike (:func:`model_details`,
:func:`context_length`).
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ollang.errors import ModelNotFoundError, OllamaResponseError
from ollang.settings import Settings, parse_ollama_host
from ollang.transport.client import OllamaClient

__all__ = [
    "LoadedModel",
    "ModelDetails",
    "ModelManager",
    "PullProgress",
    "context_length",
    "format_gb",
    "model_details",
    "normalise_model",
]


def format_gb(size: int | None) -> str:
    """Bytes as Ollama prints them (decimal units, as its HumanBytes and rich's download
    bars do): ``4.7 GB``, ``98 MB``, ``512 KB``."""
    value = float(size or 0)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= scale:
            shown = value / scale
            return f"{shown:.1f} {unit}" if shown < 10 and unit == "GB" else f"{shown:.0f} {unit}"
    return f"{value:.0f} B"


@dataclass(frozen=True)
class ModelDetails:
    """An installed model as listed by ``/api/tags`` (plus ``/api/show`` fields when shown)."""

    name: str
    size: int
    modified_at: datetime | None = None
    digest: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    context_length: int | None = None
    template: str | None = None
    parameters: str | None = None
    system: str | None = None
    license: str | None = None
    capabilities: list[str] = field(default_factory=list)
    backend: str = "ollama"

    @property
    def size_gb(self) -> str:
        """Size as ``4.7 GB``."""
        return format_gb(self.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``--json`` and the HTTP API)."""
        return {
            "name": self.name,
            "size": self.size,
            "size_gb": round(self.size / 1e9, 1),
            "modified_at": self.modified_at.isoformat() if self.modified_at else None,
            "digest": self.digest,
            "backend": self.backend,
            "details": {
                "family": self.family,
                "parameter_size": self.parameter_size,
                "quantization_level": self.quantization_level,
                "context_length": self.context_length,
            },
        }


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded in Ollama's memory (``/api/ps``)."""

    name: str
    size: int
    size_vram: int
    expires_at: datetime | None
    context_length: int | None = None


@dataclass(frozen=True)
class PullProgress:
    """One progress line of a pull: a status, and for layers a digest with byte counts."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


def _when(value: Any) -> datetime | None:
    """A time as Ollama writes it (RFC 3339, nanoseconds and all), or ``None``."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def model_details(entry: Mapping[str, Any]) -> ModelDetails:
    """A model as ``/api/tags`` (or ``/api/ps``) lists it."""
    details = entry.get("details") or {}
    return ModelDetails(
        name=str(entry.get("model") or entry.get("name") or ""),
        size=int(entry.get("size") or 0),
        modified_at=_when(entry.get("modified_at")),
        digest=entry.get("digest"),
        family=details.get("family"),
        parameter_size=details.get("parameter_size"),
        quantization_level=details.get("quantization_level"),
    )


def context_length(show: Mapping[str, Any]) -> int | None:
    """A model's trained context length from its ``/api/show`` answer
    (``model_info``'s ``<architecture>.context_length``), or ``None``."""
    for key, value in (show.get("model_info") or {}).items():
        if key.endswith(".context_length") and isinstance(value, int) and value > 0:
            return value
    return None


def normalise_model(name: str) -> str:
    """Ollama's reading of a model name: no tag means ``:latest`` (``llama3`` is ``llama3:latest``)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class ModelManager:
    """Talks to one Ollama server about its models."""

    def __init__(self, base_url: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.url = parse_ollama_host(base_url) if base_url else self.settings.ollama_url
        self._client: OllamaClient | None = None

    @property
    def client(self) -> OllamaClient:
        """The synchronous client (the official ``ollama.Client`` under it), made on first use."""
        if self._client is None:
            self._client = OllamaClient.from_settings(self.url, settings=self.settings)
        return self._client

    def _names(self) -> list[str]:
        return [d.name for d in self.list()]

    def version(self) -> str:
        """Ollama's version string (``/api/version``)."""
        answer = self.client.get_json("/api/version", timeout=self.settings.connect_timeout)
        return str(answer.get("version", "unknown"))

    def list(self) -> list[ModelDetails]:
        """Installed models, sorted by name."""
        models = self.client.get_json("/api/tags").get("models") or []
        return sorted((model_details(m) for m in models), key=lambda d: d.name)

    def exists(self, name: str) -> bool:
        """Whether ``name`` (``llama3`` means ``llama3:latest``) is installed."""
        wanted = normalise_model(name)
        return any(normalise_model(d.name) == wanted for d in self.list())

    def show(self, name: str) -> ModelDetails:
        """Details of one model (``/api/show``): family, parameters, context length, template."""
        info = self.client.request_json(
            "POST", "/api/show", {"model": name}, list_models=self._names
        )
        listed = {d.name: d for d in self.list()}
        base = listed.get(normalise_model(name)) or listed.get(name)
        details = info.get("details") or {}
        return ModelDetails(
            name=normalise_model(name),
            size=base.size if base else 0,
            modified_at=_when(info.get("modified_at")),
            digest=base.digest if base else None,
            family=details.get("family"),
            parameter_size=details.get("parameter_size"),
            quantization_level=details.get("quantization_level"),
            context_length=context_length(info),
            template=info.get("template"),
            parameters=info.get("parameters"),
            system=info.get("system") or _modelfile_system(info.get("modelfile")),
            license=info.get("license"),
            capabilities=list(info.get("capabilities") or []),
        )

    def delete(self, name: str) -> None:
        """Remove a model from the server."""
        self.client.request_json("DELETE", "/api/delete", {"model": name}, list_models=self._names)

    def stop(self, name: str) -> None:
        """Unload a model from memory now (what ``ollama stop`` does: ``keep_alive: 0``)."""
        body = {"model": name, "prompt": "", "keep_alive": 0, "stream": False}
        self.client.request_json("POST", "/api/generate", body, list_models=self._names)

    def copy(self, source: str, destination: str) -> None:
        """Copy a model under a new name (``/api/copy``)."""
        body = {"source": source, "destination": destination}
        self.client.request_json("POST", "/api/copy", body, model=source, list_models=self._names)

    def ps(self) -> builtins.list[LoadedModel]:
        """Models loaded in memory now."""
        models = self.client.get_json("/api/ps").get("models") or []
        return [
            LoadedModel(
                name=str(m.get("model") or m.get("name") or ""),
                size=int(m.get("size") or 0),
                size_vram=int(m.get("size_vram") or 0),
                expires_at=_when(m.get("expires_at")),
                context_length=m.get("context_length"),
            )
            for m in models
        ]

    def pull(self, name: str) -> Iterator[PullProgress]:
        """Pull a model, yielding progress; an in-stream error raises a clear error.

        Raises:
            ModelNotFoundError: the registry has no such model.
            OllamaResponseError: any other pull failure.
        """
        try:
            for line in self.client.stream("/api/pull", {"model": name, "stream": True}):
                yield _progress(line)
        except OllamaResponseError as err:
            raise _pull_error(name, err) from err

    async def apull(self, name: str) -> AsyncIterator[PullProgress]:
        """Async :meth:`pull` (for the HTTP server), over the async client."""
        from ollang.transport.wire import OllamaWire

        wire = OllamaWire.from_settings(self.url, settings=self.settings)
        try:
            stream = wire.stream("/api/pull", {"model": name, "stream": True})
            async with contextlib.aclosing(stream):  # a client gone stops the pull's stream
                async for lines in stream:
                    for line in lines:
                        yield _progress(line)
        except OllamaResponseError as err:
            raise _pull_error(name, err) from err
        finally:
            await wire.close()


def _progress(line: Mapping[str, Any]) -> PullProgress:
    return PullProgress(
        status=str(line.get("status") or ""),
        digest=line.get("digest"),
        total=line.get("total"),
        completed=line.get("completed"),
    )


def _pull_error(name: str, err: OllamaResponseError) -> OllamaResponseError | ModelNotFoundError:
    # Ollama reports an unknown name as an in-stream "file does not exist".
    if "does not exist" in err.message or "not found" in err.message:
        missing = ModelNotFoundError(name)
        missing.message = f"model {name!r} is not in the registry"
        missing.hint = "check the name at https://ollama.com/library"
        return missing
    return err


def _modelfile_system(modelfile: str | None) -> str | None:
    """The SYSTEM line of a Modelfile (``/api/show`` has no field of its own for it)."""
    for line in (modelfile or "").splitlines():
        if line.upper().startswith("SYSTEM "):
            return line[7:].strip().strip('"')
    return None
