"""What a model is and can do: size, parameters, quantization, context, capabilities.

:class:`ModelFacts` is read from an Ollama host's ``/api/show`` answer
(:func:`facts_from_show`) or from a GGUF file's header (:func:`facts_from_gguf`, for
the embedded backend), so both kinds of model are listed, fitted and recommended alike.

``/api/show`` is one request per model; ``ollang models`` would send one for every model
at every listing. Its answer depends only on the model's content, so :class:`FactsCache`
keeps what the facts need of it per digest (``<home>/model-facts.json``) and
:func:`gather_facts` asks only for the models the cache lacks, a few at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollang.catalog.fit import Architecture, Fit, Machine, fit
from ollang.catalog.gguf_info import capabilities_from_gguf, model_info_from_gguf
from ollang.errors import OllangError

if TYPE_CHECKING:
    from ollang.transport.manage import ModelDetails, ModelManager

__all__ = [
    "CAPABILITIES",
    "FACTS_FILE",
    "FactsCache",
    "ModelFacts",
    "facts_from_gguf",
    "facts_from_show",
    "facts_from_tags",
    "gather_facts",
]

#: The capabilities ollang chooses models by, named as /api/show names them (Ollama also
#: reports ``insert``, fill-in-the-middle, which is kept but not chosen by).
CAPABILITIES = ("completion", "tools", "vision", "thinking", "embedding")
#: The cache's file name in ollang's data directory.
FACTS_FILE = "model-facts.json"
#: The cache file's format; a file of another version is ignored (and rewritten).
_CACHE_VERSION = 1
#: Longer arrays of ``model_info`` are left out of the cache (per-layer arrays are far shorter;
#: the tokenizer's, sent with ``verbose``, are tens of thousands long).
_MAX_ARRAY = 1024

#: GGUF's ``general.file_type`` (llama.cpp's ``llama_ftype``) as Ollama names quantizations.
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
}
_SCALES = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_PARAMETER_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ModelFacts:
    """An installed model's facts: what ``ollang models`` lists and ``recommend`` ranks by.

    Attributes:
        name: The model's name on its host (``llama3:8b``) or the embedded backend's.
        digest: Its digest on an Ollama host (the cache's key); ``None`` for a file.
        size_bytes: The size of its files: the weights the fit places.
        parameter_count: Its number of parameters, when known.
        parameter_size: The same as Ollama prints it (``8.0B``, ``137M``).
        quantization: How its weights are stored (``Q4_0``, ``Q4_K_M``, ``F16``).
        context_length: The context it was trained for, in tokens.
        capabilities: What it can do, as /api/show names it (:data:`CAPABILITIES`);
            ``()`` when unknown (its ``/api/show`` failed).
        family: Its model family (``llama``, ``gemma``).
        model_info: The header the facts come from, for the memory estimate.
    """

    name: str
    digest: str | None
    size_bytes: int
    parameter_count: int | None
    parameter_size: str | None
    quantization: str | None
    context_length: int | None
    capabilities: tuple[str, ...]
    family: str | None
    model_info: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def architecture(self) -> Architecture | None:
        """What the memory estimate needs of the header; ``None`` when it lacks some of it."""
        if not self.model_info:
            return None
        try:
            return Architecture.from_model_info(self.model_info)
        except OllangError:
            return None

    def fit(
        self, machine: Machine, ctx: int | None = None, kv_cache_type: str = "f16"
    ) -> Fit | None:
        """Where the model runs on ``machine`` (see :func:`ollang.catalog.fit.fit`).

        ``None`` when that cannot be told: no header to estimate from, or no size.

        Raises:
            InvalidInputError: ``ctx`` is not positive, or ``kv_cache_type`` is unknown.
        """
        arch = self.architecture()
        if arch is None or self.size_bytes <= 0:
            return None
        return fit(self.name, arch, self.size_bytes, machine, ctx, kv_cache_type)

    def to_json(self) -> dict[str, Any]:
        """The facts as a JSON object (without the header)."""
        return {
            "name": self.name,
            "digest": self.digest,
            "size": self.size_bytes,
            "parameter_count": self.parameter_count,
            "parameter_size": self.parameter_size,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "capabilities": list(self.capabilities),
            "family": self.family,
        }


def _count(value: Any) -> int | None:
    """``value`` as a positive count, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)


