"""PostgreSQL: per-turn cost, disk per message, replicas, and many writers into one session.

The PostgreSQL server is the one the tests use (``tests/pg.py``): CI's
(``OLLANG_TEST_POSTGRES_URL``) or a throwaway cluster started here; every memory gets a
schema of its own on it. Four measurements, each against anchors in the same run:

* **Per-turn cost** at 200 and 10,000 stored messages (quick: 200 and 2,000), with the
  harness of ``memory_bench.py`` (same fake model, same system prompt, turns
  interleaved round-robin and undone untimed, median of K):
  - ollang: ``build_chat_chain(FakeChatModel(), store=PostgresChatStore(url))``;
  - langchain-postgres ``PostgresChatMessageHistory`` behind
    ``RunnableWithMessageHistory(prompt | model | StrOutputParser())`` (same prompt);
  - LangGraph ``PostgresSaver``: a one-node ``StateGraph(MessagesState)`` as in
    ``memory_bench``. Goal: ollang's 10,000 / 200 cost within 1.3x.
* **Disk per message**: ``pg_total_relation_size`` of each memory's tables (indexes and
  TOAST included) against the UTF-8 bytes of the text, at the largest size (filled
  directly) and after a conversation grown turn by turn through each memory.
* **Replicas**: turns per second through nginx (round-robin) in front of 1 and then 2
  ``ollang serve`` on one PostgreSQL, under ``server_bench``'s stress load (200
  streaming clients, 50-token answers at 50 tokens/s; quick: 60 clients). Alternated,
  median of the runs. Goal: 2 replicas >= 1.7x one; on a 2-core machine that also runs
  PostgreSQL, nginx, the stub and the clients, reported as measured.
* **8 processes x 50 turns** (quick: 4 x 20) through the chat chain into one session:
  turns lost, turns doubled, writers whose order was not kept (goal: 0, 0, 0).

Run alone: ``python bench/pg_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _util import ROOT, Row, chat_history, english_text, ensure_import_paths, log, median, row

ensure_import_paths()

import memory_bench  # noqa: E402  (its harness: Memory, Contestant, interleave, Plan)
import psycopg  # noqa: E402
from langchain_core.messages import BaseMessage  # noqa: E402

from tests import pg  # noqa: E402
from tests.net import free_port  # noqa: E402

SYSTEM = memory_bench.SYSTEM
SESSION = memory_bench.SESSION
OLLANG = "ollang chat chain (PostgreSQL)"
HISTORY = "RunnableWithMessageHistory + langchain-postgres PostgresChatMessageHistory"
SAVER = "LangGraph PostgresSaver"
GROWTH_GOAL = 1.3
REPLICA_GOAL = 1.7


def _schema_conn(url: str, schema: str) -> psycopg.Connection:
    """An autocommit connection whose unqualified tables live in ``schema`` (created)."""
    base = url.split("?")[0]
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return psycopg.connect(base, autocommit=True, options=f"-c search_path={schema}")


def schema_bytes(url: str, schema: str) -> int:
    """``pg_total_relation_size`` of every table in ``schema`` (indexes and TOAST included)."""
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        (size,) = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return int(size)


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- the memories ---------------------------------------------------------------------------
class PgOllang(memory_bench.Memory):
    name = OLLANG

    def __init__(self, url: str) -> None:
        from ollang.chains import FakeChatModel, build_chat_chain
        from ollang.memory.postgres.store import PostgresChatStore

        self.model = FakeChatModel()
        self.url, self.schema = url, "b_" + uuid.uuid4().hex[:10]
        self.store = PostgresChatStore(pg.with_params(url, schema=self.schema))
        self.chain = build_chat_chain(self.model, store=self.store, system=SYSTEM)
        self.config: Any = {"configurable": {"session_id": SESSION}}

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
        return str(self.chain.invoke(text, self.config))

    def stored(self) -> list[BaseMessage]:
        return self.store.get_messages(SESSION)

    def disk_bytes(self) -> int:
        self.store.close()
        size = schema_bytes(self.url, self.schema)
        drop_schema(self.url, self.schema)
        return size


class PgHistory(memory_bench.Memory):
    name = HISTORY

    def __init__(self, url: str) -> None:
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
        from langchain_core.runnables.history import RunnableWithMessageHistory
        from langchain_postgres import PostgresChatMessageHistory

        from ollang.chains import FakeChatModel

        self.model = FakeChatModel()
        self.url, self.schema = url, "b_" + uuid.uuid4().hex[:10]
        self.conn = _schema_conn(url, self.schema)
        PostgresChatMessageHistory.create_tables(self.conn, "chat_history")
        self.session = str(uuid.uuid4())
        conn = self.conn
        self.history = lambda sid: PostgresChatMessageHistory(
            "chat_history", sid, sync_connection=conn
        )
        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM), MessagesPlaceholder("history"), ("human", "{input}")]
        )
        self.chain = RunnableWithMessageHistory(
            prompt | self.model | StrOutputParser(),
            self.history,
            input_messages_key="input",
            history_messages_key="history",
        )
        self.config: Any = {"configurable": {"session_id": self.session}}

    def fill(self, messages: list[BaseMessage]) -> None:
        self.history(self.session).add_messages(messages)
        (self.last_id,) = self.conn.execute("SELECT max(id) FROM chat_history").fetchone()

    def reset(self) -> None:
        self.conn.execute("DELETE FROM chat_history WHERE id > %s", (self.last_id or 0,))

    def turn(self, text: str) -> str:
        return str(self.chain.invoke({"input": text}, self.config))

    def stored(self) -> list[BaseMessage]:
        return list(self.history(self.session).messages)

    def disk_bytes(self) -> int:
        self.conn.close()
        size = schema_bytes(self.url, self.schema)
        drop_schema(self.url, self.schema)
        return size


class PgSaver(memory_bench.Memory):
    name = SAVER

    def __init__(self, url: str) -> None:
        from langchain_core.messages import SystemMessage
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.graph import START, MessagesState, StateGraph
        from psycopg.rows import dict_row

        from ollang.chains import FakeChatModel

        self.model = FakeChatModel()
        self.url, self.schema = url, "b_" + uuid.uuid4().hex[:10]
        _schema_conn(url, self.schema).close()
        self.conn = psycopg.connect(
            url.split("?")[0],
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            options=f"-c search_path={self.schema}",
        )
        saver = PostgresSaver(self.conn)  # type: ignore[arg-type]
        saver.setup()
        model = self.model

        def chat(state: MessagesState) -> dict[str, list[BaseMessage]]:
            return {"messages": [model.invoke([SystemMessage(SYSTEM), *state["messages"]])]}

        builder = StateGraph(MessagesState)
        builder.add_node("chat", chat)
        builder.add_edge(START, "chat")
        self.graph = builder.compile(checkpointer=saver)
        self.config: Any = {"configurable": {"thread_id": SESSION}}

    fill = memory_bench.LangGraphMemory.fill  # type: ignore[assignment]
    reset = memory_bench.LangGraphMemory.reset  # type: ignore[assignment]
    turn = memory_bench.LangGraphMemory.turn  # type: ignore[assignment]
    stored = memory_bench.LangGraphMemory.stored  # type: ignore[assignment]

    def disk_bytes(self) -> int:
        self.conn.close()
        size = schema_bytes(self.url, self.schema)
        drop_schema(self.url, self.schema)
        return size


MEMORIES = {OLLANG: PgOllang, HISTORY: PgHistory, SAVER: PgSaver}


# -- per-turn cost and disk -----------------------------------------------------------------
def per_turn(url: str, sizes: tuple[int, ...], plan: memory_bench.Plan, rng: random.Random):
    """Median per-turn cost of each memory at each size; a memory too slow stops early.

    As in ``memory_bench``: ollang runs first, all sizes at once, interleaved turn by
    turn (its figure is the ratio between sizes, which must not depend on when each
    size ran); then the anchors, size by size, interleaved with each other.
    """
    texts = [english_text(rng, 300) for _ in range(plan.turns + plan.warmup)]
    histories = {n: chat_history(n, rng) for n in sizes}
    results: dict[str, dict[int, tuple[float, int]]] = {name: {} for name in MEMORIES}
    stopped: dict[str, str] = {}
    disk_at: dict[str, dict[str, int]] = {}

    def measure(memories: dict[tuple[str, int], memory_bench.Memory]) -> None:
        for memory, (_, n) in zip(memories.values(), memories, strict=True):
            memory.fill(histories[n])
        contestants = [
            memory_bench.Contestant(name, n, m.turn, m.reset) for (name, n), m in memories.items()
        ]
        for c, samples in zip(
            contestants, memory_bench.interleave(contestants, texts, plan), strict=True
        ):
            cost = median(samples)
            results[c.name][c.size] = (cost, len(samples))
            log(f"  pg: {c.name} at {c.size:,}: {cost * 1000:.2f} ms/turn ({len(samples)} turns)")
            if cost > plan.too_slow_s and c.size != sizes[-1]:
                stopped[c.name] = f"not run (too slow: {cost:.2f} s/turn at {c.size:,})"
        for (name, n), memory in memories.items():
            stored = memory.stored()
            if n == sizes[-1]:
                disk_at[name] = {
                    "messages": len(stored),
                    "text_bytes": memory_bench.text_bytes(stored),
                    "disk_bytes": memory.disk_bytes(),
                }
            else:
                memory.disk_bytes()  # closes it and drops its schema

    measure({(OLLANG, n): PgOllang(url) for n in sizes})
    for n in sizes:
        anchors = [name for name in (HISTORY, SAVER) if name not in stopped]
        if anchors:
            measure({(name, n): MEMORIES[name](url) for name in anchors})
    return results, stopped, disk_at


def grown_disk(url: str, turns: int, rng: random.Random) -> dict[str, dict[str, Any]]:
    """Disk after ``turns`` turns grown turn by turn through each memory."""
    texts = [english_text(rng, 300) for _ in range(turns)]
    out: dict[str, dict[str, Any]] = {}
    for name, cls in MEMORIES.items():
        memory = cls(url)
        started = time.perf_counter()
        for text in texts:
            memory.turn(text)
        seconds = time.perf_counter() - started
        stored = memory.stored()
        out[name] = {
            "turns": turns,
            "messages": len(stored),
            "text_bytes": memory_bench.text_bytes(stored),
            "disk_bytes": memory.disk_bytes(),
            "seconds": seconds,
        }
        log(f"  pg: {name}, {turns} turns: {out[name]['disk_bytes'] / 2**20:.2f} MiB")
    return out


# -- replicas ---------------------------------------------------------------------------------
@contextmanager
def replicas(url: str, count: int, stub_url: str, home: Path):
    """``count`` ``ollang serve`` on ``url`` behind nginx; yields nginx's URL."""
    import server_bench

    from tests.nginx import Nginx

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OLLANG_")},
        "OLLAMA_HOST": stub_url,
        "OLLANG_MODEL": "llama3:latest",
        "OLLANG_HOME": str(home),
        "OLLANG_SERVER_STORE_URL": url,
        "OLLANG_SERVER_ACCESS_LOG": "false",
        "OLLANG_SERVER_BACKEND": "ollama",
    }
    with ExitStack() as stack:
        upstreams = []
        for _ in range(count):
            port = free_port()
            cmd = [sys.executable, "-m", "ollang", "serve", "--port", str(port)]
            stack.enter_context(server_bench._process(cmd, env, f"http://127.0.0.1:{port}/health"))
            upstreams.append(f"127.0.0.1:{port}")
        lb = stack.enter_context(Nginx(upstreams))
        yield lb.url


