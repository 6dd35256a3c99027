"""A key's limits: requests per minute, tokens per minute, tokens per UTC day (issue 22).

A turn is *admitted* before anything is sent upstream (:meth:`Limiter.admit`): refused
with a 429 (:class:`RateLimitedError`, ``Retry-After`` and OpenAI's ``x-ratelimit-*``
headers) when the key is over a limit. Tokens are known only when a turn ends (what the
host reports: ``prompt_eval_count`` + ``eval_count``), so they are *charged* then
(:meth:`Limiter.charge`) and checked before the next turn: a turn that starts under the
limit runs to its end, and the next one waits until the window has room again.

Counting uses the ``limits`` library (in memory, this process):

* requests per minute: its *moving window* (each request expires 60 s after it was
  made: no burst of twice the limit across a window boundary);
* tokens per minute: its *fixed window* (one counter per key per minute from the key's
  first charge), because a token charge comes after the fact and must always count,
  which a fixed window's increment does (a moving window refuses a charge that does not
  fit and records nothing);
* tokens per day: a counter per key and UTC date (the library's day windows start at a
  key's first hit, not at midnight), refused until 00:00 UTC once over.

With several replicas each counts what it serves: the limits are per replica (``limits``
has no PostgreSQL storage; a store round trip per request would cost every turn). A key
that reaches one replica is held exactly; spread over N replicas it can get up to N times
its limits (docs/sharing.md, "Limits").
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Protocol

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from ollang.errors import OllangError

__all__ = ["KeyLimits", "Limiter", "RateLimitedError", "seconds_to_utc_midnight"]


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


class Limiter:
    """Every key's counters in this process (see the module docstring).

    Args:
        clock: Epoch seconds (for the UTC day; the ``limits`` windows use its own clock).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        storage = MemoryStorage()
        self._moving = MovingWindowRateLimiter(storage)
        self._fixed = FixedWindowRateLimiter(storage)
        self._items: dict[int, RateLimitItem] = {}
        self._days: dict[str, tuple[dt.date, int]] = {}
        self.clock = clock

    def _item(self, per_minute: int) -> RateLimitItem:
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return item

    def _today(self, name: str) -> int:
        day = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        seen = self._days.get(name)
        return seen[1] if seen is not None and seen[0] == day else 0

    def admit(self, key: KeyLimits) -> None:
        """Count one request of ``key``, or refuse it.

        Raises:
            RateLimitedError: the key is over its tokens today, its tokens this minute,
                or its requests this minute (checked in that order; a refused request
                is not counted).
        """
        if key.rpm is None and key.tpm is None and key.daily_tokens is None:
            return
        now = self.clock()
        if key.daily_tokens is not None and self._today(key.name) >= key.daily_tokens:
            raise RateLimitedError(
                f"key {key.name!r} has used its {key.daily_tokens} tokens for today (UTC)",
                seconds_to_utc_midnight(now),
                self.headers(key),
            )
        if key.tpm is not None and not self._fixed.test(self._item(key.tpm), "t", key.name):
            stats = self._fixed.get_window_stats(self._item(key.tpm), "t", key.name)
            raise RateLimitedError(
                f"key {key.name!r} is over its {key.tpm} tokens per minute",
                stats.reset_time - time.time(),
                self.headers(key),
            )
        if key.rpm is not None and not self._moving.hit(self._item(key.rpm), "r", key.name):
            stats = self._moving.get_window_stats(self._item(key.rpm), "r", key.name)
            raise RateLimitedError(
                f"key {key.name!r} is over its {key.rpm} requests per minute",
                stats.reset_time - time.time(),
                self.headers(key),
            )

    def charge(self, key: KeyLimits, tokens: int) -> None:
        """Add a finished turn's ``tokens`` (input + output) to ``key``'s counters."""
        if tokens <= 0:
            return
        if key.tpm is not None:
            self._fixed.hit(self._item(key.tpm), "t", key.name, cost=tokens)
        if key.daily_tokens is not None:
            day = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
            self._days[key.name] = (day, self._today(key.name) + tokens)

    def headers(self, key: KeyLimits, upcoming: int = 0) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for ``key`` (none for a key without limits).

        ``upcoming`` requests are counted as made already (a stream's headers are sent
        before its turn is admitted)."""
        out: dict[str, str] = {}
        now = time.time()
        if key.rpm is not None:
            stats = self._moving.get_window_stats(self._item(key.rpm), "r", key.name)
            out["x-ratelimit-limit-requests"] = str(key.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, stats.remaining - upcoming))
            out["x-ratelimit-reset-requests"] = _reset(stats.reset_time - now)
        tokens = [(key.tpm, self._fixed_stats(key))] if key.tpm is not None else []
        if key.daily_tokens is not None and key.tpm is None:
            left = key.daily_tokens - self._today(key.name)
            tokens = [(key.daily_tokens, (max(0, left), seconds_to_utc_midnight(self.clock())))]
        for limit, (remaining, reset) in tokens:
            out["x-ratelimit-limit-tokens"] = str(limit)
            out["x-ratelimit-remaining-tokens"] = str(remaining)
            out["x-ratelimit-reset-tokens"] = _reset(reset)
        return out

    def _fixed_stats(self, key: KeyLimits) -> tuple[int, float]:
        assert key.tpm is not None
        stats = self._fixed.get_window_stats(self._item(key.tpm), "t", key.name)
        return max(0, stats.remaining), stats.reset_time - time.time()
