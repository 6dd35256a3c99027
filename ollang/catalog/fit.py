"""Will this model fit this machine? The memory a model needs at a context size, and where it goes.

Three parts make the estimate, as llama.cpp allocates them when it loads a model:

* the weights (the caller passes their size: the GGUF file or what Ollama reports);
* the KV cache, exact: K and V for every layer and every position of the context;
* the compute buffer: the scratch memory of llama.cpp's graph for one batch of tokens.

:func:`fit` then places those bytes on a :class:`Machine` the way Ollama's scheduler does
(whole on the GPUs, else a layer split between GPUs and RAM, else all in RAM) and says
how large a context would still run. ``bench/fit_bench.py`` checks the estimate
against what llama.cpp reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ollang.errors import InvalidInputError, OllangError

__all__ = [
    "DEFAULT_CTX",
    "GPU_OVERHEAD_BYTES",
    "KV_CACHE_TYPES",
    "Architecture",
    "Estimate",
    "Fit",
    "Machine",
    "estimate",
    "fit",
    "kv_cache_bytes",
]

#: The KV cache types Ollama offers (``OLLAMA_KV_CACHE_TYPE``).
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
#: Bytes per cached element: f16 is 2; q8_0 and q4_0 are ggml blocks of 32 elements taking
#: 34 and 18 bytes (a 2-byte scale, then 32 one-byte or 16 two-nibble values).
_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
#: The context :func:`fit` assumes when none is given: Ollama's default ``num_ctx``.
DEFAULT_CTX = 4096
#: What Ollama's scheduler keeps free on each GPU beyond the model: ``cudaMinimumMemory``
#: (also ROCm's) in ollama/discover/gpu.go, 457 MiB, for the driver and CUDA context.
GPU_OVERHEAD_BYTES = 457 * 2**20
#: The vocabulary assumed when the header does not say (Ollama's /api/show leaves out
#: ``tokenizer.ggml.tokens``): Llama 3's, near the large end of common vocabularies, so
#: the logits buffer errs on the large side.
_FALLBACK_VOCAB = 128_256
#: The step of the context sizes :attr:`Fit.max_ctx` tries.
_CTX_STEP = 256


@dataclass(frozen=True)
class Architecture:
    """What the estimate needs from a model's header (the GGUF keys Ollama's /api/show gives)."""

    arch: str
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    context_length: int
    vocab_size: int | None
    parameter_count: int | None

    @classmethod
    def from_model_info(cls, model_info: Mapping[str, Any]) -> Architecture:
        """Read ``model_info`` as /api/show returns it (or :func:`model_info_from_gguf`).

        Keys are ``general.architecture`` and ``<arch>.block_count``, ``<arch>.attention.*``
        and the like. Optional ones default as llama.cpp defaults them: ``head_count_kv``
        to ``head_count``, ``key_length`` and ``value_length`` to ``embedding_length /
        head_count``. A per-layer list (some models vary heads by layer) counts as its
        largest value.

        Raises:
            OllangError: the header lacks an essential key, or one is not a number.
        """
        arch = model_info.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise _header_error("general.architecture")

        def optional(key: str) -> int | None:
            value = model_info.get(f"{arch}.{key}")
            if isinstance(value, (list, tuple)):
                value = max(value, default=None)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise OllangError(
                    f"the model's header has {arch}.{key} = {value!r}, not a count",
                    "the GGUF file may be damaged; pull or convert it again",
                )
            return int(value)

        def required(key: str) -> int:
            value = optional(key)
            if not value:
                raise _header_error(f"{arch}.{key}" + (" (it is 0)" if value == 0 else ""))
            return value

        embedding = required("embedding_length")
        heads = required("attention.head_count")
        key_length = optional("attention.key_length") or embedding // heads
        vocab = optional("vocab_size")
        tokens = model_info.get("tokenizer.ggml.tokens")
        if vocab is None and isinstance(tokens, (list, tuple)):
            vocab = len(tokens)
        parameters = model_info.get("general.parameter_count")
        return cls(
            arch=arch,
            block_count=required("block_count"),
            embedding_length=embedding,
            head_count=heads,
            head_count_kv=optional("attention.head_count_kv") or heads,
            key_length=key_length,
            value_length=optional("attention.value_length") or key_length,
            context_length=required("context_length"),
            vocab_size=vocab or None,
            parameter_count=int(parameters) if isinstance(parameters, (int, float)) else None,
        )


def _header_error(key: str) -> OllangError:
    """The error for a model whose header lacks ``key``, which the estimate needs."""
    return OllangError(
        f"the model's header lacks {key}, which the memory estimate needs",
        "is it a llama.cpp model (GGUF)? `ollama show --verbose MODEL` lists its header",
    )


@dataclass(frozen=True)
class Estimate:
    """The bytes a model needs at one context size, in llama.cpp's three allocations."""

    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        """All three together: what the model needs when it runs on one device."""
        return self.weights_bytes + self.kv_cache_bytes + self.compute_bytes