def replica_throughput(url: str, quick: bool) -> dict[str, Any]:
    """Turns per second through nginx with 1 and 2 replicas, alternated."""
    import httpx
    import server_bench
    from _server_load import FAKE_OLLAMA

    clients, rounds, runs = (60, 2, 1) if quick else (200, 3, 2)
    stub_port = free_port()
    stub_url = f"http://127.0.0.1:{stub_port}"
    stub = [
        *FAKE_OLLAMA,
        "--port",
        str(stub_port),
        "--rate",
        str(server_bench.STRESS_RATE),
        "--tokens",
        str(server_bench.STRESS_TOKENS),
        "--model",
        "llama3:latest",
    ]
    rates: dict[int, list[float]] = {1: [], 2: []}
    errors: dict[int, int] = {1: 0, 2: 0}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (
        tempfile.TemporaryDirectory(prefix="ollang-pg-bench-") as tmp,
        server_bench._process(stub, env, f"{stub_url}/api/version"),
    ):
        for run in range(runs):
            for count in (1, 2):
                with (
                    pg.fresh_schema_url(url) as store_url,
                    replicas(store_url, count, stub_url, Path(tmp)) as lb,
                ):
                    for i in range(4):  # warm-up: imports, connections, the model list
                        httpx.post(f"{lb}/chat", json={"message": f"warm {i}"}, timeout=60)
                    asyncio.run(server_bench._load("ollang", lb, "llama3:latest", 20, 1))
                    result = asyncio.run(
                        server_bench._load("ollang", lb, "llama3:latest", clients, rounds)
                    )
                rate = len(result["ttfts"]) / result["seconds"]
                rates[count].append(rate)
                errors[count] += len(result["errors"])
                log(f"  pg: run {run + 1}, {count} replica(s): {rate:.1f} turns/s")
    return {
        "clients": clients,
        "rounds": rounds,
        "runs": runs,
        "turns_per_s": {str(k): v for k, v in rates.items()},
        "errors": errors,
        "one": median(rates[1]),
        "two": median(rates[2]),
    }


