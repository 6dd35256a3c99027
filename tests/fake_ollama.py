"""A real local HTTP server that speaks Ollama's REST wire format, for tests and benchmarks.

The official ``ollama`` client and langchain-ollama's ``ChatOllama``/``OllamaLLM``
talk to it unchanged: HTTP/1.1 keep-alive, chunked NDJSON streams, the same
JSON shapes and errors as Ollama (see ``shared/ollama-api.md``). Replies are
scripted with :meth:`FakeOllama.queue`; faults (in-stream error, cut
connection, hang, garbage, HTTP 500) are part of a scripted :class:`Reply`.

Standard library only, so it also runs as a stub for benchmarks::

    python tests/fake_ollama.py --port 11434 --rate 50 --tokens 50

Tools and ``format`` (a test double's rules, not a model's judgement): a scripted
:class:`Reply` may carry ``tool_calls``. Unscripted, a chat request whose last
message is the user's and that offers ``tools`` gets a call of the tool the user
names (else the first), with arguments from the user's text; a request with
``format`` ("json" or a JSON schema) gets a JSON answer; everything else an echo of
the last user message (of the tool result, after one). The tool and JSON rules are
ollang's ``FakeChatModel`` ones (``ollang.chains.fake``), imported only when a
request needs them, so the benchmark stub stays standard-library only.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "OLLAMA_CAPABILITIES",
    "REAL_MODELS",
    "FakeOllama",
    "ModelInfo",
    "RecordedRequest",
    "Reply",
    "real_model",
]

_PIECES = re.compile(r"\s*\S+|\s+$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _with_tag(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def split_tokens(text: str) -> list[str]:
    """Word pieces that keep their leading spaces: "Hello there" → ["Hello", " there"]."""
    return _PIECES.findall(text) or ([text] if text else [])


_DEFAULT_PARAMETER_COUNT = 8_030_261_248  # llama3:8b's, what every model reported before
_SCALES = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parameter_count(parameter_size: str) -> int | None:
    """``details.parameter_size`` as a number: ``"8.0B"`` → 8_000_000_000, ``"137M"`` →
    137_000_000; ``None`` for anything else."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMBT])\s*", parameter_size, re.IGNORECASE)
    if match is None:
        return None
    return round(float(match.group(1)) * _SCALES[match.group(2).upper()])