def _check_kv_type(kv_cache_type: str) -> None:
    """Raise the usage error for a KV cache type llama.cpp (through Ollama) does not offer."""
    if kv_cache_type not in KV_CACHE_TYPES:
        raise InvalidInputError(
            f"unknown KV cache type {kv_cache_type!r}",
            "use one of " + ", ".join(KV_CACHE_TYPES) + " (as OLLAMA_KV_CACHE_TYPE)",
        )


def _check_ctx(ctx: int) -> None:
    """Raise the usage error for a context size that is not a positive number of tokens."""
    if ctx <= 0:
        raise InvalidInputError(
            f"context size {ctx} is not above zero", "give a number of tokens, e.g. 4096"
        )


def kv_cache_bytes(arch: Architecture, ctx: int, kv_cache_type: str = "f16") -> int:
    """The KV cache's size: K and V for ``ctx`` positions in every layer.

    Per layer and position: ``head_count_kv * key_length`` elements of K and
    ``head_count_kv * value_length`` of V, at :data:`KV_CACHE_TYPES`' element sizes.
    Exactly what llama.cpp reports as ``llama_kv_cache: size``.

    Raises:
        InvalidInputError: ``ctx`` is not positive, or ``kv_cache_type`` is unknown.
    """
    _check_ctx(ctx)
    _check_kv_type(kv_cache_type)
    elements = arch.block_count * ctx * arch.head_count_kv * (arch.key_length + arch.value_length)
    return math.ceil(elements * _BYTES_PER_ELEMENT[kv_cache_type])


def _compute_bytes(arch: Architecture, ctx: int, batch: int, flash_attention: bool) -> int:
    """llama.cpp's compute (graph) buffer for batches of ``batch`` tokens, plus its output buffer.

    The formula's origin is Ollama's graph estimate for llama (``GraphSize`` in
    ollama/fs/ggml/ggml.go): the larger of the attention step and the logits step, in
    f32 (4 bytes) per token of the batch. Its terms were then refitted to the ``CPU
    compute buffer size`` llama.cpp reports (bench/fit_bench.py: SmolLM2-135M and three
    synthetic shapes, exact to 0.5 % without flash attention, within 6 % with it):

    * logits step: the logits (``vocab`` wide), three ``embedding``-wide tensors (hidden
      state, norm, the output's input) and the output ids: ``4*b*(vocab + 3*embedding + 1)``;
    * attention step without flash attention: the ``ctx x b`` scores of every head and
      the mask (``ctx*(1 + head_count)``), Q and the attention's output (``head_count``
      heads), K and V (``head_count_kv`` heads), three hidden states:
      ``4*b*(1 + 3*embedding + (head_count + head_count_kv)*(key_length + value_length)
      + ctx*(1 + head_count))``;
    * with flash attention the scores are never stored: only an f16 mask (``2*b*ctx``)
      grows with the context, so the logits step is the larger for usual sizes.

    The batch is llama.cpp's ubatch, at most ``ctx``. The output buffer holds the logits
    of one token (``4*vocab``), allocated beside the graph.
    """
    b = min(batch, ctx)
    embedding = arch.embedding_length
    vocab = arch.vocab_size or _FALLBACK_VOCAB
    heads_width = (arch.head_count + arch.head_count_kv) * (arch.key_length + arch.value_length)
    logits = 4 * b * (vocab + 3 * embedding + 1)
    attention = 4 * b * (1 + 3 * embedding + heads_width)
    if flash_attention:
        attention += 2 * b * ctx
    else:
        attention += 4 * b * ctx * (1 + arch.head_count)
    return max(logits, attention) + 4 * vocab