# -- many writers into one session --------------------------------------------------------------
def _writer(store_url: str, n: int, turns: int) -> None:
    from ollang.chains import FakeChatModel, build_chat_chain
    from ollang.memory.postgres.store import PostgresChatStore

    with PostgresChatStore(store_url) as store:
        chain = build_chat_chain(FakeChatModel(), store=store, system=SYSTEM)
        config: Any = {"configurable": {"session_id": "shared"}}
        for i in range(turns):
            chain.invoke(f"p{n}-{i}", config)


def many_writers(url: str, writers: int, turns: int) -> dict[str, Any]:
    """``writers`` processes, ``turns`` chat turns each, into one session; then check it."""
    from ollang.memory.postgres.store import PostgresChatStore

    with pg.fresh_schema_url(url) as store_url:
        PostgresChatStore(store_url).close()
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_writer, args=(store_url, n, turns)) for n in range(writers)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join(600)
        seconds = time.perf_counter() - started
        with PostgresChatStore(store_url) as store:
            texts = [str(m.content) for m in store.get_messages("shared")]
    sent = [f"p{n}-{i}" for n in range(writers) for i in range(turns)]
    humans = [t for t in texts if not t.startswith("echo: ")]
    replies = [t[len("echo: ") :] for t in texts if t.startswith("echo: ")]
    lost = sum(1 for t in sent if t not in set(humans) or t not in set(replies))
    doubled = (len(humans) - len(set(humans))) + (len(replies) - len(set(replies)))
    disordered = sum(
        1
        for n in range(writers)
        if [t for t in humans if t.startswith(f"p{n}-")] != [f"p{n}-{i}" for i in range(turns)]
    )
    return {
        "writers": writers,
        "turns": turns,
        "exit_codes": [p.exitcode for p in procs],
        "messages": len(texts),
        "lost": lost,
        "doubled": doubled,
        "writers_out_of_order": disordered,
        "seconds": seconds,
        "turns_per_s": writers * turns / seconds,
    }