def _text(value: Any) -> str | None:
    """``value`` as a non-empty string, or ``None``."""
    return value if isinstance(value, str) and value else None


def _parameters_from_size(parameter_size: str | None) -> int | None:
    """``8.0B`` as 8,000,000,000: a rough count when the header does not give one."""
    match = _PARAMETER_SIZE.fullmatch(parameter_size or "")
    if match is None:
        return None
    return round(float(match.group(1)) * _SCALES[match.group(2).upper()])


def _parameter_size(count: int | None) -> str | None:
    """A parameter count as Ollama's ``details.parameter_size`` shows it: ``8.0B``, ``137M``."""
    if count is None:
        return None
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(count)


def _context_length(model_info: Mapping[str, Any]) -> int | None:
    """``<architecture>.context_length`` of a header."""
    arch = model_info.get("general.architecture")
    return _count(model_info.get(f"{arch}.context_length")) if isinstance(arch, str) else None


def _capabilities(values: Any) -> tuple[str, ...]:
    """The capability names of an answer, each once, in its order."""
    if not isinstance(values, (list, tuple)):
        return ()
    return tuple(dict.fromkeys(str(v) for v in values if isinstance(v, str) and v))


def facts_from_show(
    name: str, show: Mapping[str, Any], *, size: int, digest: str | None
) -> ModelFacts:
    """The facts of ``name`` from its ``/api/show`` answer (or the cache's trimmed copy).

    ``size`` and ``digest`` come from ``/api/tags`` (``/api/show`` gives neither). The
    parameter count is the header's, else read from ``details.parameter_size``.
    """
    details = show.get("details")
    details = details if isinstance(details, Mapping) else {}
    info = show.get("model_info")
    info = info if isinstance(info, Mapping) else {}
    parameter_size = _text(details.get("parameter_size"))
    count = _count(info.get("general.parameter_count")) or _parameters_from_size(parameter_size)
    return ModelFacts(
        name=name,
        digest=digest,
        size_bytes=max(int(size or 0), 0),
        parameter_count=count,
        parameter_size=parameter_size or _parameter_size(count),
        quantization=_text(details.get("quantization_level")),
        context_length=_context_length(info),
        capabilities=_capabilities(show.get("capabilities")),
        family=_text(details.get("family")) or _text(info.get("general.architecture")),
        model_info=dict(info),
    )


def facts_from_tags(details: ModelDetails) -> ModelFacts:
    """What ``/api/tags`` alone says of a model (when its ``/api/show`` failed):
    no header, so no context length, capabilities or fit."""
    return ModelFacts(
        name=details.name,
        digest=details.digest,
        size_bytes=details.size,
        parameter_count=_parameters_from_size(details.parameter_size),
        parameter_size=details.parameter_size,
        quantization=details.quantization_level,
        context_length=details.context_length,
        capabilities=tuple(details.capabilities),
        family=details.family,
    )


def facts_from_gguf(name: str, path: Path) -> ModelFacts:
    """The facts of the GGUF file at ``path`` (an embedded model), from its header.

    Capabilities follow :func:`capabilities_from_gguf`; the quantization is the header's
    ``general.file_type``.

    Raises:
        ModelNotFoundError: there is no file at ``path``.
        OllangError: the file is not a readable GGUF file.
    """
    info = model_info_from_gguf(path)
    count = _count(info.get("general.parameter_count"))
    file_type = info.get("general.file_type")
    arch = _text(info.get("general.architecture"))
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return ModelFacts(
        name=name,
        digest=None,
        size_bytes=size,
        parameter_count=count,
        parameter_size=_parameter_size(count),
        quantization=_FILE_TYPES.get(file_type) if isinstance(file_type, int) else None,
        context_length=_context_length(info),
        capabilities=tuple(capabilities_from_gguf(info)),
        family=arch,
        model_info=info,
    )


