"""Memory: what a chat turn costs the memory at 10 ... 10,000 stored messages, and disk use.

Three memories run the same turns with the same fake model (ollang's
``FakeChatModel``, which echoes the last message: ~300 characters of
English-like text in, ``"echo: " + it`` out) and the same system prompt:

* **ollang**: the real chain, ``build_chat_chain(FakeChatModel(), store=SQLiteChatStore(db))``,
  one ``invoke`` per turn. Also timed alone: the store work of a turn (append the
  user's message, read the history pages the chain reads, append the reply).
* **LangGraph SqliteSaver** (anchor): a one-node ``StateGraph(MessagesState)``
  compiled with the checkpointer, one ``invoke`` per turn with a ``thread_id``.
* **RunnableWithMessageHistory + FileChatMessageHistory** (anchor, deprecated:
  only here, never in product code): ``prompt | model | StrOutputParser()``.

Per-turn cost: each memory's session is filled with N messages directly
(through its own storage, not turn by turn); then the memories take turns,
interleaved (so a busy moment of the machine hits all of them alike), each turn
timed and then undone untimed, so every timed turn starts from exactly N stored
messages. The figure is the median of K such turns, after a few warm-up turns.
A memory whose turn is slower than a limit is not run at larger N, and the row
says so.

Disk use: a conversation grown turn by turn (400 turns; quick: 100) through
each memory, then bytes on disk (database + WAL after a checkpoint, or the JSON
file) against the UTF-8 bytes of the message text stored. For ollang also at the
largest N (ollang's store is append-only, so filling it directly writes what
turns would).

Run alone: ``python bench/memory_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _util import (
    Row,
    bytes_on_disk,
    chat_history,
    english_text,
    ensure_import_paths,
    log,
    median,
    row,
    sqlite_files,
)

ensure_import_paths()

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402

SYSTEM = "You are a helpful assistant. Answer briefly and precisely."
SESSION = "bench"
OLLANG, STORE_ONLY, LANGGRAPH, RWMH = (
    "ollang chat chain",
    "ollang store only",
    "LangGraph SqliteSaver",
    "RunnableWithMessageHistory + FileChatMessageHistory",
)


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    sizes: tuple[int, ...]
    turns: int  # timed turns per (memory, N), at most
    warmup: int
    budget_s: float  # a memory's timed turns at one N stop after this long (min 3 turns)
    too_slow_s: float  # a memory slower than this per turn is not run at larger N
    grown_turns: int  # turns of the grown conversation used for disk use

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls((10, 100, 1000), 60, 2, 3.0, 0.5, 100)
        return cls((10, 100, 1000, 10_000), 100, 3, 15.0, 5.0, 400)


def text_bytes(messages: list[BaseMessage]) -> int:
    """UTF-8 bytes of the messages' text."""
    return sum(len(m.text.encode("utf-8")) for m in messages)


def checkpointed_size(db: Path) -> int:
    """Bytes of an SQLite database, its WAL and -shm after ``wal_checkpoint(TRUNCATE)``."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return bytes_on_disk(*sqlite_files(db))


# -- the memories under test ------------------------------------------------------------


class Memory(ABC):
    """One memory behind a chat turn: fill it, run turns, measure disk use."""

    name: str

    def __init__(self, workdir: Path) -> None:
        from ollang.chains import FakeChatModel

        self.workdir = workdir
        self.model = FakeChatModel()  # echoes: the same work for every memory

    @abstractmethod
    def fill(self, messages: list[BaseMessage]) -> None:
        """Store ``messages`` as the session's history, directly (not through turns)."""

    @abstractmethod
    def turn(self, text: str) -> str:
        """One chat turn; returns the reply."""

    @abstractmethod
    def reset(self) -> None:
        """Undo the turns since :meth:`fill` (untimed), so the next turn sees N messages."""

    @abstractmethod
    def stored(self) -> list[BaseMessage]:
        """Every message of the session, read back."""

    @abstractmethod
    def disk_bytes(self) -> int:
        """Bytes on disk once everything is flushed; closes the memory."""


