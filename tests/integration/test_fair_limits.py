"""Fair queueing and limits on the real server (issue 22): a real port, a fake Ollama host with
``max=1``, several keys; the order the host sees requests in, the queue limit's 429, and the
rate limits as the OpenAI SDK and ollama-python see them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from ollang.memory import open_store
from ollang.memory.keys import issue_key
from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo

A, B = "key-a-secret", "key-b-secret"  # --api-key keys: api-key-1 and api-key-2


def _settings(tmp_path, host: FakeOllama, **extra) -> ServerSettings:
    extra.setdefault("store_url", f"sqlite:///{tmp_path / 'sessions.db'}")
    return ServerSettings(
        ollama_hosts=[f"{host.url}?max=1"],
        default_model="llama3",
        backend="ollama",
        **extra,
    )


def _ask(url: str, key: str, text: str, out: dict[str, httpx.Response]) -> None:
    body = {"model": "llama3", "messages": [{"role": "user", "content": text}], "stream": False}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    out[text] = httpx.post(f"{url}/api/chat", json=body, headers=headers, timeout=60)


def _send(url: str, key: str, text: str, out: dict[str, httpx.Response]) -> threading.Thread:
    thread = threading.Thread(target=_ask, args=(url, key, text, out))
    thread.start()
    return thread


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _served(host: FakeOllama) -> list[str]:
    """The first word of each chat the host received, in order."""
    return [r["messages"][-1]["content"].split()[0] for r in host.chat_requests()]


@pytest.mark.parametrize(
    ("policy", "b_position"),
    [("fair", 1), ("fifo", 4)],  # fair: B right after the running answer; fifo: after A's
)
def test_a_light_key_is_served_before_a_heavy_keys_backlog(tmp_path, policy, b_position):
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.05) as host:
        settings = _settings(tmp_path, host, api_keys=[A, B], queue_policy=policy)
        with LiveServer(settings) as live:
            out: dict[str, httpx.Response] = {}
            words = " ".join(["w"] * 28)  # ~1.5 s per answer
            queue = live.app.state.ctx.router.queue
            threads = []
            for i in range(4):  # one by one: their arrival order is known
                threads.append(_send(live.url, A, f"a{i} {words}", out))
                _wait(lambda i=i: len(queue.waiters) == i and host.in_flight == 1)
            threads.append(_send(live.url, B, f"b0 {words}", out))
            _wait(lambda: len(queue.waiters) == 4)
            metrics = httpx.get(f"{live.url}/metrics", headers={"Authorization": f"Bearer {A}"})
            assert 'ollang_queue_length{key="api-key-1"} 3.0' in metrics.text
            for thread in threads:
                thread.join()
            assert all(r.status_code == 200 for r in out.values())
            served = _served(host)
            assert served.index("b0") == b_position, served
            assert [w for w in served if w.startswith("a")] == ["a0", "a1", "a2", "a3"]
            assert host.max_in_flight == 1
            metrics = httpx.get(f"{live.url}/metrics", headers={"Authorization": f"Bearer {A}"})
            assert 'ollang_queue_wait_seconds_count{key="api-key-2"} 1.0' in metrics.text


def test_a_full_queue_answers_429_with_retry_after_in_each_dialect(tmp_path):
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.05) as host:
        settings = _settings(tmp_path, host, api_keys=[A], max_queue_per_key=1)
        with LiveServer(settings) as live:
            out: dict[str, httpx.Response] = {}
            words = " ".join(["w"] * 20)
            threads = [_send(live.url, A, f"a{i} {words}", out) for i in range(2)]
            _wait(lambda: len(live.app.state.ctx.router.queue.waiters) == 1)
            auth = {"Authorization": f"Bearer {A}"}
            msgs = [{"role": "user", "content": "hi"}]
            ollama_shape = httpx.post(
                f"{live.url}/api/chat",
                json={"model": "llama3", "messages": msgs, "stream": False},
                headers=auth,
            )
            openai_shape = httpx.post(
                f"{live.url}/v1/chat/completions",
                json={"model": "llama3", "messages": msgs, "stream": True},
                headers=auth,
            )
            own = httpx.post(f"{live.url}/chat", json={"message": "hi"}, headers=auth)
            for thread in threads:
                thread.join()
    for answer in (ollama_shape, openai_shape, own):
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
    assert isinstance(ollama_shape.json()["error"], str)
    assert openai_shape.json()["error"]["type"] == "rate_limit_exceeded"
    assert "waiting" in own.json()["error"] and own.json()["hint"]
    assert len(host.chat_requests()) == 2  # nothing was sent upstream for the refused ones


def test_a_client_gone_while_waiting_leaves_the_queue_and_is_never_sent(tmp_path):
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.05) as host,
        LiveServer(_settings(tmp_path, host)) as live,
    ):
        out: dict[str, httpx.Response] = {}
        first = _send(live.url, "", "first " + " ".join(["w"] * 20), out)
        _wait(lambda: host.in_flight == 1)
        body = {"model": "llama3", "messages": [{"role": "user", "content": "gone"}]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{live.url}/api/chat", json=body, timeout=0.3)
        _wait(lambda: not live.app.state.ctx.router.queue.waiters, timeout=5)
        first.join()
        time.sleep(0.2)
    assert _served(host) == ["first"]


def _limited_key(tmp_path, url: str | None = None, **limits) -> str:
    store = open_store(url or f"sqlite:///{tmp_path / 'sessions.db'}")
    try:
        _, secret = issue_key(store, "limited", **limits)
    finally:
        store.close()
    return secret


def _in_one_minute(*replicas: LiveServer, at: float = 30) -> None:
    """Stop the replicas' limit clocks ``at`` seconds into the current minute: a test's
    requests then fall in one minute window (a real minute could turn between two)."""
    frozen = time.time() // 60 * 60 + at
    for live in replicas:
        live.app.state.ctx.limits.clock = lambda: frozen


@contextlib.contextmanager
def _store_url(kind: str, tmp_path) -> Iterator[str]:
    """A store URL both replicas share: an SQLite file, or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
        return
    from tests import pg

    try:
        pg.server()
    except RuntimeError as err:
        pytest.skip(str(err))
    with pg.fresh_schema_url() as url:
        yield url


