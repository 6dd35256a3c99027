"""Model management through the official ``ollama`` client: list, pull, show, rm, ps.

The CLI and the HTTP server both call these; raw client errors become ollang's
errors here (via :func:`chains.errors.translating`), including in-stream errors
of a pull.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ollang.errors import ModelNotFoundError, OllamaResponseError
from ollang.settings import Settings, parse_ollama_host
from ollang.transport.client import ollama_client
from ollang.transport.errors import translating

if TYPE_CHECKING:  # the client is imported when first used (`ollang --help` stays fast)
    import ollama

__all__ = [
    "LoadedModel",
    "ModelDetails",
    "ModelManager",
    "PullProgress",
    "format_gb",
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


def _details(model: ollama.ListResponse.Model) -> ModelDetails:
    details = getattr(model, "details", None)
    return ModelDetails(
        name=model.model or "",
        size=int(model.size or 0),
        modified_at=model.modified_at,
        digest=model.digest,
        family=getattr(details, "family", None),
        parameter_size=getattr(details, "parameter_size", None),
        quantization_level=getattr(details, "quantization_level", None),
    )


def normalise_model(name: str) -> str:
    """Ollama's reading of a model name: no tag means ``:latest`` (``llama3`` is ``llama3:latest``)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class ModelManager:
    """Talks to one Ollama server about its models."""

    def __init__(self, base_url: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.url = parse_ollama_host(base_url) if base_url else self.settings.ollama_url
        self._client: ollama.Client | None = None

    @property
    def client(self) -> ollama.Client:
        """The official ``ollama.Client``, created on first use."""
        if self._client is None:
            self._client = ollama_client(self.url, settings=self.settings)
        return self._client

    def _translating(self, model: str | None = None) -> AbstractContextManager[None]:
        return translating(url=self.url, model=model, list_models=self._names)

    def _names(self) -> list[str]:
        return [m.model or "" for m in self.client.list().models]

    def version(self) -> str:
        """Ollama's version string (``/api/version``)."""
        import httpx

        with self._translating():
            response = httpx.get(f"{self.url}/api/version", timeout=self.settings.connect_timeout)
            response.raise_for_status()
            return str(response.json().get("version", "unknown"))

    def list(self) -> list[ModelDetails]:
        """Installed models, sorted by name."""
        with self._translating():
            models = self.client.list().models
        return sorted((_details(m) for m in models), key=lambda d: d.name)

    def exists(self, name: str) -> bool:
        """Whether ``name`` (``llama3`` means ``llama3:latest``) is installed."""
        wanted = normalise_model(name)
        return any(normalise_model(d.name) == wanted for d in self.list())

    def show(self, name: str) -> ModelDetails:
        """Details of one model (``/api/show``): family, parameters, context length, template."""
        with self._translating(name):
            info = self.client.show(name)
        listed = {d.name: d for d in self.list()}
        base = listed.get(normalise_model(name)) or listed.get(name)
        model_info = info.modelinfo or {}
        context = next(
            (
                v
                for k, v in model_info.items()
                if k.endswith(".context_length") and isinstance(v, int)
            ),
            None,
        )
        details = info.details
        return ModelDetails(
            name=normalise_model(name),
            size=base.size if base else 0,
            modified_at=info.modified_at,
            digest=base.digest if base else None,
            family=getattr(details, "family", None),
            parameter_size=getattr(details, "parameter_size", None),
            quantization_level=getattr(details, "quantization_level", None),
            context_length=context,
            template=info.template,
            parameters=info.parameters,
            system=getattr(info, "system", None) or _modelfile_system(info.modelfile),
            license=getattr(info, "license", None),
            capabilities=list(info.capabilities or []),
        )

    def delete(self, name: str) -> None:
        """Remove a model from the server."""
        with self._translating(name):
            self.client.delete(name)

    def stop(self, name: str) -> None:
        """Unload a model from memory now (what ``ollama stop`` does: ``keep_alive: 0``)."""
        with self._translating(name):
            self.client.generate(model=name, prompt="", keep_alive=0)

    def copy(self, source: str, destination: str) -> None:
        """Copy a model under a new name (``/api/copy``)."""
        with self._translating(source):
            self.client.copy(source, destination)

    def ps(self) -> builtins.list[LoadedModel]:
        """Models loaded in memory now."""
        with self._translating():
            models = self.client.ps().models
        return [
            LoadedModel(
                name=m.model or "",
                size=int(m.size or 0),
                size_vram=int(m.size_vram or 0),
                expires_at=m.expires_at,
                context_length=getattr(m, "context_length", None),
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
            with self._translating():
                for part in self.client.pull(name, stream=True):
                    yield _progress(part)
        except OllamaResponseError as err:
            raise _pull_error(name, err) from err

    async def apull(self, name: str) -> AsyncIterator[PullProgress]:
        """Async :meth:`pull` (for the HTTP server)."""
        import ollama

        client = ollama.AsyncClient(host=self.url, timeout=self.client._client.timeout)
        try:
            with self._translating():
                async for part in await client.pull(name, stream=True):
                    yield _progress(part)
        except OllamaResponseError as err:
            raise _pull_error(name, err) from err


def _progress(part: ollama.ProgressResponse) -> PullProgress:
    return PullProgress(
        status=part.status or "",
        digest=part.digest,
        total=part.total,
        completed=part.completed,
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