class OllangMemory(Memory):
    name = OLLANG

    def __init__(self, workdir: Path) -> None:
        from ollang.chains import build_chat_chain
        from ollang.memory import SQLiteChatStore

        super().__init__(workdir)
        self.db = workdir / "ollang.db"
        self.store = SQLiteChatStore(self.db)
        self.chain = build_chat_chain(self.model, store=self.store, system=SYSTEM)
        self.config: Any = {"configurable": {"session_id": SESSION}}
        self.reads: list[int | None] = []

    def fill(self, messages: list[BaseMessage]) -> None:
        for start in range(0, len(messages), 1000):
            self.store.add_messages(SESSION, messages[start : start + 1000])
        self.filled = len(messages)

    def reset(self) -> None:
        info = self.store.get_session(SESSION)
        extra = (info.message_count if info else 0) - self.filled
        if extra > 0:
            newest = self.store.get_messages(SESSION, limit=extra)
            self.store.delete_messages(SESSION, [m.id for m in newest if m.id])

    def turn(self, text: str) -> str:
        return self.chain.invoke(text, self.config)

    def learn_reads(self, text: str) -> list[int | None]:
        """Run one turn, noting the ``limit`` of every history read the chain makes; undo it."""
        limits: list[int | None] = []
        read = self.store.get_messages

        def noting(session_id: str, limit: int | None = None) -> list[BaseMessage]:
            limits.append(limit)
            return read(session_id, limit)

        self.store.get_messages = noting  # type: ignore[method-assign]
        try:
            self.turn(text)
        finally:
            del self.store.get_messages  # back to the class's method
        self.reset()
        self.reads = limits
        return limits

    def store_turn(self, text: str) -> None:
        """The store's share of a turn, as ``ChatChain.stream_turn`` does it."""
        self.store.add_messages(SESSION, [HumanMessage(text)])
        for limit in self.reads:  # the reads the chain made (see learn_reads)
            self.store.get_messages(SESSION, limit=limit)
        self.store.add_messages(SESSION, [AIMessage("echo: " + text)])

    def stored(self) -> list[BaseMessage]:
        return self.store.get_messages(SESSION)

    def disk_bytes(self) -> int:
        self.store.close()
        return checkpointed_size(self.db)


class LangGraphMemory(Memory):
    name = LANGGRAPH

    def __init__(self, workdir: Path) -> None:
        from langchain_core.messages import SystemMessage
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import START, MessagesState, StateGraph

        super().__init__(workdir)
        self.db = workdir / "langgraph.db"
        self.conn = sqlite3.connect(self.db, check_same_thread=False)
        model = self.model

        def chat(state: MessagesState) -> dict[str, list[BaseMessage]]:
            return {"messages": [model.invoke([SystemMessage(SYSTEM), *state["messages"]])]}

        builder = StateGraph(MessagesState)
        builder.add_node("chat", chat)
        builder.add_edge(START, "chat")
        self.graph = builder.compile(checkpointer=SqliteSaver(self.conn))
        self.config: Any = {"configurable": {"thread_id": SESSION}}

    def fill(self, messages: list[BaseMessage]) -> None:
        # One checkpoint holding the whole history, as if the last turn had just ended.
        self.graph.update_state(self.config, {"messages": messages}, as_node="chat")
        self.filled = len(messages)

    def reset(self) -> None:
        from langchain_core.messages import RemoveMessage

        newer = self.stored()[self.filled :]
        if newer:
            removals = [RemoveMessage(id=m.id) for m in newer if m.id]
            self.graph.update_state(self.config, {"messages": removals}, as_node="chat")

    def turn(self, text: str) -> str:
        state = self.graph.invoke({"messages": [HumanMessage(text)]}, self.config)
        return str(state["messages"][-1].content)

    def stored(self) -> list[BaseMessage]:
        return list(self.graph.get_state(self.config).values.get("messages", []))

    def disk_bytes(self) -> int:
        self.conn.close()
        return checkpointed_size(self.db)