def estimate(
    arch: Architecture,
    weights_bytes: int,
    ctx: int,
    kv_cache_type: str = "f16",
    batch: int = 512,
    *,
    flash_attention: bool | None = None,
) -> Estimate:
    """The memory ``arch`` with ``weights_bytes`` of weights needs at a context of ``ctx``.

    ``flash_attention`` ``None`` means: on for a quantised KV cache (llama.cpp needs it
    for a quantised V cache), off for f16 (the larger compute buffer, so the safe side).

    Raises:
        InvalidInputError: ``ctx`` is not positive, or ``kv_cache_type`` is unknown.
    """
    kv = kv_cache_bytes(arch, ctx, kv_cache_type)
    if flash_attention is None:
        flash_attention = kv_cache_type != "f16"
    compute = _compute_bytes(arch, ctx, max(batch, 1), flash_attention)
    return Estimate(weights_bytes=weights_bytes, kv_cache_bytes=kv, compute_bytes=compute)


@dataclass(frozen=True)
class Machine:
    """The memory a model may use: free RAM and free VRAM per GPU, in bytes."""

    ram_bytes: int
    #: Free memory of each GPU, in bytes.
    gpus: tuple[int, ...] = ()
    gpu_names: tuple[str, ...] = ()
    #: True when the user described the machine (``--gpu``/``--ram``) rather than detecting it.
    described: bool = False


RunsOn = Literal["gpu", "split", "cpu", "none"]


