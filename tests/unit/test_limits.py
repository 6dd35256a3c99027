"""A key's limits (ollang.server.limits): requests and tokens per minute, tokens per UTC
day, the 429's Retry-After and OpenAI's x-ratelimit headers."""

from __future__ import annotations

import datetime as dt

import pytest

from ollang.server.keys import KeyPolicy
from ollang.server.limits import Limiter, RateLimitedError, seconds_to_utc_midnight


def _key(**limits: int) -> KeyPolicy:
    return KeyPolicy(name="k", owner=None, **limits)  # type: ignore[arg-type]


def test_a_key_without_limits_is_never_refused_and_has_no_headers() -> None:
    limiter = Limiter()
    for _ in range(100):
        limiter.admit(_key())
    assert limiter.headers(_key()) == {}


def test_requests_per_minute_then_429_with_the_headers() -> None:
    limiter, key = Limiter(), _key(rpm=2)
    limiter.admit(key)
    assert limiter.headers(key)["x-ratelimit-remaining-requests"] == "1"
    limiter.admit(key)
    with pytest.raises(RateLimitedError) as caught:
        limiter.admit(key)
    err = caught.value
    assert err.http_status == 429 and "2 requests per minute" in err.message
    assert 1 <= err.retry_after <= 60 and err.headers["Retry-After"] == str(err.retry_after)
    assert err.headers["x-ratelimit-limit-requests"] == "2"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"].endswith("s")


def test_tokens_are_charged_after_the_fact_and_refuse_the_next_turn() -> None:
    limiter, key = Limiter(), _key(tpm=100)
    limiter.admit(key)
    limiter.charge(key, 150)  # the turn that started under the limit counts in full
    with pytest.raises(RateLimitedError, match="100 tokens per minute"):
        limiter.admit(key)
    headers = limiter.headers(key)
    assert headers["x-ratelimit-limit-tokens"] == "100"
    assert headers["x-ratelimit-remaining-tokens"] == "0"


def test_daily_tokens_refuse_until_utc_midnight() -> None:
    now = dt.datetime(2026, 12, 4, 23, 0, 0, tzinfo=dt.UTC).timestamp()
    limiter, key = Limiter(clock=lambda: now), _key(daily_tokens=1000)
    limiter.charge(key, 600)
    limiter.admit(key)
    limiter.charge(key, 600)
    with pytest.raises(RateLimitedError, match="for today") as caught:
        limiter.admit(key)
    assert caught.value.retry_after == 3600
    later = Limiter(clock=lambda: now + 3601)
    later._days = limiter._days  # the same counters, the next UTC day
    later.admit(key)


@pytest.mark.parametrize(
    ("hms", "expected"), [((0, 0, 0), 86400.0), ((23, 59, 30), 30.0), ((12, 0, 0), 43200.0)]
)
def test_seconds_to_utc_midnight(hms: tuple[int, int, int], expected: float) -> None:
    now = dt.datetime(2026, 3, 1, *hms, tzinfo=dt.UTC).timestamp()
    assert seconds_to_utc_midnight(now) == pytest.approx(expected)
