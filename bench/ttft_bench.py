"""Time to first token added by the chat chain's history: 1,000 stored messages vs none.

The same chain (``make_chat_model`` against the fake Ollama in its own process,
``SQLiteChatStore``) streams a short answer in two kinds of session, interleaved:

* **empty**: a fresh session every run (the anchor);
* **history**: one session filled with 1,000 messages of ~300 characters
  (alternating user/assistant, assistant ones carrying usage metadata as real
  turns store it); each run's turn is deleted again (untimed) afterwards, so
  every run sees exactly those 1,000 messages.

Figure: seconds from ``chain.stream(...)`` to the first answer piece; the
median of many runs each, and the difference (what reading, fitting and
sending the history adds). The window is what the model's ``/api/show``
reports (8,192 tokens), so about 80 of the 1,000 messages are sent.

Run alone: ``python bench/ttft_bench.py [--quick] [--profile]``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import (
    Row,
    chat_history,
    english_text,
    ensure_import_paths,
    fake_ollama,
    log,
    median,
    percentile,
    row,
)

ensure_import_paths()

MODEL = "bench"
HISTORY = 1_000
GOAL_MS = 5.0
HISTORY_SESSION = "history"


def first_token_s(chain: Any, text: str, session: str) -> float:
    """Seconds from the call to the first answer piece; the rest is read untimed."""
    started = time.perf_counter()
    stream = chain.stream(text, {"configurable": {"session_id": session}})
    next(stream)
    elapsed = time.perf_counter() - started
    for _ in stream:
        pass
    return elapsed


def undo_turn(store: Any, session: str) -> None:
    """Delete (untimed) what the last turn added, so every run sees exactly ``HISTORY``."""
    info = store.get_session(session)
    extra = (info.message_count if info else 0) - HISTORY
    if extra > 0:
        store.delete_messages(session, [m.id for m in store.get_messages(session, limit=extra)])


def build(url: str, db: Path, rng: random.Random) -> Any:
    """The chain, with the history session filled."""
    from ollang.chains import build_chat_chain, make_chat_model
    from ollang.memory import SQLiteChatStore

    store = SQLiteChatStore(db)
    store.add_messages(HISTORY_SESSION, chat_history(HISTORY, rng, MODEL))
    return build_chat_chain(make_chat_model(MODEL, base_url=url), store=store)


def measure(runs: int) -> dict[str, list[float]]:
    """TTFT samples (seconds) of both kinds of session, interleaved, after warm-up."""
    rng = random.Random(11)
    samples: dict[str, list[float]] = {"empty": [], "history": []}
    with fake_ollama(8, MODEL) as url, tempfile.TemporaryDirectory() as tmp:
        chain = build(url, Path(tmp) / "ttft.db", rng)
        texts = [english_text(rng, 200) for _ in range(runs + 3)]
        for i, text in enumerate(texts):
            pair = [("empty", f"empty-{i}"), ("history", HISTORY_SESSION)]
            if i % 2:
                pair.reverse()
            for kind, session in pair:
                seconds = first_token_s(chain, text, session)
                if i >= 3:  # the first runs warm up the client, the store and /api/show
                    samples[kind].append(seconds)
            undo_turn(chain.store, HISTORY_SESSION)
        chain.store.close()
    return samples


def run(quick: bool) -> list[Row]:
    """Measure; see the module docstring."""
    runs = 25 if quick else 60
    samples = measure(runs)
    empty, hist = median(samples["empty"]), median(samples["history"])
    added_ms = (hist - empty) * 1000
    log(f"  ttft: empty {empty * 1000:.2f} ms, {HISTORY:,} messages {hist * 1000:.2f} ms")
    ms = {k: [round(s * 1000, 3) for s in v] for k, v in samples.items()}
    return [
        row(
            "ttft",
            f"time to first token with {HISTORY:,} stored messages",
            round(hist * 1000, 3),
            "ms",
            "same chain, empty history",
            round(empty * 1000, 3),
            goal=f"added <= {GOAL_MS:g} ms",
            passed=added_ms <= GOAL_MS,
            runs=runs,
            note=f"added {added_ms:.2f} ms",
            added_ms=round(added_ms, 3),
            details={
                "ttft_ms": ms,
                "p90_ms": {k: round(percentile(v, 90), 3) for k, v in ms.items()},
            },
        )
    ]


def profile(runs: int) -> None:
    """pyinstrument profile of TTFT runs with the history (first token only)."""
    from pyinstrument import Profiler

    rng = random.Random(11)
    with fake_ollama(8, MODEL) as url, tempfile.TemporaryDirectory() as tmp:
        chain = build(url, Path(tmp) / "p.db", rng)
        for _ in range(3):
            first_token_s(chain, "warm up", HISTORY_SESSION)
            undo_turn(chain.store, HISTORY_SESSION)
        profiler = Profiler(interval=0.0002)
        for i in range(runs):
            profiler.start()
            stream = chain.stream(
                english_text(rng, 200), {"configurable": {"session_id": HISTORY_SESSION}}
            )
            next(stream)
            profiler.stop()
            for _ in stream:
                pass
            undo_turn(chain.store, HISTORY_SESSION)
            del i
        print(profiler.output_text(unicode=False, color=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--profile", action="store_true", help="profile the history runs")
    args = parser.parse_args()
    if args.profile:
        profile(20)
        return
    for r in run(args.quick):
        r.pop("details", None)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
