"""What only the PostgreSQL store has to prove: its plans, search, faults, processes, URLs.

The behaviour it shares with the other stores is tested once for all of them
(``tests/integration/test_memory*.py``, parametrized by ``STORE_BACKENDS``). Tests that stop or
restart PostgreSQL do it to a cluster of their own (``own_cluster``), never the shared one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import multiprocessing
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from langchain_core.messages import AIMessage, HumanMessage

from ollang.errors import InvalidInputError
from ollang.memory import ChatStore, SQLiteChatStore, message_status, open_store, redact_url
from ollang.memory.errors import (
    NotAnOllangDatabaseError,
    SessionExistsError,
    StoreError,
    StoreUnavailableError,
    UnknownStoreURLError,
)
from ollang.memory.messages import set_message_status
from ollang.memory.postgres.migrations import MIGRATIONS, apply_migrations
from ollang.memory.postgres.sql import decode_id, encode_id
from ollang.memory.postgres.store import PostgresChatStore
from tests import pg
from tests.cli_process import cli
from tests.fake_ollama import FakeOllama
from tests.integration.test_memory_features import OTHER, PNG, image_message
from tests.net import free_port


@pytest.fixture(scope="module")
def server() -> pg.PgServer:
    try:
        return pg.server()
    except RuntimeError as err:
        pytest.skip(str(err))


@pytest.fixture
def url(server) -> Iterator[str]:
    """A store URL with a fresh schema of its own."""
    with pg.fresh_schema_url(server.url) as fresh:
        yield fresh


@pytest.fixture
def store(url) -> Iterator[PostgresChatStore]:
    with PostgresChatStore(url) as s:
        yield s


@pytest.fixture(scope="module")
def own_cluster(server) -> Iterator[pg.Cluster]:
    """A cluster this module may stop, crash and restart."""
    try:
        cluster = pg.start_cluster()
    except RuntimeError as err:
        pytest.skip(f"cannot start a PostgreSQL cluster to restart: {err}")
    yield cluster
    cluster.destroy()


def admin(url: str) -> psycopg.Connection:
    """A plain connection to the store URL's database (without ollang's parameters)."""
    return psycopg.connect(url.split("?")[0], autocommit=True)


def schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def turn(n: int) -> list:
    return [HumanMessage(f"question {n}"), AIMessage(f"answer {n}")]


# -- the hot path uses the indexes ----------------------------------------------------
def test_last_n_query_is_a_backward_index_range_scan(store, url):
    for batch in range(20):  # 3 sessions x 400 messages: enough for the planner to care
        for s in range(3):
            store.add_messages(f"s{s}", [m for n in range(10) for m in turn(batch * 10 + n)])
    with admin(url) as conn:
        conn.execute(f'ANALYZE "{schema_of(url)}".messages')
        conn.execute(f'ANALYZE "{schema_of(url)}".sessions')
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN " + store._sql.last_messages.replace("%s", "'s1'", 1).replace("%s", "50")
            )
        )
    assert "Index Scan Backward using messages_pkey" in plan, plan
    (key,) = re.findall(r"InitPlan \d+ \(returns (\$\d+)\)", plan)  # the session's key
    assert f"Index Cond: (session_key = {key})" in plan, plan
    assert "Seq Scan on messages" not in plan and "Sort" not in plan, plan
    assert len(store.get_messages("s1", limit=50)) == 50


def test_search_uses_the_gin_index(store, url):
    for n in range(300):
        store.add_messages(f"s{n % 5}", [HumanMessage(f"filler text number {n}")])
    store.add_messages("s1", [HumanMessage("a rare word: xylophone")])
    schema = schema_of(url)
    with admin(url) as conn:
        conn.execute(f'ANALYZE "{schema}".messages')
        query = store._sql.search.replace("{query}", "plainto_tsquery(cfg, 'xylophone')")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query.replace("%s", "50")))
    assert "messages_search" in plan and "Seq Scan on messages" not in plan, plan
    assert [h.session_id for h in store.search("xylophone")] == ["s1"]


# -- search: stemming, prefixes, every word ---------------------------------------------
def test_search_stems_english_words(store):
    store.add_messages("birds", [HumanMessage("Penguins cannot fly, but they swim well.")])
    store.add_messages("other", [AIMessage("A penguin was swimming.")])
    assert {h.session_id for h in store.search("penguin")} == {"birds", "other"}
    assert {h.session_id for h in store.search("penguins swims")} == {"birds", "other"}
    assert [h.session_id for h in store.search("fly")] == ["birds"]
    assert "**Penguins**" in store.search("penguin")[1].snippet


def test_search_prefix_words_end_in_a_star(store):
    store.add_messages("s", [HumanMessage("write fizzbuzz in Rust")])
    assert store.search("fizz") == []  # a whole word, not a substring
    assert [h.session_id for h in store.search("fizz*")] == ["s"]
    assert [h.session_id for h in store.search("fizz* rust")] == ["s"]
    assert store.search("fizz* python") == []  # still every word
    assert store.search("buzz*") == []  # a prefix, not a substring


def test_search_finds_stop_words_and_snippets_mark_and_cut(store):
    long = " ".join(f"w{n}" for n in range(60)) + " the needle is here " + "z " * 60
    store.add_messages("s", [HumanMessage("to be or not to be"), AIMessage(long)])
    assert [h.role for h in store.search("not to be")] == ["human"]
    (hit,) = store.search("needle")
    assert "**needle**" in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…"), hit.snippet
    assert len(hit.snippet) < len(long) / 2
    store.add_messages("md", [AIMessage("some **bold** text about walruses")])
    (md,) = store.search("walrus")
    assert md.snippet == "some **bold** text about **walruses**"


def test_search_keeps_words_whole_as_postgresql_splits_them(store):
    store.add_messages("h", [HumanMessage("mail ops@example.com about db1.internal.lan")])
    store.add_messages("w", [HumanMessage("a well-known e-mail trick")])
    assert [h.session_id for h in store.search("db1.internal.lan")] == ["h"]
    assert [h.session_id for h in store.search("ops@example.com")] == ["h"]
    assert [h.session_id for h in store.search("e-mail")] == ["w"]
    assert [h.session_id for h in store.search("well* known")] == ["w"]


def test_snippets_of_text_holding_the_headline_marks_are_made_in_python(store):
    text = "control \x01 chars \x02 around penguins"
    store.add_messages("s", [HumanMessage(text)])
    (hit,) = store.search("penguin")
    assert hit.snippet == "control \x01 chars \x02 around **penguins**"


# -- session settings ---------------------------------------------------------------------
def test_session_settings_are_stored_exactly(store, url):
    system = "Be terse.\x00 Really."  # text cannot hold NUL: kept as JSON beside it
    options = {"temperature": 0.2, "stop": ["\x00", "é"], "num_ctx": 8192}
    store.update_session("s", system=system, options=options)
    store.update_session("s", model="phi3")  # leaves them as they are
    info = store.get_session("s")
    assert (info.system, info.options, info.model) == (system, options, "phi3")
    assert [s.system for s in store.list_sessions()] == [system]
    with admin(url) as conn:
        row = conn.execute(
            f'SELECT system, system_json, options FROM "{schema_of(url)}".sessions'
        ).fetchone()
    assert row[0] == "Be terse.  Really." and json.loads(row[1]) == system
    store.update_session("s", system="plain")
    assert store.get_session("s").system == "plain"
    with admin(url) as conn:
        (exact,) = conn.execute(f'SELECT system_json FROM "{schema_of(url)}".sessions').fetchone()
    assert exact is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"options": {"f": object()}}, "JSON"), ({"system": "\ud800"}, "Unicode")],
)
def test_bad_session_settings_fail_before_anything_is_written(store, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        store.update_session("s", **kwargs)
    assert store.get_session("s") is None


def test_a_pre_settings_schema_is_upgraded_and_keeps_its_sessions(url):
    schema = schema_of(url)
    with admin(url) as conn:  # as ollang left it before m003 (m001, m002)
        assert apply_migrations(conn, schema, upto=2) == [name for name, _ in MIGRATIONS[:2]]
        conn.execute(
            f'INSERT INTO "{schema}".sessions (id, title, created, updated) '
            "VALUES ('old', 'Old one', 1, 1)"
        )
    with PostgresChatStore(url) as s:
        info = s.get_session("old")
        assert (info.title, info.system, info.options) == ("Old one", None, None)
        s.update_session("old", system="kept", options={"seed": 1})
        s.add_messages("old", [image_message("and now a picture", PNG)])
        info = s.get_session("old")
        assert (info.title, info.system, info.options) == ("Old one", "kept", {"seed": 1})
        assert s.get_messages("old")[0].content[1]["base64"] == base64.b64encode(PNG).decode()


# -- images ---------------------------------------------------------------------------------
def image_count(url: str) -> int:
    with admin(url) as conn:
        return conn.execute(f'SELECT count(*) FROM "{schema_of(url)}".images').fetchone()[0]


def test_each_image_is_stored_once_and_goes_with_its_last_message(store, url):
    for i in range(5):
        store.add_messages("a", [image_message(f"look {i}", PNG)])
    store.add_messages("b", [image_message("another", OTHER, PNG)])
    schema = schema_of(url)
    with admin(url) as conn:
        rows = conn.execute(
            f'SELECT hash, mime, data FROM "{schema}".images ORDER BY data'
        ).fetchall()
        blocks = [r[0] for r in conn.execute(f'SELECT content_json FROM "{schema}".messages')]
        (links,) = conn.execute(f'SELECT count(*) FROM "{schema}".message_images').fetchone()
    assert sorted(bytes(r[2]) for r in rows) == sorted([PNG, OTHER])
    assert {bytes(r[0]).hex() for r in rows} == {
        hashlib.sha256(x).hexdigest() for x in (PNG, OTHER)
    }
    assert {r[1] for r in rows} == {"image/png"} and links == 7
    assert all("base64" not in b and "ollang_image" in b for b in blocks), "no inline copies"
    store.delete_session("b")
    assert image_count(url) == 1  # OTHER went; PNG is still in "a"
    first = store.get_messages("a")[0]
    store.delete_messages("a", [m.id for m in store.get_messages("a")][:4])
    assert image_count(url) == 1
    store.delete_messages("a", [m.id for m in store.get_messages("a")])
    assert image_count(url) == 0
    assert first.content[1]["base64"] == base64.b64encode(PNG).decode()
    with admin(url) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{schema}".message_images').fetchone() == (0,)


def test_images_survive_renames_forks_upserts_and_batches(store):
    message = image_message("what is this?", PNG)
    store.add_messages("a", [message])
    store.add_messages("a", [message])  # the same again: unchanged, still linked
    store.rename_session("a", "b")
    assert store.fork_session("b", "c") == 1
    store.delete_session("b")  # the fork's copy keeps the image
    with store.batch():
        store.add_messages("c", [image_message("and this?", OTHER, OTHER)])
    got = store.get_messages("c")
    assert got[0].content == message.content
    assert [block.get("base64") for block in got[1].content[1:]] == [
        base64.b64encode(OTHER).decode()
    ] * 2


def test_a_window_of_text_never_looks_images_up(store, monkeypatch):
    store.add_messages("text", turn(1))
    store.add_messages("pics", [image_message("look", PNG)])
    monkeypatch.setattr(store._sql, "fetch_images", "SELECT broken syntax")
    assert len(store.get_messages("text", limit=100)) == 2  # one statement: never used
    with pytest.raises(StoreError):
        store.get_messages("pics")


def test_an_image_gone_between_the_two_reads_is_read_again_on_one_snapshot(store, monkeypatch):
    store.add_messages("pics", [image_message("look", PNG)])
    # Images found only on a snapshot: the first (autocommit) read misses them all.
    only_on_snapshot = (
        store._sql.fetch_images
        + " AND current_setting('transaction_isolation') = 'repeatable read'"
    )
    monkeypatch.setattr(store._sql, "fetch_images", only_on_snapshot)
    (message,) = store.get_messages("pics")
    assert message.content[1]["base64"] == base64.b64encode(PNG).decode()


def _wait_for_lock_wait(url: str) -> None:
    with admin(url) as conn:
        for _ in range(200):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("nothing waits for a lock")


@pytest.mark.parametrize("deletes", ["messages", "session"])
@pytest.mark.parametrize("first", ["writer", "deleter"])
def test_deleting_an_images_last_message_while_another_links_it_keeps_it(
    store, url, first, deletes
):
    """A writer linking an image and a deleter removing its last link, racing either way:
    the image stays, and the writer's message reads back whole. (Writer first, the
    delete's one statement fails on the images' foreign key and it deletes again the
    careful way; deleter first, the writer waits and stores the image anew.)"""
    store.add_messages("old", [image_message("old", PNG)])
    doomed = [m.id for m in store.get_messages("old")]
    with PostgresChatStore(url) as other:
        hold, go = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def holder(fn) -> None:
            try:
                with other.batch():  # its transaction stays open until `go`
                    fn()
                    hold.set()
                    go.wait(30)
            except BaseException as err:  # surfaced by the asserts below
                errors.append(err)
                hold.set()

        write = lambda s: s.add_messages("new", [image_message("new", PNG)])  # noqa: E731
        delete = (
            (lambda s: s.delete_messages("old", doomed))
            if deletes == "messages"
            else (lambda s: s.delete_session("old"))
        )
        held, racing = (write, delete) if first == "writer" else (delete, write)
        t = threading.Thread(target=holder, args=(lambda: held(other),))
        t.start()
        assert hold.wait(30) and not errors, errors
        racer = threading.Thread(target=lambda: racing(store))
        racer.start()
        _wait_for_lock_wait(url)  # the racer waits for the holder's lock on the image
        go.set()
        t.join(30)
        racer.join(30)
        assert not errors, errors
    assert store.get_messages("old") == []
    (message,) = store.get_messages("new")
    assert message.content[1]["base64"] == base64.b64encode(PNG).decode()
    assert image_count(url) == 1


# -- ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "message_id",
    ["0123456789abcdef0123456789abcdef", "0123456789abcdef", "é" * 8, "x" * 15, "x" * 17, "ÿ", ""],
)
def test_message_ids_are_stored_one_to_one(message_id):
    stored = encode_id(message_id)
    assert decode_id(stored) == message_id
    assert (len(stored) == 16) == (len(message_id) == 32 and message_id.isalnum())


def test_ids_of_sixteen_utf8_bytes_do_not_collide_with_uuids(store):
    tricky = "0123456789abcdef"  # 16 bytes of UTF-8, like a uuid's 16 raw bytes
    store.add_messages("s", [HumanMessage("a", id=tricky), HumanMessage("b", id="é" * 8)])
    assert [m.id for m in store.get_messages("s")] == [tricky, "é" * 8]
    assert store.delete_messages("s", [tricky]) == 1


# -- streaming flushes ---------------------------------------------------------------------
def test_a_flushed_reply_is_one_row_updated_in_place(store, url):
    store.add_messages("s", [HumanMessage("tell me a story")])
    reply = AIMessage("Once")
    set_message_status(reply, "interrupted")
    store.add_messages("s", [reply])
    table = f'"{schema_of(url)}".messages'
    with admin(url) as conn:
        (seq_before,) = conn.execute(f"SELECT seq FROM {table} WHERE role = 'ai'").fetchone()
        for text in ("Once upon", "Once upon a", "Once upon a time"):
            store.add_messages("s", [AIMessage(text, id=reply.id)])
        (version,) = conn.execute(f"SELECT xmin::text FROM {table} WHERE role = 'ai'").fetchone()
        store.add_messages("s", [AIMessage("Once upon a time", id=reply.id)])  # unchanged
        rows = conn.execute(f"SELECT seq, xmin::text, content FROM {table} WHERE role = 'ai'")
        assert rows.fetchall() == [(seq_before, version, "Once upon a time")]
    got = store.get_messages("s")
    assert [m.content for m in got] == ["tell me a story", "Once upon a time"]
    assert message_status(got[1]) == "complete" and store.get_session("s").message_count == 2


def _processes():
    # fork, not spawn: a spawned child re-imports LangChain (seconds on 2 cores). The
    # parent holds no open connection here, and the store starts afresh after a fork.
    return multiprocessing.get_context("fork")


# -- batches (the server's store writer) ---------------------------------------------------
def test_a_batch_commits_its_calls_together_and_undoes_only_a_failing_one(store, url):
    with PostgresChatStore(url) as other:
        with store.batch():
            store.add_messages("a", [HumanMessage("one")])
            store.claim_session("b", "key")
            with pytest.raises(SessionExistsError):
                store.rename_session("a", "b")
            store.add_messages("a", [AIMessage("two")])
            assert [m.content for m in store.get_messages("a")] == ["one", "two"]  # its own
            assert other.get_messages("a") == [] and other.get_session("b") is None
            with store.batch():  # nested: part of the outer one
                store.update_session("a", title="Kept")
        assert [m.content for m in other.get_messages("a")] == ["one", "two"]
        assert other.get_session("a").title == "Kept" and other.get_session("b").owner == "key"


def test_a_batch_whose_commit_fails_stores_nothing_and_the_store_goes_on(store, url):
    store.add_messages("s", [HumanMessage("before")])
    with pytest.raises(StoreUnavailableError), store.batch():
        store.add_messages("s", [HumanMessage("lost with the batch")])
        with admin(url) as conn:  # the batch's connection dies before its COMMIT
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE state = 'idle in transaction' AND pid <> pg_backend_pid()"
            )
    assert [m.content for m in store.get_messages("s")] == ["before"]
    with store.batch():
        store.add_messages("s", [HumanMessage("after")])
    assert [m.content for m in store.get_messages("s")] == ["before", "after"]


@pytest.mark.parametrize("how", ["batch", "call"])
def test_a_pool_replaced_by_another_thread_meanwhile_is_not_an_error(store, how, monkeypatch):
    # The race CI found: a thread takes the pool, another replaces it after an outage
    # (_replace_stuck_pool) and closes the old one; the first then asks the closed pool.
    db = store._db
    store.add_messages("s", [HumanMessage("before")])
    stale = db._pool
    db._pool = db._new_pool()
    stale.close()
    real, handed = db._get_pool, []

    def stale_once():
        if not handed:
            handed.append(stale)
            return stale
        return real()

    monkeypatch.setattr(db, "_get_pool", stale_once)
    if how == "batch":
        with store.batch():
            store.add_messages("s", [HumanMessage("after")])
    else:
        store.add_messages("s", [HumanMessage("after")])
    assert handed == [stale]
    assert [m.content for m in store.get_messages("s")] == ["before", "after"]


# -- migrations -------------------------------------------------------------------------
def test_migrations_are_recorded_once_and_reopening_applies_nothing(url):
    PostgresChatStore(url).close()
    PostgresChatStore(url).close()
    with admin(url) as conn:
        names = [r[0] for r in conn.execute(f'SELECT name FROM "{schema_of(url)}".migrations')]
    assert sorted(names) == sorted(name for name, _ in MIGRATIONS)


def test_an_older_schema_is_upgraded_keeping_its_messages(url):
    schema = schema_of(url)
    with admin(url) as conn:
        assert apply_migrations(conn, schema, upto=1) == [MIGRATIONS[0][0]]
        conn.execute(
            f'INSERT INTO "{schema}".sessions (id, created, updated, message_count) '
            "VALUES ('old', 1, 1, 1)"
        )
        conn.execute(
            f'INSERT INTO "{schema}".messages (session_key, id, role, content, created) '
            f"SELECT key, 'm1'::bytea, 'human', 'kept across the upgrade', 1 "
            f'FROM "{schema}".sessions'
        )
    with PostgresChatStore(url) as s:
        assert [m.content for m in s.get_messages("old")] == ["kept across the upgrade"]
        assert [h.message_id for h in s.search("upgrade")] == ["m1"]


def test_a_database_from_a_newer_ollang_is_refused(url):
    PostgresChatStore(url).close()
    with admin(url) as conn:
        conn.execute(
            f'INSERT INTO "{schema_of(url)}".migrations VALUES (%s, %s)', ("m999_future", 1.0)
        )
    with pytest.raises(StoreError, match="newer ollang") as info:
        PostgresChatStore(url)
    assert info.value.hint == "upgrade ollang"


def test_a_schema_of_another_application_is_refused_and_left_alone(url):
    schema = schema_of(url)
    with admin(url) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".users (name text)')
    with pytest.raises(NotAnOllangDatabaseError, match="users"):
        PostgresChatStore(url)
    with admin(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
    assert tables == [("users",)]


def _open_and_close(store_url: str) -> None:
    PostgresChatStore(store_url).close()


def test_processes_opening_a_new_database_at_once_migrate_it_once(url):
    ctx = _processes()
    procs = [ctx.Process(target=_open_and_close, args=(url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with admin(url) as conn:
        (count,) = conn.execute(f'SELECT count(*) FROM "{schema_of(url)}".migrations').fetchone()
    assert count == len(MIGRATIONS)


# -- concurrency across processes -----------------------------------------------------------
def _claimer(store_url: str, owner: str, start: float, results) -> None:
    with PostgresChatStore(store_url) as s:
        time.sleep(max(0.0, start - time.time()))
        results.put((owner, s.claim_session("contested", owner)))


def test_claims_racing_from_processes_have_exactly_one_winner(url):
    PostgresChatStore(url).close()
    ctx = _processes()
    results = ctx.Queue()
    start = time.time() + 1.5  # all of them forked and connected by then
    procs = [ctx.Process(target=_claimer, args=(url, f"key{n}", start, results)) for n in range(6)]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    winners = [owner for owner, won in outcomes.items() if won]
    assert len(winners) == 1, outcomes
    with PostgresChatStore(url) as s:
        assert s.get_session("contested").owner == winners[0]


def _writer(store_url: str, n: int, turns: int) -> None:
    with PostgresChatStore(store_url) as s:
        for i in range(turns):
            s.add_messages("shared", [HumanMessage(f"p{n}-{i}"), AIMessage(f"p{n}-{i} reply")])
            s.get_messages("shared", limit=10)


@pytest.mark.reliability("Load", "PostgreSQL: 8 processes x 25 turns into one session")
def test_processes_writing_one_session_lose_nothing_and_keep_each_writers_order(url, ledger):
    PostgresChatStore(url).close()
    ctx = _processes()
    procs = [ctx.Process(target=_writer, args=(url, n, 25)) for n in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    with PostgresChatStore(url) as s:
        texts = [str(m.content) for m in s.get_messages("shared")]
        assert s.get_session("shared").message_count == 400
    sent = [x for n in range(8) for i in range(25) for x in (f"p{n}-{i}", f"p{n}-{i} reply")]
    assert ledger.account(sent, texts) == 0
    assert len(texts) == len(set(texts)) == 400
    for n in range(8):
        mine = [t for t in texts if t.startswith(f"p{n}-")]
        assert mine == [x for i in range(25) for x in (f"p{n}-{i}", f"p{n}-{i} reply")]
    ledger.note = "400 messages stored, none duplicated, each writer's order kept"


def test_threads_share_one_store(store):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(30):
                store.add_messages("t", [HumanMessage(f"t{n}-{i}")])
                store.get_messages("t", limit=5)
        except BaseException as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]  # > pool_size
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get_session("t").message_count == 360


# -- URLs, configuration, the password -------------------------------------------------------
def test_open_store_accepts_both_schemes_and_the_environment(server, url, monkeypatch):
    for scheme_url in (url, url.replace("postgresql://", "postgres://", 1)):
        with open_store(scheme_url) as s:
            assert isinstance(s, PostgresChatStore) and s.schema == schema_of(url)
            s.add_messages("s", [HumanMessage("hi")])
    monkeypatch.setenv("OLLANG_STORE_URL", url)
    with open_store() as s:
        assert [m.content for m in s.get_messages("s")] == ["hi", "hi"]
        assert server.password not in repr(s) and "***" in repr(s)


def test_unknown_postgres_spellings_get_a_hint_without_the_password():
    with pytest.raises(UnknownStoreURLError) as info:
        open_store("postgresql+psycopg://me:hunter2@db/x")
    assert "hunter2" not in str(info.value) and "postgresql://" in info.value.hint


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p@w/d@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db?user=u&password=pw&x=1", "postgresql://h/db?user=u&password=***&x=1"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("/tmp/x.db", "/tmp/x.db"),
    ],
)
def test_redact_url(raw, shown):
    assert redact_url(raw) == shown


def test_down_at_start_names_the_host_never_the_password(caplog):
    port = free_port()  # nothing listens there
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailableError) as info:
        open_store(f"postgresql://ollang:hunter2-secret@127.0.0.1:{port}/db")
    err = info.value
    assert err.http_status == 503
    assert f"127.0.0.1:{port}" in str(err) and "refused" in str(err).lower()
    assert f"127.0.0.1:{port}" in err.hint
    everything = str(err) + err.hint + caplog.text + repr(err.__cause__)
    assert "hunter2" not in everything


def test_a_wrong_password_is_a_store_error_that_does_not_repeat_it(server):
    bad = server.url.replace(f":{server.password}@", ":not-the-password@")
    with pytest.raises(StoreError) as info:
        open_store(bad)
    assert not isinstance(info.value, StoreUnavailableError)  # retrying will not help
    assert "authentication failed" in str(info.value)
    assert "not-the-password" not in str(info.value) + info.value.hint
    assert "***" in info.value.hint


def test_cli_with_postgres_down_prints_one_error_without_traceback_or_password(tmp_path):
    port = free_port()
    env = pg.serve_env("", "127.0.0.1:1", tmp_path)
    env["OLLANG_STORE_URL"] = f"postgresql://ollang:hunter2-secret@127.0.0.1:{port}/db"
    result = cli("sessions", env=env)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert err.startswith("error: ") and f"127.0.0.1:{port}" in err and "hint: " in err
    assert "Traceback" not in err and "hunter2" not in err + result.stdout.decode()


def test_without_psycopg_the_error_says_what_to_install():
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from ollang.memory import open_store\n"
        "from ollang.memory.errors import StoreError\n"
        "try:\n    open_store('postgresql://u:hunter2@127.0.0.1:1/db')\n"
        "except StoreError as err:\n    print(err, '|', err.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "not installed" in out.stdout and 'pip install "ollang[postgres]"' in out.stdout
    assert "hunter2" not in out.stdout + out.stderr


# -- restarts ------------------------------------------------------------------------------
@pytest.fixture
def restartable(own_cluster) -> Iterator[str]:
    """A store URL on the cluster the tests may stop, with a short wait for connections."""
    if own_cluster._stopped:  # a failed test may have left it down
        own_cluster.start()
    with pg.fresh_schema_url(own_cluster.url) as fresh:
        yield pg.with_params(fresh, pool_timeout="1.5")
    if own_cluster._stopped:
        own_cluster.start()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_is_503_meanwhile_and_the_pool_reconnects_by_itself(
    own_cluster, restartable, mode, caplog
):
    caplog.set_level(logging.DEBUG)
    with PostgresChatStore(restartable) as s:
        s.add_messages("s", turn(1))
        own_cluster.stop(mode)
        with pytest.raises(StoreUnavailableError) as info:
            s.add_messages("s", turn(2))
        assert f"127.0.0.1:{own_cluster.port}" in info.value.hint
        with pytest.raises(StoreUnavailableError):
            s.get_messages("s")
        own_cluster.start()
        # The same store object: no reopening, no process restart.
        s.add_messages("s", turn(3))
        assert [m.content for m in s.get_messages("s")] == [
            "question 1",
            "answer 1",
            "question 3",
            "answer 3",
        ]
    assert own_cluster.password not in caplog.text


def test_a_restart_while_idle_is_invisible(own_cluster, restartable):
    with PostgresChatStore(restartable) as s:
        s.add_messages("s", turn(1))
        own_cluster.stop("fast")
        own_cluster.start()
        # Every pooled connection is dead now; the first operation still works.
        assert len(s.get_messages("s")) == 2
        s.add_messages("s", turn(2))
        own_cluster.stop("fast")
        own_cluster.start()
        with s.batch():  # a batch's first statement finds a dead connection too
            s.add_messages("s", turn(3))
        assert s.get_session("s").message_count == 6


def test_an_outage_is_one_concise_log_line_however_many_reconnection_attempts(
    own_cluster, restartable, caplog
):
    caplog.set_level(logging.WARNING)
    with PostgresChatStore(restartable) as s:
        s.add_messages("s", turn(1))
        for outage in (1, 2):
            own_cluster.stop("fast")
            deadline = time.monotonic() + 4  # the pool tries again and again meanwhile
            while time.monotonic() < deadline:
                with pytest.raises(StoreUnavailableError):
                    s.get_messages("s")
            own_cluster.start()
            s.add_messages("s", turn(outage + 1))
            pool = [r for r in caplog.records if r.name.startswith("psycopg")]
            assert len(pool) == outage, [r.getMessage() for r in pool]
            line = pool[-1].getMessage()
            # The first failed attempt's reason: refused, or (an attempt that met the
            # server while it shut down, on a slow machine) the connection closed.
            assert re.fullmatch(
                rf"PostgreSQL store at 127\.0\.0\.1:{own_cluster.port} unreachable "
                r"\((Connection refused|server closed the connection unexpectedly)\); "
                r"reconnecting in the background",
                line,
            ), line
        assert s.get_session("s").message_count == 6
    assert own_cluster.password not in caplog.text


@pytest.mark.reliability(
    "Faults", "PostgreSQL restarted under the server: 503 with a hint, then ok"
)
def test_server_answers_503_while_postgres_restarts_then_works(
    own_cluster, restartable, tmp_path, ledger
):
    with FakeOllama() as fake:
        proc, port = pg.start_serve(restartable, fake.host_port, tmp_path)
        base = f"http://127.0.0.1:{port}"
        try:
            first = httpx.post(f"{base}/chat", json={"message": "before", "session_id": "s"})
            assert first.status_code == 200, first.text
            own_cluster.stop("fast")
            down = httpx.post(
                f"{base}/chat", json={"message": "during", "session_id": "s"}, timeout=30
            )
            assert down.status_code == 503, down.text
            body = down.json()
            assert f"127.0.0.1:{own_cluster.port}" in body["hint"], body
            assert httpx.get(f"{base}/sessions/s", timeout=30).status_code == 503
            own_cluster.start()
            after = httpx.post(
                f"{base}/chat", json={"message": "after", "session_id": "s"}, timeout=30
            )
            assert after.status_code == 200, after.text
            stored = httpx.get(f"{base}/sessions/s").json()["messages"]
        finally:
            proc.terminate()
            proc.wait(10)
    texts = [m["content"] for m in stored if m["role"] == "human"]
    assert ledger.account(["before", "after"], texts) == 0
    log = pg.serve_log(tmp_path, port)
    assert own_cluster.password not in log and "Traceback" not in log, log[-3000:]


# -- ollang sessions migrate ---------------------------------------------------------------
def _fill(store: ChatStore) -> None:
    store.claim_session("owned", "key-hash-1")
    store.add_messages("owned", turn(1))
    stopped = AIMessage("half an ans", response_metadata={"model_name": "llama3"})
    set_message_status(stopped, "interrupted")
    thought = AIMessage("42", additional_kwargs={"reasoning_content": "think"}, id="custom-id")
    store.add_messages("local", [HumanMessage("q"), stopped, HumanMessage("q2"), thought])
    store.update_session("local", title="My title")


def test_sessions_migrate_copies_everything_and_is_idempotent(url, tmp_path):
    db = tmp_path / "old.db"
    with SQLiteChatStore(db) as old:
        _fill(old)
        want = {s.id: (s, old.get_messages(s.id)) for s in old.list_sessions()}
    env = pg.serve_env("", "127.0.0.1:1", tmp_path)
    outputs = []
    for _ in range(2):
        result = cli("sessions", "migrate", "--from", f"sqlite:///{db}", "--to", url, env=env)
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout.decode())
    assert "copied 2 sessions, 6 messages (6 new)" in outputs[0]
    assert "copied 2 sessions, 6 messages (0 new)" in outputs[1]
    assert pg.server().password not in "".join(outputs)
    with PostgresChatStore(url) as new:
        assert [s.id for s in new.list_sessions()] == list(want)
        for sid, (info, messages) in want.items():
            got = new.get_session(sid)
            assert (got.title, got.model, got.owner, got.message_count) == (
                info.title,
                info.model,
                info.owner,
                info.message_count,
            )
            assert new.get_messages(sid) == messages  # ids, statuses, times, metadata


def test_sessions_migrate_never_hands_a_session_to_another_owner(url, tmp_path):
    db = tmp_path / "old.db"
    with SQLiteChatStore(db) as old:
        old.claim_session("s", "alice")
        old.add_messages("s", [HumanMessage("alice's")])
    with PostgresChatStore(url) as new:
        new.claim_session("s", "bob")
    env = pg.serve_env("", "127.0.0.1:1", tmp_path)
    result = cli("sessions", "migrate", "--from", f"sqlite:///{db}", "--to", url, env=env)
    assert result.returncode == 0 and "skipped 1 sessions" in result.stderr.decode()
    with PostgresChatStore(url) as new:
        assert new.get_session("s").owner == "bob" and new.get_messages("s") == []


def test_sessions_migrate_to_the_same_store_is_a_usage_error(tmp_path):
    env = pg.serve_env("", "127.0.0.1:1", tmp_path)
    same = f"sqlite:///{tmp_path / 'x.db'}"
    result = cli("sessions", "migrate", "--from", same, "--to", same, env=env)
    assert result.returncode == 2 and "same store" in result.stderr.decode()


def test_json_snapshot_of_a_session_is_the_same_on_both_stores(url, tmp_path):
    """Export the same session from SQLite and PostgreSQL: byte-identical JSON."""
    from ollang.memory.export import dumps, export_json

    with SQLiteChatStore(tmp_path / "a.db") as a, PostgresChatStore(url) as b:
        _fill(a)
        from ollang.memory.transfer import copy_sessions

        copy_sessions(a, b)
        for sid in ("owned", "local"):
            ja = json.loads(dumps(export_json(a.get_session(sid), a.get_messages(sid))))
            jb = json.loads(dumps(export_json(b.get_session(sid), b.get_messages(sid))))
            for data in (ja, jb):  # the session's own times are the copy's (see transfer.py)
                data["session"].pop("created", None)
                data["session"].pop("updated", None)
            assert ja == jb


def test_the_store_keeps_nothing_per_process_that_a_second_store_does_not_see(url):
    """Two store objects on one database (as two replicas): each sees the other's writes."""
    with PostgresChatStore(url) as a, PostgresChatStore(url) as b:
        a.claim_session("s", "k")
        a.add_messages("s", [HumanMessage("from a")])
        reply = AIMessage("partial")
        b.add_messages("s", [reply])
        a.add_messages("s", [AIMessage("partial, then finished", id=reply.id)])
        assert [m.content for m in b.get_messages("s")] == ["from a", "partial, then finished"]
        assert b.claim_session("s", "other") is False and b.get_session("s").message_count == 2
        assert [h.session_id for h in b.search("finished")] == ["s"]