class FileHistoryMemory(Memory):
    name = RWMH

    def __init__(self, workdir: Path) -> None:
        from langchain_community.chat_message_histories import FileChatMessageHistory
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
        from langchain_core.runnables.history import RunnableWithMessageHistory

        super().__init__(workdir)
        self.path = workdir / "history.json"
        path = str(self.path)
        self.history_class = FileChatMessageHistory
        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM), MessagesPlaceholder("history"), ("human", "{input}")]
        )
        self.chain = RunnableWithMessageHistory(
            prompt | self.model | StrOutputParser(),
            lambda session_id: FileChatMessageHistory(path),
            input_messages_key="input",
            history_messages_key="history",
        )
        self.config: Any = {"configurable": {"session_id": SESSION}}

    def fill(self, messages: list[BaseMessage]) -> None:
        from langchain_core.messages import messages_to_dict

        # What FileChatMessageHistory itself writes (json.dumps, ensure_ascii=True).
        self.filled_json = json.dumps(messages_to_dict(messages))
        self.path.write_text(self.filled_json)

    def reset(self) -> None:
        self.path.write_text(self.filled_json)

    def turn(self, text: str) -> str:
        return str(self.chain.invoke({"input": text}, self.config))

    def stored(self) -> list[BaseMessage]:
        return list(self.history_class(str(self.path)).messages)

    def disk_bytes(self) -> int:
        return bytes_on_disk(self.path)


MEMORIES: dict[str, type[Memory]] = {
    OLLANG: OllangMemory,
    LANGGRAPH: LangGraphMemory,
    RWMH: FileHistoryMemory,
}


# -- measuring ------------------------------------------------------------------------


@dataclass
class Series:
    """Per-turn medians of one memory at each history size."""

    per_turn_s: dict[int, float] = field(default_factory=dict)
    turns: dict[int, int] = field(default_factory=dict)
    sent: dict[int, int] = field(default_factory=dict)  # messages the model got per turn
    stopped: str | None = None  # why larger sizes were not run


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


@dataclass
class Contestant:
    """One memory at one history size, ready for timed turns."""

    name: str
    size: int
    step: Callable[[str], object]
    reset: Callable[[], None]


def interleave(contestants: list[Contestant], texts: list[str], plan: Plan) -> list[list[float]]:
    """Time turns of all contestants round-robin, undoing each; per contestant the samples.

    Round-robin, so that a busy moment of the machine hits every contestant alike.
    A contestant stops once it has 3 samples and has used its time budget.
    """
    times: list[list[float]] = [[] for _ in contestants]
    spent = [0.0] * len(contestants)
    gc.collect()
    for turn, text in enumerate(texts):
        warm = turn < plan.warmup
        for index, c in enumerate(contestants):
            if not warm and len(times[index]) >= 3 and spent[index] >= plan.budget_s:
                continue  # slow memory: enough turns within its time budget
            seconds = _timed(lambda c=c, text=text: c.step(text))
            c.reset()
            if not warm:
                times[index].append(seconds)
                spent[index] += seconds
    return times


def _record(results: dict[str, Series], c: Contestant, samples: list[float], plan: Plan) -> None:
    series = results[c.name]
    series.per_turn_s[c.size] = median(samples)
    series.turns[c.size] = len(samples)
    log(f"  memory: {c.name} at {c.size:,}: {series.per_turn_s[c.size] * 1000:.2f} ms/turn")
    if series.per_turn_s[c.size] > plan.too_slow_s and c.size != plan.sizes[-1]:
        series.stopped = f"not run (too slow: {series.per_turn_s[c.size]:.2f} s/turn at {c.size:,})"


def per_turn(plan: Plan, rng: random.Random) -> dict[str, Series]:
    """Per-turn cost of every memory at every size.

    ollang runs first, all sizes at once, interleaved turn by turn: its figure is
    the ratio between sizes, which must not depend on when each size ran. Then
    the anchors, size by size (both anchors interleaved), until too slow.
    """
    results = {name: Series() for name in (OLLANG, STORE_ONLY, LANGGRAPH, RWMH)}
    histories = {n: chat_history(n, rng) for n in plan.sizes}
    texts = [english_text(rng, 300) for _ in range(plan.turns + plan.warmup)]
    with tempfile.TemporaryDirectory(prefix="ollang-bench-") as tmp:
        ours: dict[int, OllangMemory] = {}
        contestants: list[Contestant] = []
        for n in plan.sizes:
            (Path(tmp) / str(n)).mkdir()
            memory = ours[n] = OllangMemory(Path(tmp) / str(n))
            memory.fill(histories[n])
            reads = memory.learn_reads(texts[0])
            log(f"  memory: at {n:,} stored, the chain reads pages of {reads} messages")
            contestants.append(Contestant(OLLANG, n, memory.turn, memory.reset))
            contestants.append(Contestant(STORE_ONLY, n, memory.store_turn, memory.reset))
        for c, samples in zip(contestants, interleave(contestants, texts, plan), strict=True):
            _record(results, c, samples, plan)
        for n, memory in ours.items():
            results[OLLANG].sent[n] = len(memory.model.prompts[-1])
            memory.disk_bytes()  # closes it

    for n in plan.sizes:
        active = [name for name in (LANGGRAPH, RWMH) if not results[name].stopped]
        if not active:
            break
        with tempfile.TemporaryDirectory(prefix="ollang-bench-") as tmp:
            anchors: dict[str, Memory] = {}
            for index, name in enumerate(active):
                (Path(tmp) / str(index)).mkdir()
                anchors[name] = MEMORIES[name](Path(tmp) / str(index))
                anchors[name].fill(histories[n])
            contestants = [Contestant(name, n, m.turn, m.reset) for name, m in anchors.items()]
            for c, samples in zip(contestants, interleave(contestants, texts, plan), strict=True):
                _record(results, c, samples, plan)
            for name, memory in anchors.items():
                results[name].sent[n] = len(memory.model.prompts[-1])
                memory.disk_bytes()
    return results


