"""The server's cache-aware routing lookup and records (ollang.server.prefix_routing), over an
in-memory store and a real store writer thread: what is found where, and that a failing or
slow store never fails a turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from ollang.memory import InMemoryChatStore
from ollang.server.prefix_routing import PrefixRouting
from ollang.server.writer import StoreWriter

MODEL = "llama3:latest"


class _Failing(InMemoryChatStore):
    def find_prefix_routes(self, model: str, digests: Sequence[bytes]) -> dict[bytes, str]:
        raise RuntimeError("the store is down")


class _Slow(InMemoryChatStore):
    def find_prefix_routes(self, model: str, digests: Sequence[bytes]) -> dict[bytes, str]:
        time.sleep(0.5)
        return super().find_prefix_routes(model, digests)


@pytest.fixture
def store() -> InMemoryChatStore:
    return InMemoryChatStore()


@pytest.fixture
def writer(store) -> Iterator[StoreWriter]:
    w = StoreWriter(store, linger=0.0)
    yield w
    w.close()


def _turn(history: list[BaseMessage], question: str) -> list[BaseMessage]:
    return [*history, HumanMessage(question)]


async def _serve(routing: PrefixRouting, messages: list[BaseMessage], host: str, reply: str):
    """One turn as the engine runs it: look up, first token on ``host``, answer."""
    found = await routing.lookup(MODEL, messages)
    routing.served(found, host)
    await routing.answered(found, AIMessage(reply), host)
    return found


def test_the_next_turn_is_found_in_this_process(store, writer):
    async def run():
        routing = PrefixRouting(store, writer)
        first = _turn([SystemMessage("terse")], "hi")
        found = await _serve(routing, first, "http://a", "hello")
        assert (found.host, found.source, found.matched) == (None, "none", 0)
        second = _turn([*first, AIMessage("hello")], "more")
        found = await routing.lookup(MODEL, second)
        assert (found.host, found.source, found.matched) == ("http://a", "cache", 3)
        # The same request again (a retry): its own digest.
        routing.served(found, "http://a")
        again = await routing.lookup(MODEL, second)
        assert (again.host, again.matched) == ("http://a", 4)
        assert (await routing.lookup("mistral:latest", second)).host is None

    asyncio.run(run())


def test_another_replica_finds_it_in_the_store(store, writer):
    async def run():
        one, two = PrefixRouting(store, writer), PrefixRouting(store, writer)
        first = _turn([], "hi")
        await _serve(one, first, "http://a", "hello")
        found = await two.lookup(MODEL, _turn([*first, AIMessage("hello ")], "more"))
        assert (found.host, found.source, found.matched) == ("http://a", "store", 2)
        # An edited answer: the request before it still names the host.
        edited = await two.lookup(MODEL, _turn([*first, AIMessage("bonjour")], "more"))
        assert (edited.host, edited.source, edited.matched) == ("http://a", "store", 1)

    asyncio.run(run())


def test_a_reply_is_in_the_store_when_answered_returns(store, writer):
    async def run():
        routing = PrefixRouting(store, writer)
        found = await _serve(routing, _turn([], "hi"), "http://a", "hello")
        return found

    found = asyncio.run(run())
    assert len(store.find_prefix_routes(MODEL, [found.digests[-1]])) == 1
    assert len(store._routes) == 2  # the request and the conversation with its answer


@pytest.mark.parametrize("kind", [_Failing, _Slow])
def test_a_failing_or_slow_store_leaves_this_process_s_memory(kind):
    store = kind()
    writer = StoreWriter(store, linger=0.0)

    async def run():
        routing = PrefixRouting(store, writer, timeout=0.1)
        first = _turn([], "hi")
        await _serve(routing, first, "http://a", "hello")
        # Two turns on: the cache lacks the last two prefixes, asks the store, which
        # cannot say; the cache's older record answers.
        third = [
            *first,
            AIMessage("hello"),
            HumanMessage("more"),
            AIMessage("x"),
            HumanMessage("y"),
        ]
        started = time.monotonic()
        found = await routing.lookup(MODEL, third)
        assert time.monotonic() - started < 0.4
        assert (found.host, found.source, found.matched) == ("http://a", "cache", 2)
        # Left out for a while: the next lookup does not wait for it.
        started = time.monotonic()
        await routing.lookup(MODEL, [HumanMessage("new")])
        assert time.monotonic() - started < 0.05

    try:
        asyncio.run(run())
    finally:
        writer.close()
