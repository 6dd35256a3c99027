"""A key's limits: requests per minute, tokens per minute, tokens per UTC day (issue 22).

A turn is *admitted* before anything is sent upstream (:meth:`Limiter.admit`): refused
with a 429 (:class:`RateLimitedError`, ``Retry-After`` and OpenAI's ``x-ratelimit-*``
headers) when the key is over a limit. Tokens are known only when a turn ends (what the
host reports: ``prompt_eval_count`` + ``eval_count``), so they are *charged* then
(:meth:`Limiter.charge`) and checked before the next turn: a turn that starts under the
limit runs to its end, and the next one waits until the window has room again.

Counting is in the session store's *rate windows* (:meth:`ChatStore.take_rate
<ollang.memory.base.ChatStore.take_rate>`), fixed windows by the clock:

* requests per minute: one counter per key and minute (``requests``), taken with one
  atomic statement that adds 1 only while the count stays within the limit;
* tokens per minute: one counter per key and minute (``tokens``), added to when a turn
  ends, whatever it comes to;
* tokens per day: one counter per key and UTC day (``tokens-day``), refused until
  00:00 UTC once over.

Every replica on a shared store (PostgreSQL; SQLite for ``serve --workers N``) counts
against the same rows, so a limit holds across replicas: exactly ``rpm`` requests of a
key are admitted per minute window wherever they arrive (given clocks in step). A fixed
window lets a burst at its boundary through twice: up to 2x the limit within 60 s (the end
of one minute, then the start of the next). The in-memory store counts in this process
(its counters are a dict), which is all there is with it: one mechanism for every store.
The ``limits`` library would do the windows, but it has no SQLite or PostgreSQL storage,
and counting where the replicas share is the point; one upsert is all a window needs.

An admission is one awaited call on the store writer's thread (off the event loop), only
for a key with limits; a charge is submitted without waiting (the next admission, queued
behind it on the same thread, sees it). The ``x-ratelimit-*`` headers of a successful
answer are from this replica's last look at the counters (its own admission and charges).
When the store fails, requests are admitted (logged): the limits never take the server
down with the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ollang.errors import OllangError
from ollang.memory import ChatStore
from ollang.server.writer import StoreWriter

__all__ = ["KeyLimits", "Limiter", "RateLimitedError", "seconds_to_utc_midnight"]

log = logging.getLogger("ollang.server")

MINUTE = 60
DAY = 86400
#: The kinds of rate window (:meth:`ChatStore.take_rate`'s ``kind``).
REQUESTS, TOKENS, TOKENS_DAY = "requests", "tokens", "tokens-day"


class KeyLimits(Protocol):
    """What the limiter reads of a key (:class:`~ollang.server.keys.KeyPolicy` fits)."""

    @property
    def name(self) -> str:
        """The key's name (its counters are kept under it)."""
        ...

    @property
    def rpm(self) -> int | None:
        """Requests per minute (``None``: no limit)."""
        ...

    @property
    def tpm(self) -> int | None:
        """Tokens per minute, input and output (``None``: no limit)."""
        ...

    @property
    def daily_tokens(self) -> int | None:
        """Tokens per UTC day (``None``: no limit)."""
        ...


class RateLimitedError(OllangError):
    """The key is over one of its limits: retry after ``retry_after`` seconds.

    Attributes:
        retry_after: Whole seconds until the limit has room again.
        headers: Sent with the 429: ``Retry-After`` and the ``x-ratelimit-*`` headers.
    """

    http_status = 429

    def __init__(self, message: str, retry_after: float, headers: dict[str, str]) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, f"retry in {self.retry_after} s, or ask for a higher limit")
        self.headers = {**headers, "Retry-After": str(self.retry_after)}


def seconds_to_utc_midnight(now: float) -> float:
    """Seconds from ``now`` (epoch seconds) to the next 00:00 UTC."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
    return midnight.timestamp() - now


def _reset(seconds: float) -> str:
    """A reset delay as OpenAI writes it (``1s``, ``6m0s``)."""
    whole = max(0, math.ceil(seconds))
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


def _has_limits(key: KeyLimits) -> bool:
    return key.rpm is not None or key.tpm is not None or key.daily_tokens is not None


@dataclass(frozen=True)
class _Counts:
    """A key's counters as last seen: the minute and day (window starts) and their counts.
    ``refused`` names the limit an admission was refused for (``None``: admitted)."""

    minute: int
    day: int
    requests: int = 0
    tokens: int = 0
    day_tokens: int = 0
    refused: str | None = None

    def at(self, minute: int, day: int) -> _Counts:
        """These counts as of ``minute`` and ``day`` (a window that has passed is 0)."""
        if minute == self.minute and day == self.day:
            return self
        same_minute = minute == self.minute
        return _Counts(
            minute,
            day,
            self.requests if same_minute else 0,
            self.tokens if same_minute else 0,
            self.day_tokens if day == self.day else 0,
        )


def _admit(store: ChatStore, key: KeyLimits, minute: int, day: int) -> _Counts:
    """On the writer's thread: read the key's token windows and, when they have room,
    take one request (refused requests are not counted)."""
    day_tokens = store.rate(key.name, TOKENS_DAY, day) if key.daily_tokens is not None else 0
    tokens = store.rate(key.name, TOKENS, minute) if key.tpm is not None else 0
    counts = _Counts(minute, day, 0, tokens, day_tokens)
    refused: str | None = None
    if key.daily_tokens is not None and day_tokens >= key.daily_tokens:
        refused = TOKENS_DAY
    elif key.tpm is not None and tokens >= key.tpm:
        refused = TOKENS
    if key.rpm is None:
        return replace(counts, refused=refused)
    if refused is not None:  # not taken: the count is only for the headers
        return replace(counts, requests=store.rate(key.name, REQUESTS, minute), refused=refused)
    taken, requests = store.take_rate(key.name, REQUESTS, minute, 1, key.rpm)
    return replace(counts, requests=requests, refused=None if taken else REQUESTS)


def _charge(store: ChatStore, key: KeyLimits, minute: int, day: int, tokens: int) -> None:
    """On the writer's thread: add a finished turn's tokens to the key's token windows."""
    if key.tpm is not None:
        store.add_rate(key.name, TOKENS, minute, tokens)
    if key.daily_tokens is not None:
        store.add_rate(key.name, TOKENS_DAY, day, tokens)


