"""The server's store writer: batches, and the linger of unawaited writes."""

from __future__ import annotations

import asyncio
import threading
import time

from ollang.memory import InMemoryChatStore
from ollang.memory.errors import StoreUnavailableError
from ollang.server.writer import StoreWriter


def test_a_lone_flush_waits_for_company_at_most_the_linger():
    writer = StoreWriter(InMemoryChatStore(), linger=0.4)
    done = threading.Event()
    began = time.monotonic()
    writer.submit(done.set)
    assert not done.wait(0.15)  # lingering: a flush alone waits for others
    assert done.wait(2.0)  # ... but not longer than the linger
    assert 0.3 <= time.monotonic() - began < 1.5
    assert (writer.batches, writer.calls) == (1, 1)
    writer.close()


def test_an_awaited_call_ends_the_linger_and_takes_the_flushes_along():
    writer = StoreWriter(InMemoryChatStore(), linger=5.0)
    seen: list[str] = []

    async def main() -> float:
        writer.submit(seen.append, "flush 1")
        writer.submit(seen.append, "flush 2")
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await writer.call(seen.append, "question")
        return time.monotonic() - began

    waited = asyncio.run(main())
    assert waited < 1.0  # never held by the linger
    assert seen == ["flush 1", "flush 2", "question"]
    assert (writer.batches, writer.calls) == (1, 3)  # one transaction for the three
    writer.close()


def test_closing_runs_a_lingering_flush_at_once():
    writer = StoreWriter(InMemoryChatStore(), linger=30.0)
    done = threading.Event()
    writer.submit(done.set)
    time.sleep(0.05)
    began = time.monotonic()
    writer.close()
    assert done.is_set() and time.monotonic() - began < 5.0


def test_a_failed_background_write_is_one_line_for_a_store_error_a_traceback_for_a_bug(caplog):
    writer = StoreWriter(InMemoryChatStore(), linger=0.0)

    def down() -> None:
        raise StoreUnavailableError("cannot write to the PostgreSQL store at db:5432: refused")

    def bug() -> None:
        raise KeyError("oops")

    writer.submit(down)
    writer.submit(bug)
    writer.close()
    failed = [r for r in caplog.records if "background store write failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed] == [False, True]
    assert "db:5432: refused" in failed[0].getMessage()
