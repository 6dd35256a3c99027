"""The routing decisions as pure functions of the hosts' states (no I/O, no asyncio).

:class:`~ollang.routing.router.Router` keeps the I/O — health checks, leases, waiting for
a free slot — and asks this module what to do, over a snapshot of each host for one
model (:class:`HostView`). Randomness is a parameter (``tie``), so every decision here is
reproducible in a test.

* :func:`rank` — the hosts to try, best first (README: "Several Ollama hosts"):

  1. only hosts that are up and have the model (and were not excluded);
  2. by **priority tier** (lower first): a later tier only after every host of an
     earlier one;
  3. within a tier: the host the **session** used last (Ollama keeps its prompt cache);
     then the fewest requests **in flight** per unit of ``weight``, where a host that has
     not loaded the model counts :data:`COLD_PENALTY` requests more; ties broken by
     ``tie()``.

* :func:`first_free` — the first ranked host below its ``max`` concurrent requests
  (``None``: every one is full, the request waits).
* :func:`availability` — can the model be served at all:

  - some host that is up has it → :data:`AVAILABLE`;
  - no host is up → :data:`UNAVAILABLE` (503), naming every host;
  - a host that is down was last seen *with* the model → :data:`UNAVAILABLE`, naming it
    (it may be back in seconds: "pull it" would be the wrong advice);
  - only the embedded backend answered, every Ollama host is down → :data:`UNAVAILABLE`,
    naming those hosts (the embedded backend runs its own files: it says nothing of what
    an Ollama host has, and "start Ollama" is the advice);
  - otherwise every host that answered lacks it → :data:`NOT_FOUND` (404), naming the
    hosts that are down (never seen with it, so not asked).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AVAILABLE",
    "COLD_PENALTY",
    "NOT_FOUND",
    "UNAVAILABLE",
    "Availability",
    "HostView",
    "Tie",
    "availability",
    "first_free",
    "rank",
]

#: How many in-flight requests a cold load (the model not in the host's memory) is worth.
COLD_PENALTY = 2.0

#: The tie-break: a fresh number for each host ranked (``random.random`` by default).
Tie = Callable[[], float]

AVAILABLE: Literal["available"] = "available"
NOT_FOUND: Literal["not found"] = "not found"
UNAVAILABLE: Literal["unavailable"] = "unavailable"


@dataclass(frozen=True, slots=True)
class HostView:
    """What the routing decisions read of one host, for one model.

    Attributes:
        name: The host's URL, or ``embedded`` (what affinity names).
        up: Whether the host answered its last check.
        has_model: Whether the host has the model; for a host that is down, as it was
            when last seen up (``False`` for a host never seen up).
        loaded: Whether the model is in the host's memory now.
        priority: The host's tier; lower is preferred.
        weight: Its share within the tier.
        in_flight: Requests it is answering now.
        max_concurrent: The most it takes at once (``None``: no limit).
        embedded: Whether it is the in-process backend (not an Ollama server).
    """

    name: str
    up: bool = True
    has_model: bool = True
    loaded: bool = False
    priority: int = 0
    weight: float = 1.0
    in_flight: int = 0
    max_concurrent: int | None = None
    embedded: bool = False

    @property
    def full(self) -> bool:
        """Whether the host is at its ``max`` concurrent requests."""
        return self.max_concurrent is not None and self.in_flight >= self.max_concurrent

    @property
    def load(self) -> float:
        """Requests in flight per unit of weight, plus :data:`COLD_PENALTY` if not loaded."""
        return self.in_flight / self.weight + (0.0 if self.loaded else COLD_PENALTY)


def rank(
    hosts: Sequence[HostView],
    *,
    affinity: str | None = None,
    exclude: Collection[int] = (),
    tie: Tie = random.random,
) -> list[int]:
    """The positions in ``hosts`` of those to try, best first (see the module docstring).

    Args:
        hosts: Every host, for the model asked for.
        affinity: The host the session used last (its name).
        exclude: Positions not to use (they failed this request).
        tie: Breaks ties within a tier; called once per candidate.
    """
    keyed = [
        ((view.priority, view.name != affinity, view.load, tie()), index)
        for index, view in enumerate(hosts)
        if view.up and view.has_model and index not in exclude
    ]
    keyed.sort()
    return [index for _, index in keyed]


def first_free(hosts: Sequence[HostView], ranked: Sequence[int]) -> int | None:
    """The first of ``ranked`` (positions in ``hosts``) that is not full; ``None``: all are."""
    return next((index for index in ranked if not hosts[index].full), None)


@dataclass(frozen=True, slots=True)
class Availability:
    """What :func:`availability` decided.

    Attributes:
        status: :data:`AVAILABLE`, :data:`NOT_FOUND` (a 404) or :data:`UNAVAILABLE` (a 503).
        hosts: Positions of the hosts to name: for :data:`UNAVAILABLE` the hosts it waits
            for (the down ones that had the model, else every host); for
            :data:`NOT_FOUND` the hosts that are down (not asked); else none.
    """

    status: Literal["available", "not found", "unavailable"]
    hosts: tuple[int, ...] = ()


def availability(hosts: Sequence[HostView]) -> Availability:
    """Whether the model can be served now, and if not, why (see the module docstring)."""
    if any(view.up and view.has_model for view in hosts):
        return Availability(AVAILABLE)
    down = tuple(index for index, view in enumerate(hosts) if not view.up)
    if len(down) == len(hosts):  # no host is up (or none is configured)
        return Availability(UNAVAILABLE, down)
    had = tuple(index for index in down if hosts[index].has_model)
    if had:
        return Availability(UNAVAILABLE, had)
    if down and all(view.embedded for view in hosts if view.up):
        return Availability(UNAVAILABLE, down)
    return Availability(NOT_FOUND, down)
