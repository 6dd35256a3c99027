"""The waiting room: who gets a host's slot when every host that could serve is full.

When a request finds every candidate host at its ``max``, it waits here as a
:class:`Waiter`. Whenever a slot may have come free (a lease ended, a host came back,
a key dropped below its ``max_concurrent``), :meth:`WaitingRoom.dispatch` *gives* free
slots to chosen waiters, one each, through their futures: exactly one waiter wakes per
slot (no thundering herd, no race between the woken).

Policies (:data:`POLICIES`):

``fair`` (the default)
    The slot goes to the waiter whose key has the least recent use over its weight;
    first come, first served within one key. *Recent use* is the key's busy seconds on
    the hosts (the time its leases were held), exponentially decayed with a half-life of
    :data:`HALF_LIFE` seconds, plus the seconds its running leases have held so far.
    Busy seconds rather than tokens: they are known continuously (a turn's tokens only
    at its end), they charge a long prompt's evaluation as much as generated text, and
    they are what a slot is. The exponential decay needs two numbers per key (no window
    of events to keep), and a key idle for a few half-lives starts afresh.
``fifo``
    Arrival order, across every key (Ollama's own queue).
``unordered``
    A random waiter: a model of ollang before this module, where every waiter polled
    and whoever woke first won. Only for comparison (``bench/fair_bench.py``).

In every policy a key at its ``max_concurrent`` keeps its waiters queued until one of
its leases ends, and a waiter only takes a slot its own ``pick`` accepts (the right
model, not an excluded host). The room is pure: no I/O, no clock of its own (``clock``
is injected), slots of any type.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from ollang.errors import OllangError

__all__ = [
    "HALF_LIFE",
    "LOCAL",
    "POLICIES",
    "KeyShare",
    "Policy",
    "QueueFullError",
    "QueueKey",
    "Waiter",
    "WaitingRoom",
]

#: Seconds for a key's recorded busy time to count half as much.
HALF_LIFE = 60.0
#: The waiting-room policies (see the module docstring).
POLICIES = ("fair", "fifo", "unordered")
Policy = Literal["fair", "fifo", "unordered"]

S = TypeVar("S")


class QueueKey(Protocol):
    """What the room needs of a request's key (a managed key's policy fits)."""

    @property
    def name(self) -> str:
        """The key's name (metrics and usage are labelled with it, never the secret)."""
        ...

    @property
    def weight(self) -> float:
        """Its share: a key of weight 2 gets twice the busy time of a key of weight 1."""
        ...

    @property
    def max_concurrent(self) -> int | None:
        """The most leases it holds at once (``None``: no cap)."""
        ...


@dataclass(frozen=True)
class KeyShare:
    """A plain :class:`QueueKey`: a request without a managed key, or a test's."""

    name: str
    weight: float = 1.0
    max_concurrent: int | None = None


#: The key of requests that carry none (the CLI, a server without keys).
LOCAL = KeyShare("local")


class QueueFullError(OllangError):
    """The waiting room is at its limit (overall or for this key): try again later.

    Attributes:
        retry_after: Seconds after which a retry may find room (an estimate).
        headers: Sent with the 429 answer (``Retry-After``).
    """

    http_status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, f"retry in about {self.retry_after} s")
        self.headers = {"Retry-After": str(self.retry_after)}


@dataclass(eq=False)
class Waiter(Generic[S]):
    """One request waiting for a slot.

    Attributes:
        key: Its key.
        pick: The best free slot it can use now, or ``None``; called by the room only.
        take: Claims the slot ``pick`` returned (e.g. counts it as in flight).
        seq: Arrival order.
        arrived: When it came (the room's clock).
        future: Resolved with the slot given to it.
        lease: The lease id to :meth:`WaitingRoom.release` the slot with, once given.
    """

    key: QueueKey
    pick: Callable[[], S | None]
    take: Callable[[S], None]
    seq: int
    arrived: float
    future: asyncio.Future[S] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    lease: int | None = None


@dataclass
class _Usage:
    """A key's decayed busy seconds (as of ``stamp``) and what it holds now."""

    busy: float = 0.0
    stamp: float = 0.0
    held: int = 0
    running: dict[int, float] = field(default_factory=dict)  # lease id → start