def _trim(show: Mapping[str, Any]) -> dict[str, Any]:
    """What the facts need of a ``/api/show`` answer: details, the header's scalars and short
    arrays, capabilities (not the template, license, Modelfile or tensor list)."""
    info = show.get("model_info")
    info = info if isinstance(info, Mapping) else {}
    kept: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, (list, tuple)) and len(value) > _MAX_ARRAY:
            continue
        kept[str(key)] = value
    arch = info.get("general.architecture")
    tokens = info.get("tokenizer.ggml.tokens")  # a verbose answer: keep the vocabulary's size
    if isinstance(arch, str) and isinstance(tokens, (list, tuple)):
        kept.setdefault(f"{arch}.vocab_size", len(tokens))
    details = show.get("details")
    return {
        "details": dict(details) if isinstance(details, Mapping) else {},
        "model_info": kept,
        "capabilities": list(_capabilities(show.get("capabilities"))),
    }


class FactsCache:
    """``/api/show`` answers (trimmed) by model digest: in memory, and in
    ``<home>/model-facts.json`` so the next ``ollang models`` need not ask again.

    A digest names a model's content, so an entry never goes stale: a model pulled again
    with new content has a new digest. The file is replaced whole (a temporary file,
    then :func:`os.replace`), so a reader never sees half of one; a file that cannot be
    read is ignored, and rewritten at the next :meth:`put`. Thread-safe.
    """

    def __init__(self, home: Path | None) -> None:
        """``home``: ollang's data directory; ``None`` keeps the cache in memory only."""
        self.path = home / FACTS_FILE if home is not None else None
        self._entries: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _read_file(self) -> dict[str, dict[str, Any]]:
        """The file's entries; none when it is missing, unreadable or of another version."""
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        models = data.get("models")
        if not isinstance(models, dict):
            return {}
        return {k: v for k, v in models.items() if isinstance(k, str) and isinstance(v, dict)}

    def _loaded(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read_file()
        return self._entries

    def get(self, digest: str) -> dict[str, Any] | None:
        """The trimmed ``/api/show`` answer of the model with ``digest``, if cached."""
        with self._lock:
            entry = self._loaded().get(digest)
        return dict(entry) if entry is not None else None

    def put(self, digest: str, show: Mapping[str, Any]) -> None:
        """Keep ``show`` (trimmed) for ``digest``, and write the file.

        A failure to write leaves the cache in memory (the listing goes on without it).
        """
        self.put_many({digest: show})

    def put_many(self, answers: Mapping[str, Mapping[str, Any]]) -> None:
        """:meth:`put` for several digests, with one write of the file."""
        if not answers:
            return
        with self._lock:
            entries = self._loaded()
            entries.update({digest: _trim(show) for digest, show in answers.items()})
            if self.path is not None:
                # Another process may have added entries meanwhile: keep theirs too.
                on_disk = self._read_file()
                on_disk.update(entries)
                entries.update(on_disk)
                with contextlib.suppress(OSError):
                    self._write(entries)

    def _write(self, entries: Mapping[str, Any]) -> None:
        """Replace the file with ``entries``, atomically."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=".model-facts-", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump({"version": _CACHE_VERSION, "models": entries}, file)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def gather_facts(
    manager: ModelManager,
    listed: Sequence[ModelDetails],
    cache: FactsCache,
    *,
    workers: int = 8,
) -> dict[str, ModelFacts]:
    """The facts of every model ``listed`` by ``manager``'s host, by name.

    Asks ``/api/show`` only for models whose digest the cache lacks (or that have no
    digest), ``workers`` at a time, and caches the answers. A model whose ``/api/show``
    fails keeps what ``/api/tags`` said of it (:func:`facts_from_tags`) rather than
    failing the whole listing.
    """
    found: dict[str, ModelFacts] = {}
    missing: list[ModelDetails] = []
    for details in listed:
        cached = cache.get(details.digest) if details.digest else None
        if cached is None:
            missing.append(details)
        else:
            found[details.name] = facts_from_show(
                details.name, cached, size=details.size, digest=details.digest
            )
    if not missing:
        return found
    client = manager.client  # made here, once, not by each thread

    def show(details: ModelDetails) -> Mapping[str, Any] | None:
        try:
            return client.request_json("POST", "/api/show", {"model": details.name})
        except OllangError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
        answers = list(pool.map(show, missing))
    fresh: dict[str, Mapping[str, Any]] = {}
    for details, answer in zip(missing, answers, strict=True):
        if answer is None:
            found[details.name] = facts_from_tags(details)
            continue
        found[details.name] = facts_from_show(
            details.name, answer, size=details.size, digest=details.digest
        )
        if details.digest:
            fresh[details.digest] = answer
    cache.put_many(fresh)
    return found
