"""A key's limits (ollang.server.limits): requests and tokens per minute, tokens per UTC
day, the 429's Retry-After and OpenAI's x-ratelimit headers; counted in the in-memory
store's rate windows through the store writer (the SQL stores: tests/integration)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import pytest

from ollang.memory import InMemoryChatStore
from ollang.server.keys import KeyPolicy
from ollang.server.limits import Limiter, RateLimitedError, seconds_to_utc_midnight
from ollang.server.writer import StoreWriter

#: 30 s into a minute: a test's requests all fall in one minute window.
NOW = dt.datetime(2026, 12, 4, 12, 0, 30, tzinfo=dt.UTC).timestamp()


def _key(**limits: int) -> KeyPolicy:
    return KeyPolicy(name="k", owner=None, **limits)  # type: ignore[arg-type]


@pytest.fixture
def writer() -> Iterator[StoreWriter]:
    writer = StoreWriter(InMemoryChatStore())
    yield writer
    writer.close()


def _limiter(writer: StoreWriter, now: float = NOW) -> Limiter:
    return Limiter(writer, clock=lambda: now)


def admit(limiter: Limiter, key: KeyPolicy) -> None:
    asyncio.run(limiter.admit(key))


def test_a_key_without_limits_is_never_refused_and_has_no_headers(writer) -> None:
    limiter = _limiter(writer)
    for _ in range(100):
        admit(limiter, _key())
    assert limiter.headers(_key()) == {}
    assert writer.calls == 0  # no store round trip for it


def test_requests_per_minute_then_429_with_the_headers(writer) -> None:
    limiter, key = _limiter(writer), _key(rpm=2)
    admit(limiter, key)
    assert limiter.headers(key)["x-ratelimit-remaining-requests"] == "1"
    assert limiter.headers(key, upcoming=1)["x-ratelimit-remaining-requests"] == "0"
    admit(limiter, key)
    with pytest.raises(RateLimitedError) as caught:
        admit(limiter, key)
    err = caught.value
    assert err.http_status == 429 and "2 requests per minute" in err.message
    assert err.retry_after == 30 and err.headers["Retry-After"] == "30"  # the minute's end
    assert err.headers["x-ratelimit-limit-requests"] == "2"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"] == "30s"


def test_the_next_minute_window_has_room_again(writer) -> None:
    key = _key(rpm=1)
    admit(_limiter(writer), key)
    with pytest.raises(RateLimitedError):
        admit(_limiter(writer, NOW + 29), key)  # another replica, the same minute
    admit(_limiter(writer, NOW + 30), key)  # the next minute


def test_tokens_are_charged_after_the_fact_and_refuse_the_next_turn(writer) -> None:
    limiter, key = _limiter(writer), _key(tpm=100)
    admit(limiter, key)
    limiter.charge(key, 150)  # the turn that started under the limit counts in full
    with pytest.raises(RateLimitedError, match="100 tokens per minute"):
        admit(limiter, key)
    with pytest.raises(RateLimitedError):  # another replica on the store: refused too
        admit(_limiter(writer), key)
    headers = limiter.headers(key)
    assert headers["x-ratelimit-limit-tokens"] == "100"
    assert headers["x-ratelimit-remaining-tokens"] == "0"


def test_daily_tokens_refuse_until_utc_midnight(writer) -> None:
    now = dt.datetime(2026, 12, 4, 23, 0, 0, tzinfo=dt.UTC).timestamp()
    limiter, key = _limiter(writer, now), _key(daily_tokens=1000)
    limiter.charge(key, 600)
    admit(limiter, key)
    limiter.charge(key, 600)
    with pytest.raises(RateLimitedError, match="for today") as caught:
        admit(limiter, key)
    assert caught.value.retry_after == 3600
    assert caught.value.headers["x-ratelimit-remaining-tokens"] == "0"
    admit(_limiter(writer, now + 3601), key)  # the same counters, the next UTC day


def test_a_failing_store_admits_rather_than_failing_the_turn(writer) -> None:
    def broken(*_args: object) -> int:
        raise OSError("disk gone")

    writer.store.rate = broken  # type: ignore[method-assign]
    admit(_limiter(writer), _key(tpm=1))


@pytest.mark.parametrize(
    ("hms", "expected"), [((0, 0, 0), 86400.0), ((23, 59, 30), 30.0), ((12, 0, 0), 43200.0)]
)
def test_seconds_to_utc_midnight(hms: tuple[int, int, int], expected: float) -> None:
    now = dt.datetime(2026, 3, 1, *hms, tzinfo=dt.UTC).timestamp()
    assert seconds_to_utc_midnight(now) == pytest.approx(expected)
