"""Routing requests over several model hosts: health-checked, model-aware, session-affine.

The decisions — the order a request tries hosts in, whether a model can be served at
all — are pure functions of the hosts' states in :mod:`ollang.routing.order` (README:
"Several Ollama hosts"). This module keeps the I/O around them: the health checks, the
leases on a host's in-flight slots, and waiting for a free one.

A host at its ``max`` concurrent requests is skipped; when every candidate is full the
request waits for a free slot. Before the first token, a refused connection, a 5xx or
"model not found" on one host fails over to the next (the host is marked down, or its
model list corrected). Health checks run in the background (``/api/version``,
``/api/tags``, ``/api/ps``): every few seconds while a host is up, with a short backoff
(at most :data:`MAX_BACKOFF` s) while it is down, so a host that comes back is used
within seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ollang.errors import HostBusyError, ModelNotFoundError, OllamaUnavailableError
from ollang.routing.hosts import Host, make_hosts
from ollang.routing.order import (
    AVAILABLE,
    COLD_PENALTY,
    NOT_FOUND,
    HostView,
    Tie,
    availability,
    first_free,
    rank,
)
from ollang.routing.queueing import LOCAL, QueueKey, WaitingRoom
from ollang.settings import Settings
from ollang.transport.manage import ModelDetails, normalise_model

__all__ = [
    "CHECK_INTERVAL",
    "COLD_PENALTY",
    "MAX_BACKOFF",
    "HostLease",
    "NoHostError",
    "Router",
    "model_not_found",
    "view_of",
]

#: Seconds between checks of a host that is up.
CHECK_INTERVAL = 5.0
#: Longest wait between checks of a host that is down.
MAX_BACKOFF = 2.0


class NoHostError(OllamaUnavailableError):
    """No host that could answer is up (or every one of them failed)."""

    def __init__(
        self, model: str | None, tried: Sequence[Host], available: Sequence[str] = ()
    ) -> None:
        names = "; ".join(f"{h.name}: {h.state.error or 'down'}" for h in tried) or "none"
        self.model = model
        self.tried = [h.name for h in tried]
        self.available = list(available)
        OllamaUnavailableError.__init__(self, ", ".join(self.tried) or "no host")
        if model:
            self.message = (
                f"model {model!r} is not available: no host that could run it is reachable "
                f"(tried: {names})"
            )
        else:
            self.message = f"no model host is reachable (tried: {names})"
        self.hint = (
            "start Ollama (`ollama serve`) on one of them; ollang checks again every few "
            "seconds and uses it as soon as it answers"
        )
        if self.available:
            self.hint += "; available now: " + ", ".join(self.available)


@dataclass
class HostLease:
    """A request's claim on one in-flight slot of a host; release it when done.

    Attributes:
        key: Whose slot it is (the waiting room charges the key its busy time).
        lease: The waiting room's id of the lease (``None``: not counted there).
    """

    host: Host
    router: Router
    released: bool = False
    key: QueueKey = LOCAL
    lease: int | None = None

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if not self.released:
            self.released = True
            self.router._release(self.host, self.key, self.lease)


class Router:
    """The configured hosts, their health, and which one a request goes to.

    Args:
        hosts: The hosts, in configuration order.
        check_interval: Seconds between checks of a host that is up.
        tie: Breaks ties in the routing order (:func:`~ollang.routing.order.rank`).
        queue: Who gets a slot when every host is full (default: a ``fair`` room
            without limits; :mod:`ollang.routing.queueing`).
    """

    def __init__(
        self,
        hosts: Sequence[Host],
        *,
        check_interval: float = CHECK_INTERVAL,
        tie: Tie = random.random,
        queue: WaitingRoom[Host] | None = None,
    ) -> None:
        self.hosts = list(hosts)
        self.check_interval = check_interval
        self.tie = tie
        self.queue: WaitingRoom[Host] = queue if queue is not None else WaitingRoom()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}

    @classmethod
    def from_settings(cls, settings: Settings, backend: str | None = None) -> Router:
        """The hosts of ``settings`` for ``backend`` (see :func:`make_hosts`)."""
        return cls(make_hosts(settings, backend))

    def __repr__(self) -> str:
        return f"Router({self.hosts!r})"

    # -- health ---------------------------------------------------------------
    async def check_all(self) -> None:
        """Check every host now, concurrently."""
        await asyncio.gather(*(host.probe() for host in self.hosts))

    def check_all_sync(self) -> None:
        """:meth:`check_all` from synchronous code (the CLI): one thread per host."""
        if len(self.hosts) == 1:
            self.hosts[0].probe_sync()
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            list(pool.map(lambda host: host.probe_sync(), self.hosts))

    async def start(self) -> None:
        """Check every host once, then keep checking in the background."""
        await self.check_all()
        for host in self.hosts:
            self._wake[host.name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._watch(host), name=f"check {host.name}"))

    async def _watch(self, host: Host) -> None:
        wake = self._wake[host.name]
        while True:
            state = host.state
            if state.up:
                delay = self.check_interval
            else:
                delay = min(0.25 * 2 ** max(state.failures - 1, 0), MAX_BACKOFF)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
            wake.clear()
            await host.probe()
            if host.state.up:
                self.queue.dispatch()

    async def stop(self) -> None:
        """Stop the background checks and close connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.close()

    async def close(self) -> None:
        """Close every host's connections (of the running loop)."""
        await asyncio.gather(*(host.close() for host in self.hosts), return_exceptions=True)

    def failed(self, host: Host, error: BaseException, model: str | None = None) -> None:
        """A request saw ``host`` fail: down at once (or its model list corrected)."""
        if isinstance(error, ModelNotFoundError) and model is not None:
            host.forget_model(model)
        else:
            host.mark_down(getattr(error, "message", None) or f"{type(error).__name__}")
        wake = self._wake.get(host.name)
        if wake is not None:
            wake.set()

    async def recheck(self, name: str) -> None:
        """Check host ``name`` now (after a pull or a removal changed what it has)."""
        for host in self.hosts:
            if host.name == name:
                await host.probe()

    # -- what is where ----------------------------------------------------------
    def models(self) -> list[tuple[ModelDetails, list[str]]]:
        """Every model of every up host, with the hosts that have it, sorted by name."""
        found: dict[str, tuple[ModelDetails, list[str]]] = {}
        for host in self.hosts:
            if not host.state.up:
                continue
            for key, details in host.state.models.items():
                entry = found.setdefault(key, (details, []))
                entry[1].append(host.name)
        return sorted(found.values(), key=lambda item: item[0].name)

    def status(self) -> list[dict[str, Any]]:
        """Every host's state (``/health``)."""
        return [host.status() for host in self.hosts]

    def has_model(self, model: str) -> bool:
        """Whether some up host has ``model``."""
        return any(h.state.up and h.has(model) for h in self.hosts)

    def installed_name(self, model: str) -> str:
        """The name ``model`` is installed under on the hosts (``llama3`` → ``llama3:latest``)."""
        for host in self.hosts:
            if host.state.up and host.has(model):
                return host.installed_name(model)
        return model

    def views(self, model: str) -> list[HostView]:
        """Every host as the routing decisions see it, for ``model`` (in host order)."""
        return [view_of(host, model) for host in self.hosts]

    def check_model(self, model: str, allowed: Callable[[str], bool] | None = None) -> None:
        """Raise unless some up host has ``model`` (:func:`~ollang.routing.order.availability`).

        Args:
            model: The model asked for.
            allowed: Which installed models the errors may name (default: every one).

        Raises:
            NoHostError: no host is up, a host that is down was last seen with the model,
                or only the embedded backend answered (503, naming the hosts waited for).
            ModelNotFoundError: every host that answered lacks it (404, naming what they
                have, and the hosts that are down and were not asked).
        """
        verdict = availability(self.views(model))
        if verdict.status == AVAILABLE:
            return
        available = [d.name for d, _ in self.models() if allowed is None or allowed(d.name)]
        named = [self.hosts[i] for i in verdict.hosts]
        if verdict.status == NOT_FOUND:
            raise model_not_found(model, available, named)
        if named and all(h.resting for h in named):  # all asked to wait (a 429): say so
            soonest = min(named, key=lambda h: h.state.resting_until)
            raise HostBusyError(
                soonest.name,
                "every host that has this model asked to be left alone for now",
                max(1.0, soonest.state.resting_until - time.monotonic()),
                kind=soonest.kind,
            )
        raise NoHostError(model, named, available)

    def order(
        self, model: str, *, affinity: str | None = None, exclude: Iterable[Host] = ()
    ) -> list[Host]:
        """The hosts to try for ``model``, best first (:func:`~ollang.routing.order.rank`)."""
        return [self.hosts[i] for i in self._rank(self.views(model), affinity, exclude)]

    def _rank(
        self, views: Sequence[HostView], affinity: str | None, exclude: Iterable[Host]
    ) -> list[int]:
        skipped = set(map(id, exclude))
        positions = {i for i, h in enumerate(self.hosts) if id(h) in skipped} if skipped else ()
        return rank(views, affinity=affinity, exclude=positions, tie=self.tie)

    # -- leasing ----------------------------------------------------------------
    async def lease(
        self,
        model: str,
        *,
        affinity: str | None = None,
        exclude: Sequence[Host] = (),
        wait: float = 120.0,
        key: QueueKey = LOCAL,
    ) -> HostLease:
        """A slot on the best host for ``model`` that has one free; waits while all are full.

        While every candidate is full the request waits in :attr:`queue`, which gives the
        next free slot to the waiter its policy chooses (``key`` says whose request it
        is). A waiting request that is cancelled (its client gone) leaves the queue at
        once; a slot given to it as it was cancelled goes to the next waiter.

        Raises:
            NoHostError / ModelNotFoundError: as :meth:`check_model`, or when every
                candidate was excluded (they failed this request), or no slot came free
                within ``wait`` seconds.
            QueueFullError: the queue (or ``key``'s share of it) is full (429).
        """
        pick = self._picker(model, affinity, exclude)
        now = self.queue.try_now(key, pick, _take)
        if now is not None:
            return HostLease(now[0], self, key=key, lease=now[1])
        self._candidates(model, affinity, exclude)  # raises when none could serve
        waiter = self.queue.enqueue(key, pick, _take)
        deadline = time.monotonic() + wait
        given = False
        try:
            while not waiter.future.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._full(model, self._candidates(model, affinity, exclude))
                await asyncio.wait({waiter.future}, timeout=min(remaining, 1.0))
                if not waiter.future.done():
                    self._candidates(model, affinity, exclude)  # a host may have gone
            given = True
            return HostLease(waiter.future.result(), self, key=key, lease=waiter.lease)
        finally:
            self.queue.leave(waiter)
            if not given and waiter.future.done() and not waiter.future.cancelled():
                # Given a slot just as it gave up (cancelled, timed out): pass it on.
                self._release(waiter.future.result(), key, waiter.lease)

    def _candidates(self, model: str, affinity: str | None, exclude: Sequence[Host]) -> list[Host]:
        """The hosts that could serve ``model`` (full or not), or raise as :meth:`lease`."""
        ranked = self._rank(self.views(model), affinity, exclude)
        if not ranked:
            if exclude:
                raise NoHostError(model, list(exclude))
            self.check_model(model)
            raise NoHostError(model, [h for h in self.hosts if h.has(model)])
        return [self.hosts[i] for i in ranked]

    def _picker(
        self, model: str, affinity: str | None, exclude: Sequence[Host]
    ) -> Callable[[], Host | None]:
        """The waiting room's ``pick`` of one request: its best host with a free slot."""

        def pick() -> Host | None:
            views = self.views(model)
            free = first_free(views, self._rank(views, affinity, exclude))
            return None if free is None else self.hosts[free]

        return pick

    @staticmethod
    def _full(model: str, candidates: Sequence[Host]) -> NoHostError:
        err = NoHostError(model, candidates)
        err.message = (
            f"every host that has {model!r} is at its concurrency limit "
            f"({', '.join(h.name for h in candidates)})"
        )
        err.hint = "try again shortly, or raise the hosts' max=N"
        return err

    def _release(self, host: Host, key: QueueKey = LOCAL, lease: int | None = None) -> None:
        host.in_flight = max(0, host.in_flight - 1)
        if lease is not None:
            self.queue.release(key, lease)
        with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody waits
            self.queue.dispatch()

    async def context_length(self, model: str) -> int | None:
        """The model's context length from a host that has it (cached per host)."""
        for host in self.order(model):
            with contextlib.suppress(Exception):
                return await host.context_length(model)
        return None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Router]:
        """Start the background checks for the duration of a block."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()


def _take(host: Host) -> None:
    """Count a slot given by the waiting room as in flight."""
    host.in_flight += 1


def view_of(host: Host, model: str) -> HostView:
    """``host`` as the routing decisions see it, for ``model``."""
    spec = host.spec
    return HostView(
        name=host.name,
        up=bool(host.state.up),
        has_model=host.has(model),
        loaded=host.loaded(model),
        priority=spec.priority,
        weight=spec.weight,
        in_flight=host.in_flight,
        max_concurrent=spec.max_concurrent,
        embedded=host.is_embedded,
    )


def model_not_found(
    model: str, installed: Sequence[str], down: Sequence[Host] = ()
) -> ModelNotFoundError:
    """The 404 for ``model``: the pull hint, what is installed, and the hosts not asked."""
    err = ModelNotFoundError(model, installed)
    if down:
        err.hint += "; not asked (down): " + ", ".join(h.name for h in down)
    return err


def normalised(names: Iterable[str]) -> set[str]:
    """Model names as Ollama reads them."""
    return {normalise_model(n) for n in names}