@dataclass(frozen=True)
class Fit:
    """Where a model would run on a machine at one context size, and the largest context that runs.

    ``gpu_bytes``/``cpu_bytes`` are what lands in VRAM and in RAM; for ``none`` both are
    0. Each device holding layers also holds a compute buffer (as in llama.cpp), so on
    two or more devices they add up to more than ``estimate.total_bytes``. ``max_ctx`` is the largest
    context (a multiple of 256, or the trained context) at which ``runs_on`` is not
    ``none``, 0 when not even 256 tokens fit. ``clamped_from`` is the asked context when
    it was above the model's trained ``context_length`` (then ``ctx`` is that length).
    """

    model: str
    ctx: int
    kv_cache_type: str
    estimate: Estimate
    gpu_bytes: int
    cpu_bytes: int
    gpu_percent: int
    runs_on: RunsOn
    max_ctx: int
    clamped_from: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The fit as a JSON object (what ``--json`` prints and the server answers)."""
        return {
            "model": self.model,
            "ctx": self.ctx,
            "kv_cache_type": self.kv_cache_type,
            "weights_bytes": self.estimate.weights_bytes,
            "kv_cache_bytes": self.estimate.kv_cache_bytes,
            "compute_bytes": self.estimate.compute_bytes,
            "total_bytes": self.estimate.total_bytes,
            "gpu_bytes": self.gpu_bytes,
            "cpu_bytes": self.cpu_bytes,
            "gpu_percent": self.gpu_percent,
            "runs_on": self.runs_on,
            "max_ctx": self.max_ctx,
        }

    def processor(self) -> str:
        """Where it runs as ``ollama ps`` prints it: ``100% GPU``, ``38%/62% CPU/GPU``, ..."""
        if self.runs_on == "gpu":
            return "100% GPU"
        if self.runs_on == "split":
            return f"{100 - self.gpu_percent}%/{self.gpu_percent}% CPU/GPU"
        if self.runs_on == "cpu":
            return "100% CPU"
        return "does not fit"


@dataclass(frozen=True)
class _Placement:
    gpu_bytes: int
    cpu_bytes: int
    runs_on: RunsOn


def _place(est: Estimate, arch: Architecture, machine: Machine) -> _Placement:
    """Place ``est`` on ``machine`` as Ollama's scheduler would, in spirit.

    Like ``EstimateGPULayers`` (ollama/llm/memory.go): each GPU keeps
    :data:`GPU_OVERHEAD_BYTES` free and, when it takes layers, a compute buffer; GPUs
    fill in order of free memory, one layer (its weights, ``weights / block_count``, and
    its share of the KV cache) at a time. All layers on GPUs: ``gpu``. Some: ``split``,
    when the rest plus a CPU compute buffer fit in RAM. None: ``cpu`` when the whole
    estimate fits in RAM, else ``none``. Simplified: the output layer counts as part of
    the average layer, and Ollama's separate partial-offload graph size is not modelled.
    """
    layers = arch.block_count
    layered = est.weights_bytes + est.kv_cache_bytes
    layer = max(math.ceil(layered / layers), 1)
    remaining = layers
    gpu_bytes = 0
    for free in sorted(machine.gpus, reverse=True):
        room = free - GPU_OVERHEAD_BYTES - est.compute_bytes
        count = min(remaining, max(room, 0) // layer)
        if count <= 0:
            continue
        gpu_bytes += layered * count // layers + est.compute_bytes
        remaining -= count
        if remaining == 0:
            return _Placement(gpu_bytes, 0, "gpu")
    if remaining < layers:
        cpu_bytes = layered * remaining // layers + est.compute_bytes
        if cpu_bytes <= machine.ram_bytes:
            return _Placement(gpu_bytes, cpu_bytes, "split")
    if est.total_bytes <= machine.ram_bytes:
        return _Placement(0, est.total_bytes, "cpu")
    return _Placement(0, 0, "none")


def _max_ctx(arch: Architecture, weights_bytes: int, machine: Machine, kv_cache_type: str) -> int:
    """The largest context (a multiple of 256, or the trained one) that runs; 0 if none does.

    Memory grows with the context, so whether a context runs is monotonic: a bisection.
    """
    candidates = list(range(_CTX_STEP, arch.context_length, _CTX_STEP))
    candidates.append(arch.context_length)

    def runs(ctx: int) -> bool:
        est = estimate(arch, weights_bytes, ctx, kv_cache_type)
        return _place(est, arch, machine).runs_on != "none"

    low, high = 0, len(candidates)  # candidates[:low] run, candidates[high:] do not
    while low < high:
        middle = (low + high) // 2
        if runs(candidates[middle]):
            low = middle + 1
        else:
            high = middle
    return candidates[low - 1] if low else 0


def fit(
    model: str,
    arch: Architecture,
    weights_bytes: int,
    machine: Machine,
    ctx: int | None = None,
    kv_cache_type: str = "f16",
) -> Fit:
    """Where ``model`` runs on ``machine`` at a context of ``ctx`` tokens.

    ``ctx`` ``None`` means Ollama's default (:data:`DEFAULT_CTX`, or the trained context
    when that is smaller); a context above the trained one is clamped to it, as Ollama
    does, and :attr:`Fit.clamped_from` keeps the asked one.

    Raises:
        InvalidInputError: ``ctx`` is not positive, or ``kv_cache_type`` is unknown.
    """
    _check_kv_type(kv_cache_type)
    asked = min(DEFAULT_CTX, arch.context_length) if ctx is None else ctx
    _check_ctx(asked)
    used = min(asked, arch.context_length)
    est = estimate(arch, weights_bytes, used, kv_cache_type)
    placed = _place(est, arch, machine)
    placed_total = placed.gpu_bytes + placed.cpu_bytes
    percent = round(100 * placed.gpu_bytes / placed_total) if placed_total else 0
    if placed.runs_on == "split":  # never "0%" or "100%" GPU for a model on both sides
        percent = min(max(percent, 1), 99)
    return Fit(
        model=model,
        ctx=used,
        kv_cache_type=kv_cache_type,
        estimate=est,
        gpu_bytes=placed.gpu_bytes,
        cpu_bytes=placed.cpu_bytes,
        gpu_percent=percent,
        runs_on=placed.runs_on,
        max_ctx=_max_ctx(arch, weights_bytes, machine, kv_cache_type),
        clamped_from=asked if asked > used else None,
    )