def disk_at(n: int, rng: random.Random) -> dict[str, Any]:
    """ollang's disk use with ``n`` messages stored (what turns append, written directly)."""
    with tempfile.TemporaryDirectory(prefix="ollang-bench-") as tmp:
        memory = OllangMemory(Path(tmp))
        memory.fill(chat_history(n, rng))
        stored = memory.stored()
        result = {"messages": len(stored), "text_bytes": text_bytes(stored)}
        result["disk_bytes"] = memory.disk_bytes()
    return result


def grown_disk(plan: Plan, rng: random.Random) -> dict[str, dict[str, Any]]:
    """Disk use after ``plan.grown_turns`` turns, grown turn by turn through each memory."""
    texts = [english_text(rng, 300) for _ in range(plan.grown_turns)]
    out: dict[str, dict[str, Any]] = {}
    for name, cls in MEMORIES.items():
        with tempfile.TemporaryDirectory(prefix="ollang-bench-") as tmp:
            memory = cls(Path(tmp))
            started = time.perf_counter()
            for text in texts:
                memory.turn(text)
            seconds = time.perf_counter() - started
            stored = memory.stored()
            out[name] = {
                "turns": len(texts),
                "messages": len(stored),
                "text_bytes": text_bytes(stored),
                "disk_bytes": memory.disk_bytes(),
                "seconds": seconds,
            }
        d = out[name]
        log(
            f"  memory: {name}, {len(texts)} turns: {d['disk_bytes'] / 2**20:.2f} MiB on disk "
            f"for {d['text_bytes'] / 2**20:.2f} MiB of text"
        )
    return out


# -- rows ---------------------------------------------------------------------------------


def _ms(series: Series, n: int) -> float | None:
    value = series.per_turn_s.get(n)
    return round(value * 1000, 3) if value is not None else None


