"""Rate windows in each store (memory, SQLite, PostgreSQL): the counters the keys' limits
are counted in (ollang.server.limits), atomic across processes on one database."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollang.memory import ChatStore, SQLiteChatStore
from ollang.memory.base import RATE_WINDOW_KEEP

MINUTE = int(time.time()) // 60 * 60  # this minute (older windows are pruned)


def test_take_rate_adds_within_the_limit_then_refuses_and_counts_nothing(store: ChatStore):
    taken = [store.take_rate("alice", "requests", MINUTE, 1, 3) for _ in range(5)]
    assert taken == [(True, 1), (True, 2), (True, 3), (False, 3), (False, 3)]
    assert store.rate("alice", "requests", MINUTE) == 3
    assert store.take_rate("alice", "requests", MINUTE + 60, 1, 3) == (True, 1)  # next window
    assert store.take_rate("bob", "requests", MINUTE, 1, 3) == (True, 1)  # another key
    assert store.take_rate("alice", "tokens", MINUTE, 2, 3) == (True, 2)  # another kind


def test_an_amount_over_the_limit_is_refused_even_in_a_new_window(store: ChatStore):
    assert store.take_rate("alice", "requests", MINUTE, 5, 3) == (False, 0)
    assert store.rate("alice", "requests", MINUTE) == 0
    assert store.take_rate("alice", "requests", MINUTE, 0, 0) == (True, 0)


def test_add_rate_counts_whatever_it_comes_to(store: ChatStore):
    assert store.add_rate("alice", "tokens", MINUTE, 150) == 150
    assert store.add_rate("alice", "tokens", MINUTE, 150) == 300
    assert store.take_rate("alice", "tokens", MINUTE, 1, 300) == (False, 300)
    assert store.rate("alice", "tokens", MINUTE + 60) == 0


def test_old_windows_are_pruned(store: ChatStore):
    store.add_rate("alice", "tokens-day", MINUTE, 5)
    store.add_rate("alice", "tokens-day", MINUTE + 86400, 7)
    assert store.prune_rates(MINUTE + 1) == 1
    assert store.rate("alice", "tokens-day", MINUTE) == 0
    assert store.rate("alice", "tokens-day", MINUTE + 86400) == 7


def test_counting_prunes_windows_older_than_two_days_now_and_then(store: ChatStore):
    old = int(time.time()) - RATE_WINDOW_KEEP - 60
    store.add_rate("alice", "requests", old, 1)  # the first count prunes (nothing yet)
    store.rate_prune_every = 2
    store.add_rate("alice", "requests", MINUTE, 1)  # the second does not
    assert store.rate("alice", "requests", old) == 1
    store.add_rate("alice", "requests", MINUTE, 1)  # the third does
    assert store.rate("alice", "requests", old) == 0


def test_counts_taken_in_a_batch_are_committed_with_it(store: ChatStore):
    with store.batch():
        assert store.take_rate("alice", "requests", MINUTE, 1, 1) == (True, 1)
        assert store.take_rate("alice", "requests", MINUTE, 1, 1) == (False, 1)
    assert store.rate("alice", "requests", MINUTE) == 1


@contextlib.contextmanager
def _two_stores(kind: str, directory: Path) -> Iterator[tuple[ChatStore, ChatStore]]:
    """Two stores on one database, each with its own connections (as two replicas have)."""
    if kind == "sqlite":
        with SQLiteChatStore(directory / "s.db") as a, SQLiteChatStore(directory / "s.db") as b:
            yield a, b
        return
    from tests import pg

    try:
        pg.server()
    except RuntimeError as err:
        pytest.skip(str(err))
    from ollang.memory.postgres.store import PostgresChatStore

    with pg.fresh_schema_url() as url, PostgresChatStore(url) as a, PostgresChatStore(url) as b:
        yield a, b


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_stores_on_one_database_take_exactly_the_limit_between_them(kind, tmp_path):
    """Four threads on two stores of one database take from one window at once: exactly
    ``limit`` takes succeed between them."""
    with _two_stores(kind, tmp_path) as (first, second):
        won: list[bool] = []

        def take(store: ChatStore) -> None:
            for _ in range(20):
                won.append(store.take_rate("alice", "requests", MINUTE, 1, 25)[0])

        threads = [threading.Thread(target=take, args=(s,)) for s in (first, second) * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert won.count(True) == 25 and len(won) == 80
        assert second.rate("alice", "requests", MINUTE) == 25
