"""Model management: list, pull, show, rm, ps, stop, copy, create, push, blobs — over
ollang's clients.

The CLI and the HTTP server both call these (the server the ``a``-prefixed async twins:
:meth:`ModelManager.adelete`, :meth:`~ModelManager.acopy`, :meth:`~ModelManager.acreate`,
:meth:`~ModelManager.apush`, :meth:`~ModelManager.ahas_blob`,
:meth:`~ModelManager.aupload_blob`, which send the same requests). A Modelfile is read
here too (:func:`parse_modelfile`), into ``/api/create``'s body as the ``ollama`` CLI
sends it, its local files uploaded as blobs first. The synchronous calls go through
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
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollang.errors import InvalidInputError, ModelNotFoundError, OllamaResponseError
from ollang.settings import Settings, parse_ollama_host
from ollang.transport.client import OllamaClient
from ollang.transport.errors import status_error, translating

if TYPE_CHECKING:
    import httpx

__all__ = [
    "LoadedModel",
    "ModelDetails",
    "ModelManager",
    "PullProgress",
    "blob_digest",
    "context_length",
    "format_gb",
    "model_details",
    "normalise_model",
    "parse_modelfile",
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

    def create(self, name: str, body: Mapping[str, Any]) -> Iterator[PullProgress]:
        """Create model ``name`` (``/api/create``: ``from``, ``files`` digests of uploaded
        blobs, ``template``, ``system``, ``parameters``...), yielding its progress.

        Raises:
            OllamaResponseError: the host refused it (before or during the stream).
        """
        for line in self.client.stream("/api/create", _create_body(name, body)):
            yield _progress(line)

    def create_from_modelfile(self, name: str, path: str | Path) -> Iterator[PullProgress]:
        """``ollama create NAME -f Modelfile``: read the Modelfile, upload the local files it
        names as blobs (those the host lacks), then :meth:`create`.

        Raises:
            InvalidInputError: the Modelfile cannot be read or names a missing file.
        """
        body, files = parse_modelfile(_read_modelfile(path), Path(path).parent)
        for kind, named in files.items():
            digests: dict[str, str] = {}
            for label, local in named.items():
                digest = blob_digest(local)
                if not self.has_blob(digest):
                    yield PullProgress(f"copying file {digest}")
                    self.upload_blob(digest, local)
                digests[label] = digest
            body[kind] = digests
        yield from self.create(name, body)

    def push(self, name: str) -> Iterator[PullProgress]:
        """Push a model to its registry (``/api/push``), yielding progress."""
        for line in self.client.stream("/api/push", {"model": name, "stream": True}):
            yield _progress(line)

    def has_blob(self, digest: str) -> bool:
        """Whether the host holds blob ``digest`` (``HEAD /api/blobs/:digest``)."""
        with translating(url=self.url):
            response = self.client.http.request("HEAD", f"/api/blobs/{digest}")
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise status_error(response.status_code, response.text, None)

    def upload_blob(self, digest: str, path: str | Path) -> None:
        """Upload a file as blob ``digest`` (its sha256, ``sha256:...``)."""
        with translating(url=self.url), Path(path).open("rb") as data:
            response = self.client.http.request("POST", f"/api/blobs/{digest}", content=data)
        if response.status_code >= 400:
            raise status_error(response.status_code, response.text, None)

    # -- async twins, for the HTTP server -----------------------------------------------
    @contextlib.asynccontextmanager
    async def _ahttp(self) -> AsyncIterator[httpx.AsyncClient]:
        import httpx

        from ollang.transport.client import client_timeout

        async with httpx.AsyncClient(
            base_url=self.url, timeout=client_timeout(self.settings)
        ) as http:
            yield http

    async def _arequest(
        self, method: str, path: str, *, model: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request; an error status raises ollang's error (404 about ``model``)."""
        async with self._ahttp() as http:
            with translating(url=self.url, model=model):
                response = await http.request(method, path, **kwargs)
        if response.status_code >= 400 and not (method == "HEAD" and response.status_code == 404):
            raise status_error(response.status_code, response.text, model)
        return response

    async def adelete(self, name: str) -> None:
        """Async :meth:`delete`."""
        await self._arequest("DELETE", "/api/delete", json={"model": name}, model=name)

    async def acopy(self, source: str, destination: str) -> None:
        """Async :meth:`copy`."""
        body = {"source": source, "destination": destination}
        await self._arequest("POST", "/api/copy", json=body, model=source)

    async def acreate(self, name: str, body: Mapping[str, Any]) -> AsyncIterator[PullProgress]:
        """Async :meth:`create`."""
        async for line in self._astream("/api/create", _create_body(name, body)):
            yield line

    async def apush(self, name: str) -> AsyncIterator[PullProgress]:
        """Async :meth:`push`."""
        async for line in self._astream("/api/push", {"model": name, "stream": True}):
            yield line

    async def ahas_blob(self, digest: str) -> bool:
        """Async :meth:`has_blob`."""
        return (await self._arequest("HEAD", f"/api/blobs/{digest}")).status_code == 200

    async def aupload_blob(self, digest: str, chunks: AsyncIterable[bytes]) -> int:
        """Upload blob ``digest`` from ``chunks`` as they come (a client's upload passed
        on without holding it); the host's status (201 when created)."""
        response = await self._arequest("POST", f"/api/blobs/{digest}", content=chunks)
        return response.status_code

    async def _astream(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[PullProgress]:
        from ollang.transport.wire import OllamaWire

        wire = OllamaWire.from_settings(self.url, settings=self.settings)
        try:
            stream = wire.stream(path, body)
            async with contextlib.aclosing(stream):  # a client gone stops reading the host
                async for lines in stream:
                    for line in lines:
                        yield _progress(line)
        finally:
            await wire.close()

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


def _create_body(name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``/api/create``'s body for ``name``, streamed."""
    return {**{k: v for k, v in body.items() if v is not None}, "model": name, "stream": True}


def blob_digest(path: str | Path) -> str:
    """A file's blob digest as Ollama names blobs: ``sha256:<hex>``."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _read_modelfile(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(
            f"cannot read the Modelfile {str(path)!r}: {err}", "pass -f PATH of a Modelfile"
        ) from err


#: Modelfile instructions whose value is one (perhaps triple-quoted) text.
_TEXTS = {"template": "template", "system": "system", "license": "license"}


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """A Modelfile's ``(INSTRUCTION, value)`` pairs: ``#`` comments skipped, values in
    triple quotes may span lines, values in ``"..."`` are unquoted."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        command, _, value = line.partition(" ")
        value = value.strip()
        if value.startswith('"""'):
            rest = value[3:]
            while '"""' not in rest and index < len(lines):
                rest += "\n" + lines[index]
                index += 1
            if '"""' not in rest:
                raise InvalidInputError(
                    f"{command}: a triple quote is never closed", "close it with three quotes"
                )
            value = rest[: rest.index('"""')]
        else:
            value = _unquoted(value)
        yield command.upper(), value


def _unquoted(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _parameter_value(text: str) -> Any:
    """A ``PARAMETER`` value typed as the ``ollama`` CLI sends it (int, float, bool, text)."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_modelfile(text: str, base: Path) -> tuple[dict[str, Any], dict[str, dict[str, Path]]]:
    """A Modelfile as ``/api/create``'s body (``from``, ``template``, ``system``,
    ``license``, ``parameters``, ``messages``), and the local files it names that must be
    uploaded as blobs first: ``{"files": {name: path}, "adapters": {name: path}}`` (their
    digests go into the body under those keys). ``FROM`` a model name is ``from``; ``FROM``
    (or ``ADAPTER``) a path, relative to ``base``, is a file or a directory of files.

    Raises:
        InvalidInputError: no ``FROM``, an unknown instruction, a malformed line.
    """
    body: dict[str, Any] = {}
    files: dict[str, dict[str, Path]] = {}
    parameters: dict[str, Any] = {}
    for command, value in _instructions(text):
        if command in ("FROM", "ADAPTER"):
            key = "files" if command == "FROM" else "adapters"
            local = (base / Path(value).expanduser()).resolve()
            looks_local = value.startswith((".", "/", "~")) or local.exists()
            if command == "FROM" and not looks_local:
                body["from"] = value
                continue
            if not local.exists():
                raise InvalidInputError(
                    f"{command} {value}: no such file or directory",
                    "give a model name, or a path to a GGUF file or a model directory",
                )
            found = sorted(p for p in local.iterdir() if p.is_file()) if local.is_dir() else [local]
            files.setdefault(key, {}).update({p.name: p for p in found})
        elif command.lower() in _TEXTS:
            body[_TEXTS[command.lower()]] = value
        elif command == "PARAMETER":
            key, _, raw = value.partition(" ")
            raw = raw.strip().strip('"')
            if not key or not raw:
                raise InvalidInputError(f"PARAMETER {value}: needs a name and a value")
            if key == "stop":
                parameters.setdefault("stop", []).append(raw)
            else:
                parameters[key] = _parameter_value(raw)
        elif command == "MESSAGE":
            role, _, content = value.partition(" ")
            if role not in ("system", "user", "assistant"):
                raise InvalidInputError(
                    f"MESSAGE {role}: the role must be system, user or assistant"
                )
            body.setdefault("messages", []).append(
                {"role": role, "content": _unquoted(content.strip())}
            )
        elif command == "REQUIRES":
            body["requires"] = value
        else:
            raise InvalidInputError(
                f"unknown Modelfile instruction {command!r}",
                "FROM, PARAMETER, TEMPLATE, SYSTEM, ADAPTER, LICENSE, MESSAGE, REQUIRES",
            )
    if "from" not in body and "files" not in files:
        raise InvalidInputError("the Modelfile has no FROM line", "start it with FROM MODEL")
    if parameters:
        body["parameters"] = parameters
    return body, files


def _modelfile_system(modelfile: str | None) -> str | None:
    """The SYSTEM line of a Modelfile (``/api/show`` has no field of its own for it)."""
    for line in (modelfile or "").splitlines():
        if line.upper().startswith("SYSTEM "):
            return line[7:].strip().strip('"')
    return None