@dataclass
class ModelInfo:
    """An installed model as the fake server reports it.

    The defaults describe ``llama3:8b`` loosely; :data:`REAL_MODELS` (via :func:`real_model`)
    has models as real Ollama reports them, GGUF metadata and all.
    """

    name: str
    size: int = 4_661_224_676
    family: str = "llama"
    parameter_size: str = "8.0B"
    quantization_level: str = "Q4_0"
    #: The trained context length (``model_info``'s ``<arch>.context_length``). ``0``: the
    #: value in ``model_info`` if it has one, else 8192. Given, it wins over ``model_info``.
    context_length: int = 0
    digest: str = ""
    modified_at: str = "2024-05-01T10:00:00Z"
    template: str = "{{ .Prompt }}"
    #: What ``/api/show`` reports; by default ``["embedding"]`` for an embedding model
    #: (a name with ``embed`` or ``minilm`` in it, as ``nomic-embed-text``, ``all-minilm``),
    #: else ``["completion", "tools"]``.
    capabilities: list[str] = field(default_factory=list)
    #: ``/api/show``'s ``model_info`` (the GGUF header's keys). Whatever it lacks of
    #: ``general.architecture`` (the family), ``general.parameter_count`` (from
    #: ``parameter_size``; 8,030,261,248 for the default "8.0B") and
    #: ``<arch>.context_length`` is filled in.
    model_info: dict[str, Any] = field(default_factory=dict)
    #: ``details.families``; by default ``[family]`` (a vision model adds ``"clip"``).
    families: list[str] = field(default_factory=list)
    #: What ``/api/ps`` reports as ``size`` once loaded (weights, KV cache, graph);
    #: ``0``: the file size, as before.
    loaded_size: int = 0
    #: The context ``/api/ps`` reports the model loaded at (``loaded_size`` is for it);
    #: ``0``: ``context_length``, as before.
    loaded_context_length: int = 0
    #: ``/api/ps``'s ``size_vram``: how much of the loaded size is on a GPU (``0``: CPU only).
    size_vram: int = 0

    def __post_init__(self) -> None:
        self.name = _with_tag(self.name)
        if not self.capabilities:
            embeds = any(word in self.name for word in ("embed", "minilm"))
            self.capabilities = ["embedding"] if embeds else ["completion", "tools"]
        self.capabilities = list(self.capabilities)
        self.families = list(self.families) or [self.family]
        if not self.digest:
            self.digest = hashlib.sha256(self.name.encode()).hexdigest()
        info = dict(self.model_info)
        arch = str(info.setdefault("general.architecture", self.family))
        if "general.parameter_count" not in info:
            count = parameter_count(self.parameter_size) if self.parameter_size != "8.0B" else None
            info["general.parameter_count"] = count or _DEFAULT_PARAMETER_COUNT
        key = f"{arch}.context_length"
        if not self.context_length:
            self.context_length = int(info.get(key) or 8192)
        info[key] = self.context_length
        self.model_info = info

    @property
    def architecture(self) -> str:
        """``general.architecture``."""
        return str(self.model_info["general.architecture"])

    def tag_entry(self) -> dict[str, Any]:
        """The model as ``/api/tags`` lists it."""
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def details(self) -> dict[str, Any]:
        """The ``details`` object."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": list(self.families),
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


#: Ollama's capability names (``/api/show``'s ``capabilities``; ollama/ollama types/model).
OLLAMA_CAPABILITIES = frozenset(
    {"completion", "tools", "insert", "vision", "embedding", "thinking"}
)

_LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}"
    "<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n"
    "{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{{ .Response }}<|eot_id|>"
)

#: Models as a real Ollama reports them: ``size``, ``digest`` and ``details`` as ``/api/tags``
#: lists them, ``capabilities`` and ``model_info`` (the GGUF header's keys; the tokenizer's
#: arrays are left out, Ollama sends them only with ``verbose``) as ``/api/show`` answers, and
#: where someone published it, the size ``/api/ps`` reported once loaded (``loaded_size`` at
#: ``loaded_context_length``; ``size_vram`` stays 0, a CPU load, unless a test sets it). Each
#: entry says where its numbers come from; bench/ollama_ps_published.json has the ``ollama ps``
#: rows. Take one with :func:`real_model` (a fresh copy).
REAL_MODELS: dict[str, ModelInfo] = {
    # model_info, details: ollama/ollama docs/api.md, "Show Model Information" (its llama3
    # 8B Q4_0 example: 8,030,261,248 parameters, 32 blocks, 8192 context, 4096 embedding,
    # 14336 FFN, 32 heads, 8 KV heads, vocab 128256, rope 500000). size and digest: /api/tags
    # dumps of llama3:latest (the same blob) in public repositories (4661224676, the fake's
    # old default; 365c0bd3c000...); `ollama list` prints "365c0bd3c000  4.7 GB" (e.g.
    # muquit/privategpt markdowns/install_ollama.md). Its template has no .Tools: ["completion"].
    "llama3:8b": ModelInfo(
        "llama3:8b",
        size=4_661_224_676,
        digest="365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
        family="llama",
        parameter_size="8.0B",
        quantization_level="Q4_0",
        template=_LLAMA3_TEMPLATE,
        capabilities=["completion"],
        model_info={
            "general.architecture": "llama",
            "general.file_type": 2,
            "general.parameter_count": 8_030_261_248,
            "general.quantization_version": 2,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.attention.layer_norm_rms_epsilon": 1e-05,
            "llama.block_count": 32,
            "llama.context_length": 8192,
            "llama.embedding_length": 4096,
            "llama.feed_forward_length": 14336,
            "llama.rope.dimension_count": 128,
            "llama.rope.freq_base": 500000,
            "llama.vocab_size": 128256,
            "tokenizer.ggml.bos_token_id": 128000,
            "tokenizer.ggml.eos_token_id": 128009,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "llama-bpe",
        },
    ),
    # mistral:7b is Mistral 7B Instruct v0.3, Q4_0 (digest f974a74358d6). model_info: the
    # /api/show of mistral:7b in github.com/attogram/ollama-bash-lib demos/show.md (commit
    # ed60be402128, a Q4_K_M build of the same weights: general.file_type 15 there, 2 = Q4_0
    # here); it agrees with mistralai/Mistral-7B-Instruct-v0.3's config.json (hidden 4096,
    # 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 32768, rope_theta 1e6, 32768
    # positions). size, digest, details: /api/tags in that repo's demos/list.txt (commit
    # 5f6f81a96768: 4113301824, "7.2B", "Q4_0"); ollama.com/library/mistral (4.1GB, Q4_0).
    # capabilities ["completion", "tools"]: that /api/show. Loaded: /api/ps there (commit
    # 684677407e82, Ollama 0.10.1): 5560649728 bytes at a 4096 context, 100% GPU.
    "mistral:7b": ModelInfo(
        "mistral:7b",
        size=4_113_301_824,
        digest="f974a74358d62a017b37c6f424fcdf2744ca02926c4f952513ddf474b2fa5091",
        family="llama",
        parameter_size="7.2B",
        quantization_level="Q4_0",
        capabilities=["completion", "tools"],
        loaded_size=5_560_649_728,
        loaded_context_length=4096,
        model_info={
            "general.architecture": "llama",
            "general.file_type": 2,
            "general.parameter_count": 7_248_023_552,
            "general.quantization_version": 2,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.attention.layer_norm_rms_epsilon": 1e-05,
            "llama.block_count": 32,
            "llama.context_length": 32768,
            "llama.embedding_length": 4096,
            "llama.feed_forward_length": 14336,
            "llama.rope.dimension_count": 128,
            "llama.rope.freq_base": 1000000,
            "llama.vocab_size": 32768,
            "tokenizer.ggml.add_bos_token": True,
            "tokenizer.ggml.add_eos_token": False,
            "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.unknown_token_id": 0,
        },
    ),
    # gemma:7b (Gemma 1, 7B). general.parameter_count 8537680896 and parameter_size "9B":
    # github.com/ollama/ollama/issues/5254 ("num_params": 8537680896, shown as 9B). GGUF
    # keys: the gemma-7b-it loader dump in github.com/ggml-org/llama.cpp/pull/5691 (28
    # blocks, 8192 context, 3072 embedding, 24576 FFN, 16 heads, 16 KV heads, key/value
    # length 256, rms eps 1e-6, tokenizer "llama" of 256000 tokens; that GGUF has no
    # vocab_size or rope keys), as github.com/ggml-org/llama.cpp/pull/8597 shows too. size,
    # digest, details: /api/tags of gemma:7b in fmaclen/hollama tests/utils.ts (5011853225,
    # a72c7f4d0a15..., "9B", "Q4_0"). Its template has no .Tools: ["completion"].
    "gemma:7b": ModelInfo(
        "gemma:7b",
        size=5_011_853_225,
        digest="a72c7f4d0a15522df81486d13ce432c79e191bda2558d024fbad4362c4f7cbf8",
        family="gemma",
        parameter_size="9B",
        quantization_level="Q4_0",
        capabilities=["completion"],
        model_info={
            "general.architecture": "gemma",
            "general.file_type": 2,
            "general.parameter_count": 8_537_680_896,
            "general.quantization_version": 2,
            "gemma.attention.head_count": 16,
            "gemma.attention.head_count_kv": 16,
            "gemma.attention.key_length": 256,
            "gemma.attention.layer_norm_rms_epsilon": 1e-06,
            "gemma.attention.value_length": 256,
            "gemma.block_count": 28,
            "gemma.context_length": 8192,
            "gemma.embedding_length": 3072,
            "gemma.feed_forward_length": 24576,
            "tokenizer.ggml.model": "llama",
        },
    ),
    # llava:7b is LLaVA 1.6 on Mistral-7B-Instruct-v0.2 (huggingface.co/liuhaotian/
    # llava-v1.6-mistral-7b model card), Q4_0 with a CLIP projector. size, digest, details:
    # /api/tags in github.com/attogram/ollama-bash-lib demos/list.txt (commit 5f6f81a96768:
    # 4733363377, 8dd30f6b0cb1..., families ["llama", "clip"], "7B", "Q4_0"). No /api/show
    # dump of its model_info was found: the keys are DERIVED from Mistral-7B-Instruct-v0.2's
    # config.json (hidden 4096, 32 layers, 32 heads, 8 KV heads so head dim 128, intermediate
    # 14336, vocab 32000, rope_theta 1e6, 32768 positions), and general.parameter_count is
    # those weights counted (7,241,732,096, as for any 32000-vocab Mistral 7B). Loaded:
    # /api/ps there (commit 097a18f35edd, Ollama 0.10.0-rc0): 6182481920 bytes at 4096, GPU.
    "llava:7b": ModelInfo(
        "llava:7b",
        size=4_733_363_377,
        digest="8dd30f6b0cb19f555f2c7a7ebda861449ea2cc76bf1f44e262931f45fc81d081",
        family="llama",
        families=["llama", "clip"],
        parameter_size="7B",
        quantization_level="Q4_0",
        capabilities=["completion", "vision"],
        loaded_size=6_182_481_920,
        loaded_context_length=4096,
        model_info={
            "general.architecture": "llama",
            "general.file_type": 2,
            "general.parameter_count": 7_241_732_096,
            "general.quantization_version": 2,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.attention.layer_norm_rms_epsilon": 1e-05,
            "llama.block_count": 32,
            "llama.context_length": 32768,
            "llama.embedding_length": 4096,
            "llama.feed_forward_length": 14336,
            "llama.rope.dimension_count": 128,
            "llama.rope.freq_base": 1000000,
            "tokenizer.ggml.model": "llama",
        },
    ),
    # nomic-embed-text:latest (nomic-embed-text v1.5, F16). model_info and details: the raw
    # /api/show fixture of nomic-embed-text:latest in github.com/padiazg/ollama-tools
    # models/ollama/model_test.go (136,727,040 parameters, 12 blocks, 2048 context, 768
    # embedding, 3072 FFN, 12 heads, "137M", "F16"). size and digest: /api/tags dumps of
    # nomic-embed-text:latest in public repositories (274302450, 0a109f422b47...; `ollama
    # list` rows print "0a109f422b47  274 MB", e.g. muquit/privategpt
    # markdowns/install_ollama.md). An embedding model: ["embedding"].
    "nomic-embed-text:latest": ModelInfo(
        "nomic-embed-text:latest",
        size=274_302_450,
        digest="0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        family="nomic-bert",
        parameter_size="137M",
        quantization_level="F16",
        template="{{ .Prompt }}",
        capabilities=["embedding"],
        model_info={
            "general.architecture": "nomic-bert",
            "general.file_type": 1,
            "general.parameter_count": 136_727_040,
            "nomic-bert.attention.causal": False,
            "nomic-bert.attention.head_count": 12,
            "nomic-bert.attention.layer_norm_epsilon": 1e-12,
            "nomic-bert.block_count": 12,
            "nomic-bert.context_length": 2048,
            "nomic-bert.embedding_length": 768,
            "nomic-bert.feed_forward_length": 3072,
            "nomic-bert.pooling_type": 1,
            "nomic-bert.rope.freq_base": 1000,
            "tokenizer.ggml.bos_token_id": 101,
            "tokenizer.ggml.cls_token_id": 101,
            "tokenizer.ggml.eos_token_id": 102,
            "tokenizer.ggml.mask_token_id": 103,
            "tokenizer.ggml.model": "bert",
            "tokenizer.ggml.padding_token_id": 0,
            "tokenizer.ggml.seperator_token_id": 102,
            "tokenizer.ggml.token_type_count": 2,
            "tokenizer.ggml.unknown_token_id": 100,
        },
    ),
    # llama3.1:8b (Q4_K_M, 128K context, tools). model_info and details: the raw /api/show
    # fixture of llama3.1 in github.com/padiazg/ollama-tools models/ollama/model_test.go
    # (8,030,261,312 parameters: llama3's plus the 64-entry rope_freqs tensor; 131072
    # context; "8.0B", "Q4_K_M"). size and digest: /api/tags dumps of llama3.1:8b in public
    # repositories (4920753328, 46e0c10c039e...). Its template handles .Tools:
    # ["completion", "tools"].
    "llama3.1:8b": ModelInfo(
        "llama3.1:8b",
        size=4_920_753_328,
        digest="46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
        family="llama",
        parameter_size="8.0B",
        quantization_level="Q4_K_M",
        capabilities=["completion", "tools"],
        model_info={
            "general.architecture": "llama",
            "general.basename": "Meta-Llama-3.1",
            "general.file_type": 15,
            "general.finetune": "Instruct",
            "general.languages": ["en", "de", "fr", "it", "pt", "hi", "es", "th"],
            "general.license": "llama3.1",
            "general.parameter_count": 8_030_261_312,
            "general.quantization_version": 2,
            "general.size_label": "8B",
            "general.tags": ["facebook", "meta", "pytorch", "llama", "llama-3", "text-generation"],
            "general.type": "model",
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.attention.layer_norm_rms_epsilon": 1e-05,
            "llama.block_count": 32,
            "llama.context_length": 131072,
            "llama.embedding_length": 4096,
            "llama.feed_forward_length": 14336,
            "llama.rope.dimension_count": 128,
            "llama.rope.freq_base": 500000,
            "llama.vocab_size": 128256,
            "tokenizer.ggml.bos_token_id": 128000,
            "tokenizer.ggml.eos_token_id": 128009,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "llama-bpe",
        },
    ),
    # qwen3:8b (Qwen3 8B, Q4_K_M, thinking and tools). model_info, details, capabilities:
    # the /api/show of qwen3:8b in github.com/attogram/ollama-bash-lib demos/show.md (commit
    # 096bccb8dc89, Ollama 0.11.0): 8,190,735,360 parameters, 36 blocks, 40960 context, 4096
    # embedding, 12288 FFN, 32 heads, 8 KV heads, key/value length 128, rope 1e6, tokenizer
    # of 151936 tokens (github.com/ollama/ollama/issues/10476 shows those tokenizer keys; no
    # vocab_size key), capabilities ["completion", "tools", "thinking"]. size and digest:
    # that repo's demos/list.txt (commit a0f8ed5f553a: 5225388164, 500a1f067a9f...). Loaded:
    # /api/ps there (commit 096bccb8dc89, Ollama 0.11.0): 6499533824 bytes at 4096, GPU.
    "qwen3:8b": ModelInfo(
        "qwen3:8b",
        size=5_225_388_164,
        digest="500a1f067a9f782620b40bee6f7b0c89e17ae61f686b92c24933e4ca4b2b8b41",
        family="qwen3",
        parameter_size="8.2B",
        quantization_level="Q4_K_M",
        capabilities=["completion", "tools", "thinking"],
        loaded_size=6_499_533_824,
        loaded_context_length=4096,
        model_info={
            "general.architecture": "qwen3",
            "general.basename": "Qwen3",
            "general.file_type": 15,
            "general.license": "apache-2.0",
            "general.parameter_count": 8_190_735_360,
            "general.quantization_version": 2,
            "general.size_label": "8B",
            "general.type": "model",
            "qwen3.attention.head_count": 32,
            "qwen3.attention.head_count_kv": 8,
            "qwen3.attention.key_length": 128,
            "qwen3.attention.layer_norm_rms_epsilon": 1e-06,
            "qwen3.attention.value_length": 128,
            "qwen3.block_count": 36,
            "qwen3.context_length": 40960,
            "qwen3.embedding_length": 4096,
            "qwen3.feed_forward_length": 12288,
            "qwen3.rope.freq_base": 1000000,
            "tokenizer.ggml.add_bos_token": False,
            "tokenizer.ggml.bos_token_id": 151643,
            "tokenizer.ggml.eos_token_id": 151645,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.padding_token_id": 151643,
            "tokenizer.ggml.pre": "qwen2",
        },
    ),
}


def real_model(name: str) -> ModelInfo:
    """A fresh copy of a :data:`REAL_MODELS` entry (``KeyError`` for one it lacks)."""
    base = REAL_MODELS[_with_tag(name)]
    return dataclasses.replace(
        base,
        capabilities=list(base.capabilities),
        families=list(base.families),
        model_info=copy.deepcopy(base.model_info),
    )


@dataclass
class Reply:
    """One scripted answer for the next /api/chat or /api/generate request."""

    tokens: list[str]
    thinking: list[str] = field(default_factory=list)
    fault: str | None = None  # None | error | cut | hang | garbage | truncated | http500
    fault_after: int = 0
    error_message: str = "something went wrong"
    done_reason: str = "stop"
    prompt_eval_count: int | None = None
    first_token_delay: float = 0.0
    #: Tool calls sent after the tokens (chat only): ``{"name", "arguments"}`` dicts.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    """A threading HTTP server with a listen backlog like a real server's.

    Ollama (Go's net/http) listens with SOMAXCONN; socketserver's default backlog of 5
    drops SYNs when hundreds of clients connect at once, adding seconds of TCP
    retransmits that would be the stub's, not the client's.
    """

    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.open_connections.discard(request)


class _ClientGone(Exception):
    """The client closed the connection mid-response."""


class FakeOllama:
    """An Ollama-protocol server on 127.0.0.1 (a free port by default)."""

    def __init__(
        self,
        models: Iterable[ModelInfo | str] = ("llama3:latest",),
        *,
        token_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "0.12.0",
        pullable: Iterable[str] = (),
    ) -> None:
        self.models: dict[str, ModelInfo] = {}
        for m in models:
            self.add_model(m)
        self.token_delay = token_delay
        self.version = version
        self.pullable = {_with_tag(p) for p in pullable}
        #: Blobs uploaded (``POST /api/blobs/:digest``): digest -> bytes.
        self.blobs: dict[str, bytes] = {}
        #: Models pushed (``POST /api/push``), in order.
        self.pushed: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.cancelled: list[float] = []
        self.loaded: dict[str, float] = {}
        #: Chat/generate answers in progress now, and the most there ever were at once.
        self.in_flight = 0
        self.max_in_flight = 0
        self.hang_release = threading.Event()
        self.default_reply: Callable[[str, dict[str, Any]], Reply] = self._echo
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._server = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT``, an ``OLLAMA_HOST`` value."""
        return f"{self._server.server_address[0]}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host_port}"

    def start(self) -> FakeOllama:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release any hanging request."""
        self.hang_release.set()
        self._server.shutdown()
        self._server.server_close()

    def kill(self) -> None:
        """Stop as a dying server does: the listener closed, every open connection cut."""
        self.stop()
        with self._server.connections_lock:
            connections = list(self._server.open_connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting -----------------------------------------------------------
    def queue(self, *replies: Reply | str) -> None:
        """Answer the next requests with these replies, in order."""
        with self._lock:
            self._queue.extend(Reply(split_tokens(r)) if isinstance(r, str) else r for r in replies)

    def add_model(self, model: ModelInfo | str) -> None:
        """Install a model."""
        info = model if isinstance(model, ModelInfo) else ModelInfo(model)
        self.models[info.name] = info

    def remove_model(self, name: str) -> None:
        """Uninstall a model."""
        self.models.pop(_with_tag(name), None)

    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the /api/chat requests so far."""
        return [r.body for r in self.requests if r.path == "/api/chat"]

    def _next_reply(self, kind: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        return self.default_reply(kind, body)

    @staticmethod
    def _echo(kind: str, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or []
        if kind == "chat":
            users = [m for m in messages if m.get("role") == "user"]
            text = users[-1].get("content", "") if users else ""
        else:
            text = body.get("prompt", "")
        last = messages[-1] if kind == "chat" and messages else {}
        if body.get("tools") and last.get("role") == "user":
            from ollang.chains.fake import choose_tool, tool_arguments

            tool = choose_tool(body["tools"], text)
            if tool is not None:
                call = {"name": tool["function"]["name"], "arguments": tool_arguments(tool, text)}
                return Reply([], tool_calls=[call])
        if body.get("format"):
            from ollang.chains.fake import example_json

            schema = body["format"] if isinstance(body["format"], dict) else None
            return Reply(split_tokens(json.dumps(example_json(schema, text), ensure_ascii=False)))
        if last.get("role") == "tool":
            text = last.get("content", "")
        return Reply(split_tokens(f"echo: {text}"))

    @staticmethod
    def _wire_tool_calls(reply: Reply) -> list[dict[str, Any]]:
        """A reply's tool calls as Ollama sends them."""
        calls = []
        for index, call in enumerate(reply.tool_calls):
            function = call.get("function") or call
            calls.append(
                {
                    "id": call.get("id") or f"call_{index}",
                    "function": {
                        "index": index,
                        "name": function["name"],
                        "arguments": function.get("arguments") or {},
                    },
                }
            )
        return calls

    # -- HTTP ------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Without TCP_NODELAY the first chunk of every stream waits ~40 ms for a
            # delayed ACK, which would dominate every time-to-first-token measured here.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                fake._dispatch(self, "GET")

            def do_HEAD(self) -> None:
                fake._dispatch(self, "HEAD")

            def do_POST(self) -> None:
                fake._dispatch(self, "POST")

            def do_DELETE(self) -> None:
                fake._dispatch(self, "DELETE")

        return Handler

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raw = _read_body(h)
        if h.path.startswith("/api/blobs/"):
            return self._blob(h, method, raw)
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        path = h.path.split("?", 1)[0]
        self.requests.append(RecordedRequest(method, path, body, dict(h.headers.items())))
        try:
            if bad_json:
                return self._json(h, 400, {"error": "invalid character in request body"})
            route = {
                ("GET", "/"): self._root,
                ("HEAD", "/"): self._root,
                ("GET", "/api/version"): lambda h, b: self._json(h, 200, {"version": self.version}),
                ("GET", "/api/tags"): self._tags,
                ("POST", "/api/show"): self._show,
                ("POST", "/api/chat"): lambda h, b: self._counted(h, b, "chat"),
                ("POST", "/api/generate"): lambda h, b: self._counted(h, b, "generate"),
                ("POST", "/api/pull"): self._pull,
                ("DELETE", "/api/delete"): self._delete,
                ("POST", "/api/copy"): self._copy,
                ("GET", "/api/ps"): self._ps,
                ("POST", "/api/embed"): self._embed,
                ("POST", "/api/embeddings"): self._embeddings,
                ("POST", "/api/create"): self._create,
                ("POST", "/api/push"): self._push,
            }.get((method, path))
            if route is None:
                return self._json(h, 404, {"error": "not found"})
            route(h, body if isinstance(body, dict) else {})
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            self.cancelled.append(time.monotonic())
            h.close_connection = True

    # -- responses -----------------------------------------------------------
    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        if payload is not None:
            h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _root(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        data = b"Ollama is running"
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _tags(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        self._json(h, 200, {"models": [m.tag_entry() for m in self.models.values()]})

    def _model(self, body: dict[str, Any]) -> ModelInfo | None:
        name = body.get("model") or body.get("name") or ""
        return self.models.get(_with_tag(name)) if name else None

    def _show(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        info = self._model(body)
        if info is None:
            name = body.get("model") or body.get("name")
            return self._json(h, 404, {"error": f"model '{name}' not found"})
        self._json(
            h,
            200,
            {
                "modelfile": f"FROM {info.name}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": info.template,
                "details": info.details(),
                "model_info": dict(info.model_info),
                "capabilities": info.capabilities,
                "modified_at": info.modified_at,
            },
        )

    def _ps(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        expires = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
        models = [
            {
                "name": m.name,
                "model": m.name,
                "size": m.loaded_size or m.size,
                "size_vram": m.size_vram,
                "digest": m.digest,
                "expires_at": expires,
                "details": m.details(),
                "context_length": m.loaded_context_length or m.context_length,
            }
            for name, m in self.models.items()
            if name in self.loaded
        ]
        self._json(h, 200, {"models": models})

    def _embedder(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> ModelInfo | None:
        """The model of an embeddings request, or ``None`` with Ollama's error sent: 404
        when missing, 400 when it has no ``embedding`` capability."""
        info = self._model(body)
        name = body.get("model")
        if info is None:
            self._json(h, 404, {"error": f'model "{name}" not found, try pulling it first'})
        elif "embedding" not in info.capabilities:
            self._json(h, 400, {"error": f'"{name}" does not support embeddings'})
            return None
        return info

    @staticmethod
    def _vector(text: Any) -> list[float]:
        return [byte / 255 for byte in hashlib.sha256(str(text).encode()).digest()[:4]]

    def _embed(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """``/api/embed``: a deterministic 4-number vector per input (from its digest)."""
        info = self._embedder(h, body)
        if info is None:
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        vectors = [self._vector(text) for text in texts]
        count = sum(max(1, len(str(text)) // 4) for text in texts)
        answer = {"model": info.name, "embeddings": vectors, "prompt_eval_count": count}
        self._json(h, 200, {**answer, "total_duration": 1_000_000, "load_duration": 0})

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """``/api/embeddings`` (the older call): one vector for ``prompt``, empty for none."""
        if self._embedder(h, body) is None:
            return
        prompt = body.get("prompt")
        self._json(h, 200, {"embedding": self._vector(prompt) if prompt else []})

    def _blob(self, h: BaseHTTPRequestHandler, method: str, raw: bytes) -> None:
        """``HEAD /api/blobs/:digest`` (200 if held, else 404) and ``POST`` (store the body
        when its sha256 is the digest: 201, as Ollama answers; else 400)."""
        digest = h.path.split("?", 1)[0][len("/api/blobs/") :]
        self.requests.append(RecordedRequest(method, "/api/blobs/" + digest, None, dict(h.headers)))
        if method == "HEAD":
            return self._json(h, 200 if digest in self.blobs else 404, None)
        if method != "POST":
            return self._json(h, 405, {"error": "method not allowed"})
        if digest != "sha256:" + hashlib.sha256(raw).hexdigest():
            return self._json(h, 400, {"error": "digest mismatch"})
        self.blobs[digest] = raw
        self._json(h, 201, None)

    def _status_lines(
        self, h: BaseHTTPRequestHandler, body: dict[str, Any], lines: list[dict[str, Any]]
    ) -> None:
        """Progress lines as a stream, or with ``"stream": false`` the last one alone."""
        if body.get("stream") is False:
            last = lines[-1]
            return self._json(h, 500 if "error" in last else 200, last)
        self._start_stream(h)
        for line in lines:
            if self.token_delay:
                time.sleep(self.token_delay)
            self._chunk(h, self._line(line))
        self._end_stream(h)

    def _create(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """``/api/create``: ``from`` an installed model and/or ``files`` uploaded as blobs."""
        name = str(body.get("model") or "")
        files = body.get("files") or {}
        source = body.get("from")
        if not name:
            return self._json(h, 400, {"error": "model is required"})
        if not source and not files:
            return self._json(h, 400, {"error": "neither 'from' or 'files' was specified"})
        missing = [d for d in files.values() if d not in self.blobs]
        if missing:
            return self._json(h, 400, {"error": f"blob {missing[0]} not found"})
        base = self.models.get(_with_tag(str(source))) if source else None
        if source and base is None:
            error = {"error": f'model "{source}" not found, try pulling it first'}
            return self._status_lines(h, body, [{"status": "parsing modelfile"}, error])
        lines: list[dict[str, Any]] = [{"status": "parsing modelfile"}]
        lines += [{"status": f"using existing layer {d}"} for d in files.values()]
        lines += [{"status": "writing manifest"}, {"status": "success"}]
        info = dataclasses.replace(base, name=name, digest="") if base else ModelInfo(name)
        if body.get("template"):
            info.template = str(body["template"])
        self.add_model(info)
        self._status_lines(h, body, lines)

    def _push(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """``/api/push``: progress per layer; an unknown model is an in-stream error."""
        info = self._model(body)
        if info is None:
            error = {"error": f"open manifest of {body.get('model')}: no such file or directory"}
            return self._status_lines(h, body, [{"status": "retrieving manifest"}, error])
        lines: list[dict[str, Any]] = [{"status": "retrieving manifest"}]
        total = 4096
        for step in (0, total // 2, total):
            lines.append(
                {
                    "status": "pushing " + info.digest[:12],
                    "digest": "sha256:" + info.digest,
                    "total": total,
                    "completed": step,
                }
            )
        lines += [{"status": "pushing manifest"}, {"status": "success"}]
        self.pushed.append(info.name)
        self._status_lines(h, body, lines)

    def _copy(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        source = self.models.get(_with_tag(str(body.get("source", ""))))
        if source is None or not body.get("destination"):
            return self._json(h, 404, {"error": f"model '{body.get('source')}' not found"})
        self.add_model(dataclasses.replace(source, name=str(body["destination"]), digest=""))
        self._json(h, 200, None)

    def _delete(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        info = self._model(body)
        if info is None:
            return self._json(h, 404, {"error": f"model '{body.get('model')}' not found"})
        self.models.pop(info.name)
        self._json(h, 200, None)

    # -- streaming -----------------------------------------------------------
    @staticmethod
    def _start_stream(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    @staticmethod
    def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
        try:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError) as err:
            raise _ClientGone from err

    def _end_stream(self, h: BaseHTTPRequestHandler) -> None:
        self._chunk_raw(h, b"0\r\n\r\n")

    @staticmethod
    def _chunk_raw(h: BaseHTTPRequestHandler, data: bytes) -> None:
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError) as err:
            raise _ClientGone from err

    @staticmethod
    def _line(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    def _counted(self, h: BaseHTTPRequestHandler, body: dict[str, Any], kind: str) -> None:
        """:meth:`_generate`, counting the answers in progress (``in_flight``, ``max_in_flight``)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._generate(h, body, kind)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _generate(self, h: BaseHTTPRequestHandler, body: dict[str, Any], kind: str) -> None:
        name = body.get("model")
        if not name:
            return self._json(h, 400, {"error": "model is required"})
        info = self._model(body)
        if info is None:
            return self._json(h, 404, {"error": f'model "{name}" not found, try pulling it first'})
        if body.get("keep_alive") in (0, "0", "0s") and not (
            body.get("prompt") or body.get("messages")
        ):
            # What `ollama stop` sends: unload the model now.
            self.loaded.pop(info.name, None)
            return self._json(
                h,
                200,
                {
                    "model": info.name,
                    "created_at": _now(),
                    "response": "",
                    "done": True,
                    "done_reason": "unload",
                },
            )
        self.loaded[info.name] = time.time()
        reply = self._next_reply(kind, body)
        if reply.fault == "http500":
            return self._json(h, 500, {"error": reply.error_message})
        if reply.fault == "hang":
            while not self.hang_release.wait(0.05):
                if _peer_closed(h.connection):
                    raise _ClientGone
            return None
        think = bool(body.get("think"))
        thinking = reply.thinking if think else []
        options = body.get("options") or {}
        prompt_count = reply.prompt_eval_count
        if prompt_count is None:
            if kind == "chat":
                chars = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [])
            else:
                chars = len(str(body.get("prompt", ""))) + len(str(body.get("system", "")))
            prompt_count = max(1, chars // 4)
            if isinstance(options.get("num_ctx"), int):
                prompt_count = min(prompt_count, options["num_ctx"])
        model_name = name

        def piece(text: str, field_name: str) -> dict[str, Any]:
            base = {"model": model_name, "created_at": _now(), "done": False}
            if kind == "chat":
                base["message"] = {"role": "assistant", "content": "", field_name: text}
                if field_name == "content":
                    base["message"] = {"role": "assistant", "content": text}
            else:
                base["response"] = "" if field_name == "thinking" else text
                if field_name == "thinking":
                    base["thinking"] = text
            return base

        started = time.monotonic_ns()
        pieces = [piece(t, "thinking") for t in thinking] + [
            piece(t, "content") for t in reply.tokens
        ]
        tool_calls = self._wire_tool_calls(reply) if kind == "chat" else []
        if tool_calls:
            # Ollama sends a model's tool calls whole, in one chunk after the text.
            calls = piece("", "content")
            calls["message"]["tool_calls"] = tool_calls
            pieces.append(calls)
        fault_at = len(thinking) + reply.fault_after if reply.fault else None
        final = {
            "model": model_name,
            "created_at": _now(),
            "done": True,
            "done_reason": reply.done_reason,
            "total_duration": 0,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": 2_000_000,
            "eval_count": len(pieces),
            "eval_duration": 0,
        }
        if kind == "chat":
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
            final["context"] = [1, 2, 3]

        if body.get("stream") is False:
            if reply.first_token_delay:
                time.sleep(reply.first_token_delay)
            content = "".join(reply.tokens)
            elapsed = max(1_000_000, time.monotonic_ns() - started)
            final.update(total_duration=elapsed + 3_000_000, eval_duration=elapsed)
            if kind == "chat":
                final["message"] = {"role": "assistant", "content": content}
                if thinking:
                    final["message"]["thinking"] = "".join(thinking)
                if tool_calls:
                    final["message"]["tool_calls"] = tool_calls
            else:
                final["response"] = content
                if thinking:
                    final["thinking"] = "".join(thinking)
            return self._json(h, 200, final)

        self._start_stream(h)
        if reply.first_token_delay:
            time.sleep(reply.first_token_delay)
        delay = self.token_delay
        if delay == 0 and reply.fault is None:
            # As fast as possible: few large writes, so the client is the bottleneck.
            buffer = bytearray()
            for p in pieces:
                buffer += self._line(p)
                if len(buffer) >= 65536:
                    self._chunk(h, bytes(buffer))
                    buffer.clear()
            elapsed = max(1_000_000, time.monotonic_ns() - started)
            final.update(total_duration=elapsed + 3_000_000, eval_duration=elapsed)
            buffer += self._line(final)
            self._chunk(h, bytes(buffer))
            return self._end_stream(h)
        for index, p in enumerate(pieces):
            if fault_at is not None and index >= fault_at:
                break
            if delay and index:
                time.sleep(delay)
            self._chunk(h, self._line(p))
        if reply.fault == "error":
            self._chunk(h, self._line({"error": reply.error_message}))
            return self._end_stream(h)
        if reply.fault == "garbage":
            self._chunk(h, b"<html>oops</html>\n")
            return self._end_stream(h)
        if reply.fault == "truncated":
            # Half an NDJSON line, then a clean end of the chunked body.
            self._chunk(h, self._line(pieces[min(fault_at, len(pieces) - 1)])[:17])
            return self._end_stream(h)
        if reply.fault == "cut":
            # Close without the terminating zero-length chunk.
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return None
        elapsed = max(1_000_000, time.monotonic_ns() - started)
        final.update(total_duration=elapsed + 3_000_000, eval_duration=elapsed)
        self._chunk(h, self._line(final))
        self._end_stream(h)

    def _pull(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        name = _with_tag(body.get("model") or body.get("name") or "")
        known = name in self.pullable or name in self.models
        if body.get("stream") is False:
            if not known:
                return self._json(h, 500, {"error": "pull model manifest: file does not exist"})
            self.add_model(self.models.get(name) or ModelInfo(name))
            return self._json(h, 200, {"status": "success"})
        self._start_stream(h)
        self._chunk(h, self._line({"status": "pulling manifest"}))
        if not known:
            self._chunk(h, self._line({"error": "pull model manifest: file does not exist"}))
            return self._end_stream(h)
        for layer, total in ((1, 4_000_000), (2, 12_000)):
            digest = "sha256:" + hashlib.sha256(f"{name}{layer}".encode()).hexdigest()
            status = f"pulling {digest[7:19]}"
            self._chunk(h, self._line({"status": status, "digest": digest, "total": total}))
            for step in (1, 2, 3, 4):
                if self.token_delay:
                    time.sleep(self.token_delay)
                line = {
                    "status": status,
                    "digest": digest,
                    "total": total,
                    "completed": total * step // 4,
                }
                self._chunk(h, self._line(line))
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            self._chunk(h, self._line({"status": status}))
        self.add_model(self.models.get(name) or ModelInfo(name))
        self._end_stream(h)


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    """A request's body, by ``Content-Length`` or chunked."""
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        data = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(data)
            data += h.rfile.read(size)
            h.rfile.readline()
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the client hung up (a readable socket with no data)."""
    import select

    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def iter_tokens(count: int) -> Iterator[str]:
    """``count`` benchmark tokens."""
    for i in range(count):
        yield f"tok{i} "


def main() -> None:
    """Run a stand-alone fake Ollama (for benchmarks and manual tries)."""
    parser = argparse.ArgumentParser(description="A local server speaking Ollama's wire format.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="tokens per second (0: as fast as possible)"
    )
    parser.add_argument(
        "--tokens", type=int, default=0, help="answer with N tokens instead of an echo"
    )
    parser.add_argument("--model", action="append", default=[], help="installed model (repeatable)")
    args = parser.parse_args()
    server = FakeOllama(
        models=args.model or ["llama3:latest"],
        host=args.host,
        port=args.port,
        token_delay=1.0 / args.rate if args.rate else 0.0,
    )
    if args.tokens:
        server.default_reply = lambda kind, body: Reply(list(iter_tokens(args.tokens)))
    print(f"fake Ollama on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()


if __name__ == "__main__":
    main()
