"""Cache-aware routing of the server's turns that name no session (issue 23).

A stateless client (the OpenAI SDK on ``/v1/chat/completions``, Open WebUI on ``/api/chat``)
resends the whole conversation each turn. The turn engine asks :class:`PrefixRouting` where
the longest prefix of those messages was last served (:mod:`ollang.routing.prefix`), and
prefers that host as a named session prefers the host of its last answer: while it is up
and not full.

Where the routes live:

* the **session store** (:meth:`~ollang.memory.ChatStore.find_prefix_routes`), shared by
  every replica on it: one indexed query for all the prefixes of a request, on the store
  writer's thread (awaited, at most :data:`LOOKUP_TIMEOUT` seconds); records are handed to
  the writer without waiting (:meth:`~ollang.server.writer.StoreWriter.submit`);
* a :class:`~ollang.routing.prefix.PrefixCache` in this process, in front: when it holds the
  digest of the whole request or of all but its last message (the previous turn and its
  answer, recorded here), nothing longer can be known elsewhere and the store is not asked.

Two records per turn: at the first token, the request's messages -> host (handed to the
writer without waiting: committed while the answer streams); at the end, the conversation
*with the answer* -> host (what the next request begins with), committed before the client
is told the turn is done, as a session's final answer is: a client's next request may go
to another replica at once (handed over without waiting, one turn in sixteen found nothing
there in a test of two replicas). It waits at most :data:`LOOKUP_TIMEOUT` seconds, and goes
in the same batch as the turn's own final write when there is one. Routing is a
hint: a store that fails or is slow is skipped (for :data:`STORE_BACKOFF` seconds) and this
process's cache answers alone; the turn never fails for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import BaseMessage

from ollang.memory import ChatStore
from ollang.routing.prefix import PrefixCache, extend_digest, longest_known, prefix_digests
from ollang.server.writer import StoreWriter

__all__ = ["LOOKUP_TIMEOUT", "STORE_BACKOFF", "PrefixLookup", "PrefixRouting"]

log = logging.getLogger("ollang.server")

#: Longest wait for the store's answer before routing goes on without it (seconds).
LOOKUP_TIMEOUT = 0.5
#: Seconds the store is left out after it failed or was too slow to answer.
STORE_BACKOFF = 2.0

#: Where a lookup's answer came from: this process, the store, or nowhere.
Source = Literal["cache", "store", "none"]


@dataclass(slots=True)
class PrefixLookup:
    """What a turn's lookup found, and what its records need.

    Attributes:
        model: The model of the turn (the digests are per model).
        digests: The digest of each prefix of the request's messages.
        host: The host of the longest prefix known (the turn's affinity), or ``None``.
        matched: How many leading messages that prefix has (0: none known).
        source: Where it was found.
    """

    model: str
    digests: list[bytes]
    host: str | None = None
    matched: int = 0
    source: Source = "none"


def _record(store: ChatStore, model: str, digests: Sequence[bytes], host: str) -> None:
    """A record on the writer thread; a failure is only a lost hint (logged, not raised)."""
    try:
        store.record_prefix_routes(model, digests, host)
    except Exception as err:  # never fails a batch of other writes
        log.debug("a prefix route was not recorded: %s", err)


class PrefixRouting:
    """Finds and records where stateless conversations were served (module docstring).

    Args:
        store: The session store (shared by the replicas).
        writer: The store writer, through which the store is read and written.
        cache: This process's records (default: a new :class:`PrefixCache`).
        timeout: Longest wait for the store's answer (seconds).
    """

    def __init__(
        self,
        store: ChatStore,
        writer: StoreWriter,
        *,
        cache: PrefixCache | None = None,
        timeout: float = LOOKUP_TIMEOUT,
    ) -> None:
        self.store = store
        self.writer = writer
        self.cache = cache or PrefixCache(max_age=store.prefix_route_max_age)
        self.timeout = timeout
        self._skip_store_until = 0.0

    async def lookup(self, model: str, messages: Sequence[BaseMessage]) -> PrefixLookup:
        """Where the longest prefix of ``messages`` was served, for ``model``."""
        digests = prefix_digests(model, messages)
        found = PrefixLookup(model, digests)
        if not digests:
            return found
        start = max(0, len(digests) - 2)
        local = longest_known(digests[start:], self.cache.get)
        if local is not None:  # the previous turn (or this very request) was served here
            found.matched, found.host, found.source = start + local[0], local[1], "cache"
            return found
        if not any(m.type == "ai" for m in messages):
            # A conversation's first request continues none: no store query (at 200
            # stateless clients, one awaited store read a turn was a tenth of the CPU).
            return found
        best = await self._from_store(model, digests)
        source: Source = "store"
        if best is None:
            best, source = longest_known(digests, self.cache.get), "cache"
        if best is not None:
            found.matched, found.host = best
            found.source = source
        return found

    async def _from_store(self, model: str, digests: list[bytes]) -> tuple[int, str] | None:
        """The longest prefix the store knows; ``None`` also when it cannot say now."""
        if time.monotonic() < self._skip_store_until:
            return None
        try:
            known = await asyncio.wait_for(
                self.writer.call(self.store.find_prefix_routes, model, digests), self.timeout
            )
        except Exception as err:  # a hint: routing goes on without it
            self._skip_store_until = time.monotonic() + STORE_BACKOFF
            log.debug("prefix routes not read (left out for %g s): %r", STORE_BACKOFF, err)
            return None
        return longest_known(digests, known)

    def served(self, found: PrefixLookup, host: str) -> None:
        """The turn's first token came from ``host``: record its request's messages."""
        if found.digests:
            self._put(found.model, found.digests[-1:], host)

    async def answered(
        self, found: PrefixLookup, reply: BaseMessage, host: str, *, wait: bool = True
    ) -> None:
        """The turn's answer is complete: record the conversation with it (what the next
        turn's request begins with), committed when this returns (``wait``), or handed
        to the writer when the caller's next awaited write will carry it (not ``wait``)."""
        if not found.digests:
            return
        digests = [extend_digest(found.digests[-1], reply)]
        if not wait:
            self._put(found.model, digests, host)
            return
        self.cache.put(digests, host)
        call = self.writer.call(_record, self.store, found.model, digests, host)
        with contextlib.suppress(Exception):  # slow or failing: a hint lost, never the turn
            await asyncio.wait_for(call, self.timeout)

    def _put(self, model: str, digests: list[bytes], host: str) -> None:
        """Record in this process at once, and in the store through the writer (lingering
        for company: not awaited)."""
        self.cache.put(digests, host)
        self.writer.submit(_record, self.store, model, digests, host)