class WaitingRoom(Generic[S]):
    """The waiting requests and the keys' recent use (see the module docstring).

    Args:
        policy: ``fair``, ``fifo`` or ``unordered``.
        max_queue: The most requests waiting at once (``None``: no limit).
        max_queue_per_key: The most requests of one key waiting at once.
        half_life: Seconds for recorded busy time to count half (``fair``).
        clock: Monotonic seconds (injected by tests).
        on_wait: Called with the key name and the seconds waited when a waiter leaves
            (served or not), for metrics.
    """

    def __init__(
        self,
        policy: Policy = "fair",
        *,
        max_queue: int | None = None,
        max_queue_per_key: int | None = None,
        half_life: float = HALF_LIFE,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[str, float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown queue policy {policy!r} (one of {', '.join(POLICIES)})")
        self.policy = policy
        self.max_queue = max_queue
        self.max_queue_per_key = max_queue_per_key
        self.half_life = half_life
        self.clock = clock
        self.on_wait = on_wait
        self.rng = rng or random.Random()
        self.waiters: list[Waiter[S]] = []
        self._usage: dict[str, _Usage] = {}
        self._seq = itertools.count()
        self._hold = 0.0  # mean seconds a lease is held (moving average), for Retry-After

    # -- what the policies read ------------------------------------------------
    def usage(self, name: str) -> float:
        """Key ``name``'s recent use in busy seconds: decayed past leases plus running ones."""
        use = self._usage.get(name)
        if use is None:
            return 0.0
        now = self.clock()
        decayed: float = use.busy * 0.5 ** ((now - use.stamp) / self.half_life)
        return decayed + sum(now - start for start in use.running.values())

    def held(self, name: str) -> int:
        """How many leases key ``name`` holds now."""
        use = self._usage.get(name)
        return use.held if use is not None else 0

    def queued(self) -> dict[str, int]:
        """How many requests of each key wait now."""
        counts: dict[str, int] = {}
        for waiter in self.waiters:
            counts[waiter.key.name] = counts.get(waiter.key.name, 0) + 1
        return counts

    def _order(self, waiters: list[Waiter[S]]) -> list[Waiter[S]]:
        if self.policy == "fifo":
            return waiters  # kept in arrival order
        if self.policy == "unordered":
            return self.rng.sample(waiters, len(waiters))
        share = {w.key.name: self.usage(w.key.name) / max(w.key.weight, 1e-9) for w in waiters}
        return sorted(waiters, key=lambda w: (share[w.key.name], w.seq))

    def _capped(self, key: QueueKey) -> bool:
        return key.max_concurrent is not None and self.held(key.name) >= key.max_concurrent

    # -- leases ----------------------------------------------------------------
    def try_now(
        self, key: QueueKey, pick: Callable[[], S | None], take: Callable[[S], None]
    ) -> tuple[S, int] | None:
        """A slot at once, if nobody waits ahead: no waiter of a key with less use, no
        earlier waiter (``fifo``), any waiter at all (``unordered``), and ``key`` is
        under its cap. Returns the slot and the lease id to :meth:`release` it with."""
        if self._capped(key):
            return None
        if self.waiters and self._ahead(key, pick):
            return None
        slot = pick()
        if slot is None:
            return None
        take(slot)
        return slot, self._start(key)

    def _ahead(self, key: QueueKey, pick: Callable[[], S | None]) -> bool:
        """Whether a waiter that could take a slot comes before a new request of ``key``."""
        eligible = [w for w in self.waiters if not self._capped(w.key)]
        if not eligible:
            return False
        if self.policy != "fair":
            return True
        mine = self.usage(key.name) / max(key.weight, 1e-9)
        return any(self.usage(w.key.name) / max(w.key.weight, 1e-9) <= mine for w in eligible)

    def enqueue(
        self, key: QueueKey, pick: Callable[[], S | None], take: Callable[[S], None]
    ) -> Waiter[S]:
        """Add a waiter, then :meth:`dispatch` (it may be served at once).

        Raises:
            QueueFullError: the room, or this key's share of it, is full.
        """
        mine = sum(1 for w in self.waiters if w.key.name == key.name)
        if self.max_queue is not None and len(self.waiters) >= self.max_queue:
            raise QueueFullError(
                f"the queue is full ({self.max_queue} requests waiting)",
                self.retry_after(len(self.waiters)),
            )
        if self.max_queue_per_key is not None and mine >= self.max_queue_per_key:
            raise QueueFullError(
                f"key {key.name!r} has {mine} requests waiting, its most",
                self.retry_after(mine),
            )
        waiter = Waiter(key, pick, take, next(self._seq), self.clock())
        self.waiters.append(waiter)
        self.dispatch()
        return waiter

    def leave(self, waiter: Waiter[S]) -> None:
        """Take ``waiter`` out of the queue (served, timed out or cancelled)."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)
            if self.on_wait is not None:
                self.on_wait(waiter.key.name, self.clock() - waiter.arrived)

    def dispatch(self) -> int:
        """Give free slots to waiters, in the policy's order, until none can take one.

        Returns how many were served."""
        served = 0
        while self.waiters:
            eligible = [w for w in self.waiters if not w.future.done() and not self._capped(w.key)]
            for waiter in self._order(eligible):
                slot = waiter.pick()
                if slot is not None:
                    waiter.take(slot)
                    waiter.lease = self._start(waiter.key)
                    self.leave(waiter)
                    waiter.future.set_result(slot)
                    served += 1
                    break
            else:
                return served
        return served

    def _start(self, key: QueueKey) -> int:
        now = self.clock()
        use = self._usage.get(key.name)
        if use is None:
            use = self._usage[key.name] = _Usage(stamp=now)
        lease = next(self._seq)
        use.held += 1
        use.running[lease] = now
        return lease

    def release(self, key: QueueKey, lease: int) -> None:
        """Key ``key`` gave back lease ``lease``: charge its busy time (then dispatch)."""
        use = self._usage.get(key.name)
        if use is not None and lease in use.running:
            now = self.clock()
            held = now - use.running.pop(lease)
            use.busy = use.busy * 0.5 ** ((now - use.stamp) / self.half_life) + held
            use.stamp = now
            use.held = max(0, use.held - 1)
            self._hold = held if self._hold == 0 else 0.8 * self._hold + 0.2 * held
            if not use.held and use.busy < 1e-3:
                del self._usage[key.name]

    def retry_after(self, ahead: int, slots: int = 1) -> float:
        """Seconds until ``ahead`` waiters are served by ``slots`` slots (an estimate
        from how long leases have been held; at least 1)."""
        return max(1.0, (self._hold or 1.0) * (ahead + 1) / max(slots, 1))