def test_time_comes_from_the_database_and_orders_sessions(store):
    before = time.time()
    store.add_messages("first", [HumanMessage("x")])
    store.add_messages("second", [HumanMessage("y")])
    infos = store.list_sessions()
    assert [s.id for s in infos] == ["second", "first"]
    assert infos[0].updated > infos[1].updated >= before - 5  # same machine, same clock


# -- snapshots of a streaming reply (issue 24) --------------------------------------------
def test_snapshots_stay_out_of_search_until_final_and_a_crashed_one_is_found(url):
    from langchain_core.messages import AIMessage

    from ollang.memory import message_status

    with PostgresChatStore(url) as s:
        s.add_messages("s", [HumanMessage("tell me about walruses")])
        s.add_snapshot("s", AIMessage("Walruses are large", id="r1"))
        assert message_status(s.get_messages("s")[-1]) == "interrupted"
        assert s.get_session("s").message_count == 2
        assert s.search("large") == []  # a snapshot: outside the (partial) index
        s.add_messages("s", [AIMessage("Walruses are large mammals.", id="r1")])
        assert [h.message_id for h in s.search("mammals")] == ["r1"]
        s.add_snapshot("t", AIMessage("Narwhals have a tusk", id="r2"))
        s.fork_session("t", "copy")  # a copy is finished: cut short, and searchable
        assert message_status(s.get_messages("copy")[-1]) == "interrupted"
        assert [h.session_id for h in s.search("tusk")] == ["copy"]
    # The replica "died" mid-answer: the next store opened marks the snapshot cut short.
    with PostgresChatStore(url) as s:
        assert sorted(h.session_id for h in s.search("tusk")) == ["copy", "t"]
        with admin(url) as conn:
            statuses = conn.execute(
                f'SELECT status FROM "{schema_of(url)}".messages WHERE status IS NOT NULL'
            ).fetchall()
        assert {row[0] for row in statuses} == {"interrupted"}
