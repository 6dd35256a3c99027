"""A GGUF file's header in the shape of Ollama's /api/show ``model_info``, and its capabilities.

So a model file with no Ollama server (the embedded backend, a download) gets the same
estimate as an installed model: :meth:`Architecture.from_model_info` reads either.

The header is read here, with :mod:`struct` over a memory map, rather than with the
``gguf`` package's ``GGUFReader``: that reader decodes every item of every array, the
tokenizer's tens of thousands of strings included, and took 7 s for SmolLM2-135M's
header on our 2-core machine; this one steps over them (~0.1 s). The tests check that
both read the same header. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ollang.errors import ModelNotFoundError, OllangError

__all__ = ["capabilities_from_gguf", "model_info_from_gguf"]

#: Arrays /api/show leaves out (without ``verbose``): the tokenizer's, tens of thousands long.
_TOKENIZER_ARRAYS = frozenset(
    f"tokenizer.ggml.{name}" for name in ("tokens", "token_type", "merges", "scores")
)
#: Longer arrays are left out too (per-layer arrays, e.g. head counts, are far shorter).
_MAX_ARRAY = 1024
#: Architectures that are embedding models even when the header has no pooling type.
_EMBEDDING_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2"})
#: GGUF's value types with a fixed size: their :mod:`struct` codes (the enum's numbers).
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


class _Header:
    """A cursor over a GGUF file's bytes: reads the values of its header in order."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        if data[:4] != b"GGUF":
            raise ValueError("no GGUF magic number at the start")
        # A big-endian file (rare: s390x builds) has its version byte-swapped.
        self.order = "<" if struct.unpack_from("<I", data, 4)[0] < 0x10000 else ">"
        self.at = 4
        version = self.scalar(4)
        if version < 2:
            raise ValueError(f"GGUF version {version} (before 2023's version 2) is not supported")

    def scalar(self, kind: int) -> Any:
        """The next value, of the fixed-size GGUF type ``kind``."""
        code = self.order + _SCALARS[kind]
        (value,) = struct.unpack_from(code, self.data, self.at)
        self.at += struct.calcsize(code)
        return value

    def string(self) -> str:
        """The next string (a uint64 length, then UTF-8 bytes)."""
        length = self.scalar(10)
        raw = self.data[self.at : self.at + length]
        if len(raw) != length:
            raise ValueError("the file ends inside its header")
        self.at += length
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        """The next value, of GGUF type ``kind`` (an array as a list)."""
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            return self.scalar(kind)
        item_kind, count = self.scalar(4), self.scalar(10)
        return [self.value(item_kind) for _ in range(count)]

    def array_length(self) -> int:
        """The item count of the array value that starts here (without moving)."""
        (count,) = struct.unpack_from(self.order + "Q", self.data, self.at + 4)
        return int(count)

    def skip_array(self) -> None:
        """Step over the array value that starts here without decoding its items."""
        item_kind, count = self.scalar(4), self.scalar(10)
        if item_kind in _SCALARS:
            self.at += count * struct.calcsize(_SCALARS[item_kind])
        elif item_kind == _STRING:
            for _ in range(count):
                length = self.scalar(10)  # (not `self.at += self.scalar(10)`: it moves self.at)
                self.at += length
        else:  # arrays of arrays: none in llama.cpp's keys, but the format allows them
            for _ in range(count):
                self.value(item_kind)


def model_info_from_gguf(path: Path) -> dict[str, Any]:
    """The header of the GGUF file at ``path`` as /api/show's ``model_info``.

    Scalars become Python ``int``/``float``/``bool``/``str``, short arrays lists. The
    tokenizer's arrays and any longer than 1,024 items are left out, as /api/show leaves
    them out; the vocabulary's length is kept as ``<arch>.vocab_size`` when the header
    does not give it. ``general.parameter_count`` is the sum of the tensors' elements
    when the header does not give it.

    Raises:
        ModelNotFoundError: there is no file at ``path``.
        OllangError: the file is not a GGUF file (or not one this reader knows).
    """
    if not path.is_file():
        raise ModelNotFoundError(
            str(path), message=f"no GGUF file at {path}", hint="check the path"
        )
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _read(_Header(data))
    except (ValueError, OSError, KeyError, struct.error) as err:
        raise OllangError(
            f"{path} is not a readable GGUF file ({err})",
            "give a llama.cpp model file (.gguf), e.g. one `ollama pull` downloaded",
        ) from err


def _read(header: _Header) -> dict[str, Any]:
    """The key/value pairs and the parameter count from ``header``, positioned after the version."""
    tensor_count, kv_count = header.scalar(10), header.scalar(10)
    info: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(kv_count):
        name, kind = header.string(), header.scalar(4)
        if kind == _ARRAY:
            lengths[name] = header.array_length()
            if name in _TOKENIZER_ARRAYS or lengths[name] > _MAX_ARRAY:
                header.skip_array()
                continue
        info[name] = header.value(kind)
    arch = info.get("general.architecture")
    if arch and f"{arch}.vocab_size" not in info and "tokenizer.ggml.tokens" in lengths:
        info[f"{arch}.vocab_size"] = lengths["tokenizer.ggml.tokens"]
    if "general.parameter_count" not in info:
        parameters = 0
        for _ in range(tensor_count):  # name, dimensions, the sizes, type, offset
            header.string()
            elements = 1
            for _ in range(header.scalar(4)):
                elements *= header.scalar(10)
            header.at += 4 + 8  # the type (uint32) and the data's offset (uint64)
            parameters += elements
        info["general.parameter_count"] = parameters
    return info


def capabilities_from_gguf(model_info: Mapping[str, Any]) -> list[str]:
    """What the model can do, named as /api/show's ``capabilities``.

    The rule: ``["embedding"]`` when the header has ``<arch>.pooling_type`` or the
    architecture is an encoder (BERT, nomic-bert, jina-bert-v2); otherwise
    ``["completion"]``, plus ``"vision"`` when an image encoder is in the file (a
    ``clip`` projector, or ``<arch>.vision.*`` keys as in Ollama's own vision models).
    """
    arch = str(model_info.get("general.architecture", ""))
    if f"{arch}.pooling_type" in model_info or arch in _EMBEDDING_ARCHS:
        return ["embedding"]
    capabilities = ["completion"]
    vision_prefixes = ("clip.", f"{arch}.vision.")
    if arch == "clip" or any(key.startswith(vision_prefixes) for key in model_info):
        capabilities.append("vision")
    return capabilities
