"""The stores' prefix routes (cache-aware routing, issue 23): found, replaced, expired, bounded;
once for every backend (memory, SQLite, PostgreSQL when there is one)."""

from __future__ import annotations

import sqlite3
import time

from langchain_core.messages import AIMessage, HumanMessage

from ollang.memory import ChatStore, SQLiteChatStore
from ollang.memory.sqlite.migrations import MIGRATIONS
from ollang.routing.prefix import prefix_digests

MODEL = "llama3:latest"


def _digests(n: int, tag: str = "c") -> list[bytes]:
    messages = [
        HumanMessage(f"{tag} {i}") if i % 2 == 0 else AIMessage(f"{tag} {i}") for i in range(n)
    ]
    return prefix_digests(MODEL, messages)


def test_routes_are_found_by_digest_and_model(store: ChatStore):
    digests = _digests(6)
    assert store.find_prefix_routes(MODEL, digests) == {}
    store.record_prefix_routes(MODEL, [digests[1], digests[3]], "http://a:11434")
    assert store.find_prefix_routes(MODEL, digests) == {
        digests[1]: "http://a:11434",
        digests[3]: "http://a:11434",
    }
    assert store.find_prefix_routes("mistral:latest", digests) == {}
    assert store.find_prefix_routes(MODEL, []) == {}
    store.record_prefix_routes(MODEL, [], "http://a:11434")  # nothing to record


def test_a_later_record_replaces_the_host(store: ChatStore):
    digests = _digests(4)
    store.record_prefix_routes(MODEL, digests[:2], "http://a")
    store.record_prefix_routes(MODEL, digests[1:3], "http://b")
    assert store.find_prefix_routes(MODEL, digests) == {
        digests[0]: "http://a",
        digests[1]: "http://b",
        digests[2]: "http://b",
    }


def test_routes_expire(store: ChatStore):
    digests = _digests(3)
    store.prefix_route_max_age = 0.3
    store.record_prefix_routes(MODEL, digests[:1], "http://a")
    assert store.find_prefix_routes(MODEL, digests) == {digests[0]: "http://a"}
    time.sleep(0.4)
    store.record_prefix_routes(MODEL, digests[1:2], "http://b")
    assert store.find_prefix_routes(MODEL, digests) == {digests[1]: "http://b"}
    assert store.prune_prefix_routes() == 1  # the expired one is gone for good
    store.prefix_route_max_age = 3600
    assert store.find_prefix_routes(MODEL, digests) == {digests[1]: "http://b"}


def test_the_table_is_bounded_the_oldest_go_first(store: ChatStore):
    store.prefix_route_limit = 5
    store.prefix_route_prune_every = 1  # every record prunes
    for number in range(12):
        store.record_prefix_routes(
            MODEL, _digests(1, f"conversation {number}"), f"http://h{number}"
        )
        time.sleep(0.002)  # distinct times, on every clock
    newest = {d for number in range(7, 12) for d in _digests(1, f"conversation {number}")}
    everything = [d for number in range(12) for d in _digests(1, f"conversation {number}")]
    assert set(store.find_prefix_routes(MODEL, everything)) == newest
    store.prefix_route_limit = 2
    assert store.prune_prefix_routes() == 3
    assert len(store.find_prefix_routes(MODEL, everything)) == 2


def test_pruning_runs_once_in_so_many_records(store: ChatStore):
    store.prefix_route_limit = 1
    store.prefix_route_prune_every = 3
    for number in range(3):  # the first record prunes, the next two do not
        store.record_prefix_routes(MODEL, _digests(1, f"c{number}"), "http://a")
        time.sleep(0.002)
    everything = [d for number in range(4) for d in _digests(1, f"c{number}")]
    assert len(store.find_prefix_routes(MODEL, everything)) == 3
    store.record_prefix_routes(MODEL, _digests(1, "c3"), "http://a")  # the fourth prunes
    assert len(store.find_prefix_routes(MODEL, everything)) == 1


def test_a_lookup_of_many_prefixes_is_one_call(store: ChatStore):
    digests = _digests(1200)  # more than SQLite binds in one statement
    store.record_prefix_routes(MODEL, [digests[10], digests[1100]], "http://a")
    found = store.find_prefix_routes(MODEL, digests)
    assert found == {digests[10]: "http://a", digests[1100]: "http://a"}


def test_routes_are_written_in_the_writer_s_batches(store: ChatStore):
    digests = _digests(2)
    with store.batch():
        store.record_prefix_routes(MODEL, digests[:1], "http://a")
        assert store.find_prefix_routes(MODEL, digests) == {digests[0]: "http://a"}
    assert store.find_prefix_routes(MODEL, digests) == {digests[0]: "http://a"}


def test_sqlite_upgrade_adds_the_table_and_stores_digests_only(tmp_path):
    path = tmp_path / "old.db"
    names = [name for name, _ in MIGRATIONS]
    with SQLiteChatStore(path) as store:
        store.add_messages("s", [HumanMessage("secret question")])
    with sqlite3.connect(path) as db:  # as a store of the release before (no m008)
        db.execute("DROP TABLE prefix_routes")
        db.execute("DELETE FROM _ollang_migrations WHERE name = 'm008_prefix_routes'")
        db.execute(f"PRAGMA user_version = {names.index('m008_prefix_routes')}")
    with SQLiteChatStore(path) as store:
        digests = _digests(2)
        store.record_prefix_routes(MODEL, digests, "http://a")
        assert store.find_prefix_routes(MODEL, digests) == dict.fromkeys(digests, "http://a")
        assert [m.content for m in store.get_messages("s")] == ["secret question"]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT digest, model, host FROM prefix_routes").fetchall()
        assert sorted(rows) == sorted((d, MODEL, "http://a") for d in digests)
