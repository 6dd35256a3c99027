"""Session owners: claiming, filtering, and racing claimants (both stores)."""

from __future__ import annotations

import threading

from langchain_core.messages import AIMessage, HumanMessage

from ollang.memory import InMemoryChatStore, SQLiteChatStore

# `store` (tests/conftest.py): an empty store, once per backend (memory, SQLite, PostgreSQL).


def test_claim_creates_the_session_owned_by_the_claimant(store):
    assert store.claim_session("s", "alice") is True
    info = store.get_session("s")
    assert info is not None and info.owner == "alice" and info.message_count == 0


def test_claim_is_idempotent_for_the_owner_and_refused_to_others(store):
    assert store.claim_session("s", "alice")
    assert store.claim_session("s", "alice")
    assert store.claim_session("s", "bob") is False
    assert store.get_session("s").owner == "alice"  # never handed over


def test_owner_survives_messages_updates_and_renames(store):
    store.claim_session("s", "alice")
    store.add_messages("s", [HumanMessage("hi"), AIMessage("hello")])
    store.update_session("s", title="Greeting", model="m")
    store.rename_session("s", "t")
    info = store.get_session("t")
    assert (info.owner, info.message_count, info.title) == ("alice", 2, "Greeting")


def test_a_fork_belongs_to_the_owner_of_its_source(store):
    store.claim_session("s", "alice")
    store.add_messages("s", [HumanMessage("hi"), AIMessage("hello")])
    assert store.fork_session("s", "s2") == 2
    assert store.get_session("s2").owner == "alice"
    assert store.claim_session("s2", "bob") is False
    assert [x.id for x in store.list_sessions(owner="alice")] == ["s2", "s"]
    store.add_messages("u", [HumanMessage("unowned")])
    store.fork_session("u", "u2")
    assert store.get_session("u2").owner is None


def test_sessions_created_without_a_claim_have_no_owner_and_are_not_claimable(store):
    store.add_messages("local", [HumanMessage("from the CLI")])
    assert store.get_session("local").owner is None
    assert store.claim_session("local", "alice") is False


def test_no_owner_may_use_any_session(store):
    store.claim_session("s", "alice")
    assert store.claim_session("s", None) is True
    assert store.claim_session("new", None) is True
    assert store.get_session("new").owner is None


def test_list_sessions_filters_by_owner(store):
    store.claim_session("a1", "alice")
    store.claim_session("b1", "bob")
    store.claim_session("a2", "alice")
    store.add_messages("local", [HumanMessage("x")])
    assert [s.id for s in store.list_sessions(owner="alice")] == ["a2", "a1"]
    assert [s.id for s in store.list_sessions(owner="bob")] == ["b1"]
    assert {s.id for s in store.list_sessions()} == {"a1", "a2", "b1", "local"}
    assert store.list_sessions(owner="carol") == []


def test_racing_claimants_on_a_new_id_exactly_one_wins(tmp_path):
    path = tmp_path / "race.db"
    for round_ in range(20):
        stores = [SQLiteChatStore(path) for _ in range(4)]
        barrier = threading.Barrier(len(stores))
        results: dict[str, bool] = {}

        def claim(
            store: SQLiteChatStore,
            who: str,
            sid: str = f"s{round_}",
            barrier: threading.Barrier = barrier,
            results: dict[str, bool] = results,
        ) -> None:
            barrier.wait()
            results[who] = store.claim_session(sid, who)

        threads = [
            threading.Thread(target=claim, args=(s, f"owner{i}")) for i, s in enumerate(stores)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [who for who, won in results.items() if won]
        assert len(winners) == 1
        assert stores[0].get_session(f"s{round_}").owner == winners[0]
        for s in stores:
            s.close()


def test_racing_claimants_in_memory():
    store = InMemoryChatStore()
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def claim(who: str) -> None:
        barrier.wait()
        results.append(store.claim_session("s", who))

    threads = [threading.Thread(target=claim, args=(f"o{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_owner_persists_across_reopening(tmp_path):
    with SQLiteChatStore(tmp_path / "s.db") as s:
        s.claim_session("s", "alice")
    with SQLiteChatStore(tmp_path / "s.db") as s:
        assert s.get_session("s").owner == "alice"
        assert s.claim_session("s", "bob") is False
