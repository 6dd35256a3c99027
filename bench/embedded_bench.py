"""Embedded backend: tokens/s and time to first token, full chain vs llama-cpp-python.

Both sides use the same loaded model (the process-wide ``Llama`` the embedded
backend shares), the same messages and the same sampling settings; runs are
interleaved so that neither side gets a warmer cache. The chain side is the
whole product path: SQLite memory, prompt template, model wrapper, text output,
and the reply flushed to the store as it streams.

Run: ``python bench/embedded_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYSTEM = "You are a helpful assistant."
PROMPT = "Write a short story about a lighthouse keeper and a storm."
SETTINGS = {"temperature": 0.0, "top_p": 0.95, "top_k": 40, "repeat_penalty": 1.1, "seed": 7}


def _direct(llama: Any, max_tokens: int) -> tuple[float, float, int]:
    """(ttft_s, tokens_per_s, tokens) calling llama-cpp-python directly."""
    started = time.perf_counter()
    first = None
    tokens = 0
    for part in llama.create_chat_completion(
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        stream=True,
        max_tokens=max_tokens,
        **SETTINGS,
    ):
        if part["choices"][0].get("delta", {}).get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter()
    ended = time.perf_counter()
    assert first is not None
    return first - started, (tokens - 1) / (ended - first), tokens


def _chain(chain: Any, session: str) -> tuple[float, float, int]:
    """(ttft_s, tokens_per_s, tokens) through the full chat chain."""
    started = time.perf_counter()
    first = None
    tokens = 0
    for _piece in chain.stream(PROMPT, {"configurable": {"session_id": session}}):
        tokens += 1
        if first is None:
            first = time.perf_counter()
    ended = time.perf_counter()
    assert first is not None
    return first - started, (tokens - 1) / (ended - first), tokens


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure and return result rows (see bench/_util.py for the row contract)."""
    from ollang.chains import build_chat_chain
    from ollang.embedded.model import _load, make_embedded_chat_model, resolve_embedded_model
    from ollang.memory import SQLiteChatStore

    runs, max_tokens = (3, 64) if quick else (7, 160)
    model = make_embedded_chat_model(num_predict=max_tokens, num_ctx=4096, **SETTINGS)
    llama, _lock = _load(str(resolve_embedded_model(None).path), 4096)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteChatStore(Path(tmp) / "bench.db")
        chain = build_chat_chain(model, store=store, system=SYSTEM)
        _direct(llama, 8)  # warm-up: load pages, build the chat template
        _chain(chain, "warm-up")
        direct, through = [], []
        for i in range(runs):
            direct.append(_direct(llama, max_tokens))
            through.append(_chain(chain, f"run-{i}"))  # fresh session: same messages as direct
        store.close()
    d_tps = statistics.median(r[1] for r in direct)
    c_tps = statistics.median(r[1] for r in through)
    d_ttft = statistics.median(r[0] for r in direct)
    c_ttft = statistics.median(r[0] for r in through)
    return [
        {
            "group": "embedded",
            "name": "tokens/s through the full chain",
            "value": round(c_tps, 1),
            "unit": "tokens/s",
            "anchor": "llama-cpp-python called directly",
            "anchor_value": round(d_tps, 1),
            "ratio": round(c_tps / d_tps, 3),
            "goal": ">= 0.95",
            "passed": c_tps / d_tps >= 0.95,
            "runs": runs,
            "tokens": [r[2] for r in through],
        },
        {
            "group": "embedded",
            "name": "time to first token through the full chain",
            "value": round(c_ttft * 1000, 1),
            "unit": "ms",
            "anchor": "llama-cpp-python called directly",
            "anchor_value": round(d_ttft * 1000, 1),
            "ratio": round(c_ttft / d_ttft, 3),
            "goal": "reported",
            "passed": True,
            "runs": runs,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    rows = run(parser.parse_args().quick)
    print("| what | ollang | anchor | ratio | goal |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['value']} {r['unit']} | {r['anchor_value']} {r['unit']} "
            f"({r['anchor']}) | {r['ratio']} | {r['goal']} |"
        )


if __name__ == "__main__":
    main()
