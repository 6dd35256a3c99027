"""Streaming throughput: the full chat chain vs bare ``ChatOllama.stream()`` vs the raw client.

One fake Ollama (``tests/fake_ollama.py`` in its own process, writing as fast as
the client reads) answers every request with N tiny chunks (``"tok123 "``; 20,000,
quick: 5,000). Three clients read it, interleaved run by run so none gets a
warmer machine:

* **raw**: ``ollama.Client().chat(stream=True)``;
* **bare**: langchain-ollama's ``ChatOllama(...).stream(messages)``;
* **chain**: ``build_chat_chain(make_chat_model(...), store=SQLiteChatStore(db)).stream(text)``,
  i.e. ollang's whole path: input checks, the user's message stored first, the
  history window read and fitted, prompt, model, text out, the reply flushed to
  SQLite once a second and finalised at the end. A fresh session per run.

Figure: answer chunks per second, from the call to the end of the stream; the
median of several runs each. Each run starts after ``gc.collect()`` (garbage is
still collected during the run, as in real use; see the comment in ``measure``).

Run alone: ``python bench/stream_bench.py [--quick] [--profile]`` (``--profile``
prints a pyinstrument profile of one chain run).
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _util import Row, ensure_import_paths, fake_ollama, log, median, row

ensure_import_paths()

MODEL = "bench"
PROMPT = "Count for me, please."
GOAL = 0.8  # the chain keeps at least this share of bare ChatOllama's throughput

Reader = Callable[[int], int]  # run number -> answer chunks received


def raw_reader(url: str) -> Reader:
    """The official ``ollama`` client, streaming."""
    import ollama

    client = ollama.Client(host=url)

    def read(_run: int) -> int:
        received = 0
        for part in client.chat(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            if part.message.content:
                received += 1
        return received

    return read


def bare_reader(url: str) -> Reader:
    """langchain-ollama's ``ChatOllama.stream()``, nothing around it."""
    from langchain_core.messages import HumanMessage
    from langchain_ollama import ChatOllama

    model = ChatOllama(model=MODEL, base_url=url)

    def read(_run: int) -> int:
        received = 0
        for chunk in model.stream([HumanMessage(PROMPT)]):
            if chunk.content:
                received += 1
        return received

    return read


def chain_reader(url: str, db: Path) -> Reader:
    """ollang's chat chain with the SQLite store, as the CLI and server use it."""
    from ollang.chains import build_chat_chain, make_chat_model
    from ollang.memory import SQLiteChatStore

    chain = build_chat_chain(make_chat_model(MODEL, base_url=url), store=SQLiteChatStore(db))

    def read(run: int) -> int:
        received = 0
        for piece in chain.stream(PROMPT, {"configurable": {"session_id": f"run-{run}"}}):
            if piece:
                received += 1
        return received

    return read


def measure(tokens: int, runs: int) -> dict[str, list[float]]:
    """chunks/s of each reader over ``runs`` interleaved runs (after one warm-up each)."""
    rates: dict[str, list[float]] = {"raw": [], "bare": [], "chain": []}
    with fake_ollama(tokens, MODEL) as url, tempfile.TemporaryDirectory() as tmp:
        readers = {
            "raw": raw_reader(url),
            "bare": bare_reader(url),
            "chain": chain_reader(url, Path(tmp) / "stream.db"),
        }
        names = list(readers)
        for run in range(-1, runs):
            # Rotate the order so no reader always runs first (after a pause) or last.
            for name in names[run % 3 :] + names[: run % 3]:
                # Every run starts from the same garbage-collector state. Full (gen2)
                # collections cost ~0.1 s each here and strike every few thousand chunks:
                # without this, whether one lands inside a short run decides its figure.
                gc.collect()
                started = time.perf_counter()
                received = readers[name](run)
                seconds = time.perf_counter() - started
                if received != tokens:
                    raise RuntimeError(f"{name}: {received} chunks, expected {tokens}")
                if run >= 0:
                    rates[name].append(tokens / seconds)
            if run >= 0:
                log(
                    f"  streaming run {run + 1}/{runs}: "
                    + ", ".join(f"{n} {rates[n][-1]:,.0f}/s" for n in names)
                )
    return rates


def run(quick: bool) -> list[Row]:
    """Measure; see the module docstring."""
    tokens, runs = (5_000, 11) if quick else (20_000, 15)
    rates = measure(tokens, runs)
    raw, bare, chain = (median(rates[n]) for n in ("raw", "bare", "chain"))
    # Per-round chain/bare ratios too: the machine's speed drifts between rounds (the
    # CPU time of the same work varied by a third here), and a round pairs like with like.
    paired = [c / b for c, b in zip(rates["chain"], rates["bare"], strict=True)]
    details = {
        "tokens": tokens,
        "chunks_per_s": {n: [round(r) for r in v] for n, v in rates.items()},
        "chain_over_bare_per_round": [round(r, 3) for r in paired],
        "chain_over_bare_median_of_rounds": round(median(paired), 3),
    }
    return [
        row(
            "streaming",
            f"chunks/s through the full chat chain ({tokens:,} chunks)",
            round(chain),
            "chunks/s",
            "bare ChatOllama.stream()",
            round(bare),
            goal=f"ratio >= {GOAL}",
            passed=chain / bare >= GOAL,
            runs=runs,
            note=f"median of per-round ratios {median(paired):.2f}",
            details=details,
        ),
        row(
            "streaming",
            f"chunks/s through the full chat chain ({tokens:,} chunks)",
            round(chain),
            "chunks/s",
            "raw ollama.Client().chat(stream=True)",
            round(raw),
            runs=runs,
        ),
        row(
            "streaming",
            f"chunks/s through bare ChatOllama.stream() ({tokens:,} chunks)",
            round(bare),
            "chunks/s",
            "raw ollama.Client().chat(stream=True)",
            round(raw),
            runs=runs,
        ),
    ]


def profile(tokens: int) -> None:
    """Print a pyinstrument profile of one chain run and one bare ChatOllama run."""
    from pyinstrument import Profiler

    with fake_ollama(tokens, MODEL) as url, tempfile.TemporaryDirectory() as tmp:
        for name, reader in (
            ("chain", chain_reader(url, Path(tmp) / "p.db")),
            ("bare", bare_reader(url)),
        ):
            reader(-1)  # warm-up
            profiler = Profiler(interval=0.0005)
            profiler.start()
            reader(0)
            profiler.stop()
            print(f"===== {name} =====")
            print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 chunks, 11 runs")
    parser.add_argument("--profile", action="store_true", help="profile one chain run")
    args = parser.parse_args()
    if args.profile:
        profile(5_000 if args.quick else 20_000)
        return
    for r in run(args.quick):
        r.pop("details", None)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