class Limiter:
    """Every key's limits, counted in the store's rate windows (see the module docstring).

    Args:
        writer: The store writer: its store holds the counters, its thread runs the counting.
        clock: Epoch seconds (the windows: minutes and UTC days).
    """

    def __init__(self, writer: StoreWriter, clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.clock = clock
        self._seen: dict[str, _Counts] = {}

    def _windows(self, now: float) -> tuple[int, int]:
        return int(now // MINUTE) * MINUTE, int(now // DAY) * DAY

    def _counts(self, key: KeyLimits, now: float) -> _Counts:
        minute, day = self._windows(now)
        seen = self._seen.get(key.name)
        return _Counts(minute, day) if seen is None else seen.at(minute, day)

    async def admit(self, key: KeyLimits) -> None:
        """Count one request of ``key``, or refuse it (one store round trip, only for a
        key with limits).

        Raises:
            RateLimitedError: the key is over its tokens today, its tokens this minute,
                or its requests this minute (checked in that order; a refused request
                is not counted).
        """
        if not _has_limits(key):
            return
        now = self.clock()
        minute, day = self._windows(now)
        try:
            counts = await self.writer.call(_admit, self.writer.store, key, minute, day)
        except Exception as err:  # the store failed: admit rather than fail every turn
            log.warning("rate limits not counted for key %r: %s", key.name, err)
            return
        self._seen[key.name] = replace(counts, refused=None)
        if counts.refused is None:
            return
        if counts.refused == TOKENS_DAY:
            message = f"key {key.name!r} has used its {key.daily_tokens} tokens for today (UTC)"
            retry = seconds_to_utc_midnight(now)
        elif counts.refused == TOKENS:
            message = f"key {key.name!r} is over its {key.tpm} tokens per minute"
            retry = minute + MINUTE - now
        else:
            message = f"key {key.name!r} is over its {key.rpm} requests per minute"
            retry = minute + MINUTE - now
        raise RateLimitedError(message, retry, self.headers(key))

    def charge(self, key: KeyLimits, tokens: int) -> None:
        """Add a finished turn's ``tokens`` (input + output) to ``key``'s counters (handed
        to the writer, not awaited)."""
        if tokens <= 0 or (key.tpm is None and key.daily_tokens is None):
            return
        now = self.clock()
        minute, day = self._windows(now)
        counts = self._counts(key, now)
        self._seen[key.name] = replace(
            counts, tokens=counts.tokens + tokens, day_tokens=counts.day_tokens + tokens
        )
        self.writer.submit(_charge, self.writer.store, key, minute, day, tokens)

    def headers(self, key: KeyLimits, upcoming: int = 0) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for ``key`` (none for a key without limits),
        from this replica's last look at its counters.

        ``upcoming`` requests are counted as made already (a stream's headers are sent
        before its turn is admitted)."""
        out: dict[str, str] = {}
        now = self.clock()
        counts = self._counts(key, now)
        to_minute = counts.minute + MINUTE - now
        if key.rpm is not None:
            out["x-ratelimit-limit-requests"] = str(key.rpm)
            left = key.rpm - counts.requests - upcoming
            out["x-ratelimit-remaining-requests"] = str(max(0, left))
            out["x-ratelimit-reset-requests"] = _reset(to_minute)
        if key.tpm is not None:
            tokens = (key.tpm, key.tpm - counts.tokens, to_minute)
        elif key.daily_tokens is not None:
            left = key.daily_tokens - counts.day_tokens
            tokens = (key.daily_tokens, left, seconds_to_utc_midnight(now))
        else:
            return out
        limit, remaining, reset = tokens
        out["x-ratelimit-limit-tokens"] = str(limit)
        out["x-ratelimit-remaining-tokens"] = str(max(0, remaining))
        out["x-ratelimit-reset-tokens"] = _reset(reset)
        return out