# -- rows -------------------------------------------------------------------------------------
def _ms(results: dict[int, tuple[float, int]], n: int) -> float | None:
    return round(results[n][0] * 1000, 3) if n in results else None


def rows_from(
    sizes: tuple[int, ...],
    results: dict[str, dict[int, tuple[float, int]]],
    stopped: dict[str, str],
    disk_at: dict[str, dict[str, int]],
    grown: dict[str, dict[str, Any]],
    reps: dict[str, Any] | None,
    writers: dict[str, Any],
) -> list[Row]:
    rows: list[Row] = []
    ours = results[OLLANG]
    small, large = sizes[0], sizes[-1]
    for n in sizes:
        for anchor in (HISTORY, SAVER):
            note = stopped.get(anchor) if n not in results[anchor] else None
            rows.append(
                row(
                    "postgres",
                    f"per-turn cost at {n:,} stored messages (chat chain)",
                    _ms(ours, n),
                    "ms",
                    anchor,
                    _ms(results[anchor], n),
                    runs=ours[n][1] if n in ours else 0,
                    **({"note": note} if note else {}),
                )
            )

    def growth(name: str) -> float | None:
        r = results[name]
        return round(r[large][0] / r[small][0], 3) if small in r and large in r else None

    ours_growth = growth(OLLANG)
    for anchor in (HISTORY, SAVER):
        rows.append(
            row(
                "postgres",
                f"per-turn cost growth, {large:,} vs {small:,} stored (chat chain)",
                ours_growth,
                "x",
                f"{anchor}, same growth",
                growth(anchor),
                goal=f"value <= {GROWTH_GOAL}",
                passed=ours_growth is not None and ours_growth <= GROWTH_GOAL,
                runs=ours[large][1] if large in ours else 0,
                **({"note": stopped[anchor]} if anchor in stopped else {}),
            )
        )

    def ratio(d: dict[str, Any]) -> float:
        return round(d["disk_bytes"] / d["text_bytes"], 3)

    at = disk_at[OLLANG]
    rows.append(
        row(
            "postgres",
            f"disk / text at {at['messages']:,} stored messages (pg_total_relation_size)",
            ratio(at),
            "x",
            HISTORY,
            ratio(disk_at[HISTORY]) if HISTORY in disk_at else None,
            note=f"{at['disk_bytes'] / at['messages']:.0f} bytes per message for "
            f"{at['text_bytes'] / at['messages']:.0f} of text",
        )
    )
    turns = grown[OLLANG]["turns"]
    for anchor in (HISTORY, SAVER):
        rows.append(
            row(
                "postgres",
                f"disk / text after {turns} turns grown turn by turn",
                ratio(grown[OLLANG]),
                "x",
                anchor,
                ratio(grown[anchor]),
            )
        )
    if reps is None:
        rows.append(
            row(
                "postgres",
                "replicas: turns/s, 2 vs 1 behind nginx",
                None,
                "x",
                "1 replica",
                None,
                note="nginx is not installed",
            )
        )
    else:
        scale = reps["two"] / reps["one"] if reps["one"] else None
        rows.append(
            row(
                "postgres",
                f"replicas behind nginx: turns/s with 2 ({reps['clients']} streaming clients)",
                round(reps["two"], 2),
                "turns/s",
                "1 replica, same load",
                round(reps["one"], 2),
                goal=f"ratio >= {REPLICA_GOAL}",
                passed=scale is not None and scale >= REPLICA_GOAL,
                runs=reps["runs"],
                note=f"errors: {reps['errors'][1]} / {reps['errors'][2]}; 2 cores shared "
                "with PostgreSQL, nginx, the stub and the clients",
                details=reps,
            )
        )
    bad = writers["lost"] + writers["doubled"] + writers["writers_out_of_order"]
    rows.append(
        row(
            "postgres",
            f"{writers['writers']} processes x {writers['turns']} turns into one session: "
            "lost + doubled + writers out of order",
            bad,
            "turns",
            "-",
            None,
            goal="value == 0",
            passed=bad == 0 and all(code == 0 for code in writers["exit_codes"]),
            note=f"{writers['messages']} messages; {writers['turns_per_s']:.1f} turns/s in all",
            details=writers,
        )
    )
    return rows