def test_requests_per_minute_are_429s_the_sdks_understand(tmp_path):
    secret = _limited_key(tmp_path, rpm=2)
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as host,
        LiveServer(_settings(tmp_path, host)) as live,
    ):
        _in_one_minute(live)
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=secret, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="llama3", messages=[{"role": "user", "content": "one"}]
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == "1"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        client.chat.completions.create(
            model="llama3", messages=[{"role": "user", "content": "two"}]
        )
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(
                model="llama3", messages=[{"role": "user", "content": "three"}]
            )
        headers = caught.value.response.headers
        assert int(headers["Retry-After"]) >= 1
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert caught.value.body["type"] == "rate_limit_exceeded"  # type: ignore[index]

        oc = ollama.Client(host=live.url, headers={"Authorization": f"Bearer {secret}"})
        with pytest.raises(ollama.ResponseError) as refused:
            oc.chat(model="llama3", messages=[{"role": "user", "content": "four"}])
        assert refused.value.status_code == 429
        assert "requests per minute" in refused.value.error
    assert len(host.chat_requests()) == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_limits_hold_across_replicas_on_one_store(tmp_path, kind):
    """The measurement of docs/sharing.md, Limits: two replicas on one store (PostgreSQL,
    or an SQLite file as ``serve --workers 2`` has), a key with rpm=3 alternating between
    them: exactly 3 of 10 requests pass in the minute, whichever replica they reach; 3
    more in the next minute, even a second later (the fixed window's boundary burst)."""
    with _store_url(kind, tmp_path) as url:
        secret = _limited_key(tmp_path, url, rpm=3)
        auth = {"Authorization": f"Bearer {secret}"}
        msgs = [{"role": "user", "content": "hi"}]
        body = {"model": "llama3", "messages": msgs, "stream": False}
        with (
            FakeOllama(models=[ModelInfo("llama3:latest")]) as host,
            LiveServer(_settings(tmp_path, host, store_url=url)) as one,
            LiveServer(_settings(tmp_path, host, store_url=url)) as two,
        ):

            def alternate() -> list[httpx.Response]:
                return [
                    httpx.post(f"{r.url}/api/chat", json=body, headers=auth, timeout=30)
                    for r in [one, two] * 5
                ]

            _in_one_minute(one, two, at=59)
            spread = alternate()
            _in_one_minute(one, two, at=60)  # a second later, the next minute's window
            after = alternate()
    assert [r.status_code for r in spread] == [200] * 3 + [429] * 7
    assert all(r.headers["Retry-After"] == "1" for r in spread[3:])  # the minute's end
    assert "3 requests per minute" in spread[3].json()["error"]
    # A fixed window: at its boundary a burst gets the limit twice within a second.
    assert [r.status_code for r in after] == [200] * 3 + [429] * 7
    assert len(host.chat_requests()) == 6


def test_tokens_per_minute_are_charged_from_what_the_host_reports(tmp_path):
    secret = _limited_key(tmp_path, tpm=5)
    auth = {"Authorization": f"Bearer {secret}"}
    body = {"model": "llama3", "messages": [{"role": "user", "content": "a b c d e f"}]}
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as host,
        LiveServer(_settings(tmp_path, host)) as live,
    ):
        _in_one_minute(live)
        first = httpx.post(f"{live.url}/v1/chat/completions", json=body, headers=auth, timeout=30)
        used = first.json()["usage"]["total_tokens"]
        second = httpx.post(f"{live.url}/v1/chat/completions", json=body, headers=auth)
    assert first.status_code == 200 and used > 5  # it started under the limit: runs to its end
    assert first.headers["x-ratelimit-limit-tokens"] == "5"
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"
    assert len(host.chat_requests()) == 1