def _growth(series: Series, small: int, large: int) -> tuple[float | None, int | None]:
    """Cost at ``large`` over cost at ``small``; falls back to the largest size measured."""
    if small not in series.per_turn_s:
        return None, None
    top = max(n for n in series.per_turn_s if n <= large)
    return series.per_turn_s[top] / series.per_turn_s[small], top


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def rows_from(
    plan: Plan, series: dict[str, Series], disk_at_n: dict[str, Any], grown: dict[str, Any]
) -> list[Row]:
    """The table rows of this benchmark."""
    rows: list[Row] = []
    ours = series[OLLANG]
    for n in plan.sizes:
        for anchor in (LANGGRAPH, RWMH):
            theirs = series[anchor]
            note = theirs.stopped if n not in theirs.per_turn_s else None
            rows.append(
                row(
                    "memory",
                    f"per-turn cost at {n:,} stored messages (chat chain)",
                    _ms(ours, n),
                    "ms",
                    anchor,
                    _ms(theirs, n),
                    runs=ours.turns.get(n, 0),
                    anchor_runs=theirs.turns.get(n, 0),
                    **({"note": note} if note else {}),
                )
            )
        rows.append(
            row(
                "memory",
                f"per-turn store cost at {n:,} stored messages (read history + append turn)",
                _ms(series[STORE_ONLY], n),
                "ms",
                "-",
                None,
                runs=series[STORE_ONLY].turns.get(n, 0),
            )
        )

    # Flatness. At the smallest size the whole history is shorter than the context
    # window, so a turn reads and sends fewer messages than at any larger size;
    # the growth from the first size where the window is full is shown beside it.
    small, large = plan.sizes[0], plan.sizes[-1]
    full = plan.sizes[1] if len(plan.sizes) > 2 else small
    window_note = (
        f"at {small:,} stored the chain sends {ours.sent.get(small, '?')} messages, "
        f"from {full:,} on {ours.sent.get(full, '?')} (the window is full)"
    )
    for label, key in (("chat chain", OLLANG), ("store only", STORE_ONLY)):
        growth, _ = _growth(series[key], small, large)
        anchors = (LANGGRAPH, RWMH) if key == OLLANG else ()
        for anchor in anchors or ("-",):
            theirs, top = _growth(series[anchor], small, large) if anchor != "-" else (None, None)
            note = window_note
            if anchor != "-" and top != large:
                note += f"; anchor: {top:,} vs {small:,} ({series[anchor].stopped})"
            rows.append(
                row(
                    "memory",
                    f"per-turn cost growth, {large:,} vs {small:,} stored ({label})",
                    _round(growth),
                    "x",
                    f"{anchor}, same growth" if anchor != "-" else "-",
                    _round(theirs),
                    goal="value <= 1.5",
                    passed=growth is not None and growth <= 1.5,
                    runs=series[key].turns.get(large, 0),
                    note=note,
                )
            )
        if full != small:
            growth, _ = _growth(series[key], full, large)
            theirs, top = _growth(series[LANGGRAPH], full, large) if key == OLLANG else (None, None)
            rows.append(
                row(
                    "memory",
                    f"per-turn cost growth, {large:,} vs {full:,} stored ({label}, window full)",
                    _round(growth),
                    "x",
                    f"{LANGGRAPH}, same growth" if key == OLLANG else "-",
                    _round(theirs),
                    runs=series[key].turns.get(large, 0),
                    note="not the goal's sizes: shows growth with history alone",
                )
            )

    def ratio(d: dict[str, Any]) -> float:
        return d["disk_bytes"] / d["text_bytes"]

    ollang_grown = ratio(grown[OLLANG])
    turns = grown[OLLANG]["turns"]
    for anchor in (LANGGRAPH, RWMH):
        rows.append(
            row(
                "memory",
                f"disk / text after {turns} turns grown turn by turn",
                round(ollang_grown, 3),
                "x",
                anchor,
                round(ratio(grown[anchor]), 3),
                goal="value <= 2",
                passed=ollang_grown <= 2,
                runs=1,
                note=(
                    f"ollang {grown[OLLANG]['disk_bytes'] / 2**20:.2f} MiB, "
                    f"anchor {grown[anchor]['disk_bytes'] / 2**20:.2f} MiB on disk"
                ),
            )
        )
    if disk_at_n:
        at_n = ratio(disk_at_n)
        rows.append(
            row(
                "memory",
                f"disk / text at {disk_at_n['messages']:,} stored messages",
                round(at_n, 3),
                "x",
                "-",
                None,
                goal="value <= 2",
                passed=at_n <= 2,
                runs=1,
                note=f"{disk_at_n['disk_bytes'] / 2**20:.2f} MiB on disk",
            )
        )
    # Everything the plot and the detail tables need, on the first row.
    rows[0]["details"] = {
        "per_turn_ms": {
            name: {str(n): round(s * 1000, 3) for n, s in ser.per_turn_s.items()}
            for name, ser in series.items()
        },
        "turns": {name: {str(n): k for n, k in ser.turns.items()} for name, ser in series.items()},
        "sent": {name: {str(n): k for n, k in ser.sent.items()} for name, ser in series.items()},
        "stopped": {name: ser.stopped for name, ser in series.items() if ser.stopped},
        "sizes": list(plan.sizes),
        "disk_grown": grown,
        "disk_at_largest": disk_at_n,
    }
    return rows


def run(quick: bool) -> list[Row]:
    """Measure every memory; see the module docstring."""
    plan = Plan.for_mode(quick)
    rng = random.Random(7)
    series = per_turn(plan, rng)
    disk_at_n = disk_at(plan.sizes[-1], rng)
    grown = grown_disk(plan, rng)
    return rows_from(plan, series, disk_at_n, grown)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1,000, fewer turns")
    for r in run(parser.parse_args().quick):
        r.pop("details", None)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