def _server_version(url: str) -> str:
    with psycopg.connect(url.split("?")[0]) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


def run(quick: bool) -> list[Row]:
    """The benchmark module contract (``bench/_util.py``)."""
    try:
        url = pg.server().url
    except RuntimeError as err:
        log(f"  pg: {err}")
        return [row("postgres", "PostgreSQL benchmarks", None, "-", "-", None, note=str(err)[:200])]
    rng = random.Random(15)
    sizes = (200, 2000) if quick else (200, 10_000)
    plan = memory_bench.Plan(sizes, 30 if quick else 60, 2, 3.0 if quick else 10.0, 2.0, 0)
    results, stopped, disk_at = per_turn(url, sizes, plan, rng)
    grown = grown_disk(url, 50 if quick else 200, rng)
    from tests.nginx import nginx_binary

    reps = replica_throughput(url, quick) if nginx_binary() else None
    writers = many_writers(url, *((4, 20) if quick else (8, 50)))
    rows = rows_from(sizes, results, stopped, disk_at, grown, reps, writers)
    rows[0]["details"] = {
        "per_turn_ms": {
            name: {str(n): v[0] * 1000 for n, v in r.items()} for name, r in results.items()
        },
        "stopped": stopped,
        "disk_at_largest": disk_at,
        "disk_grown": grown,
        "postgres_version": _server_version(url),
    }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    rows = run(parser.parse_args().quick)
    print(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
