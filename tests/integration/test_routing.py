"""Several model hosts behind one ollang (issue 14): the real server on a port, over several
local fake Ollama servers (each a real HTTP server with its own models), one killed as a
real process; the CLI as a subprocess over the same hosts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ollang.memory import SQLiteChatStore, message_status
from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.cli_process import cli
from tests.fake_ollama import FakeOllama, ModelInfo, Reply
from tests.net import free_port


def _settings(tmp_path, hosts: list[str], **extra) -> ServerSettings:
    extra.setdefault("backend", "ollama")
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_hosts=hosts,
        default_model="llama3",
        **extra,
    )


@pytest.fixture
def two() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        FakeOllama(models=[ModelInfo("llama3:latest")]) as b,
    ):
        yield a, b


def _chat(url: str, message: str, session: str | None = None, **body) -> httpx.Response:
    payload = {"message": message, **body}
    if session:
        payload["session_id"] = session
    return httpx.post(f"{url}/chat", json=payload, timeout=30)


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_model_goes_to_the_host_that_has_it(tmp_path):
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        FakeOllama(models=[ModelInfo("mistral:latest")]) as b,
        LiveServer(_settings(tmp_path, [a.url, b.url])) as live,
    ):
        assert (
            _chat(live.url, "to mistral", model="mistral").json()["response"] == "echo: to mistral"
        )
        assert _chat(live.url, "to llama", model="llama3").json()["response"] == "echo: to llama"
        assert [r["model"] for r in b.chat_requests()] == ["mistral:latest"]
        assert [r["model"] for r in a.chat_requests()] == ["llama3:latest"]
        models = {m["name"]: m["hosts"] for m in httpx.get(f"{live.url}/models").json()["models"]}
        assert models == {"llama3:latest": [a.url], "mistral:latest": [b.url]}
        missing = _chat(live.url, "x", model="phi3")
        assert missing.status_code == 404
        assert (
            "llama3:latest" in missing.json()["hint"] and "mistral:latest" in missing.json()["hint"]
        )


def test_a_session_stays_on_its_host_and_new_sessions_spread(tmp_path, two):
    a, b = two
    for fake in two:
        fake.token_delay = 0.05
    with LiveServer(_settings(tmp_path, [a.url, b.url])) as live:
        first = _chat(live.url, "hello", "s1").json()
        served_by = a if a.chat_requests() else b
        for i in range(3):
            assert _chat(live.url, f"again {i}", "s1").status_code == 200
        assert len(served_by.chat_requests()) == 4, "every turn of s1 went to the same host"
        assert first["session_id"] == "s1"

        # Six new sessions at once: the router spreads them by requests in flight (the
        # host where the model is loaded takes a little more, the cold one the rest).
        before = {fake.url: len(fake.chat_requests()) for fake in two}
        threads = [
            threading.Thread(target=_chat, args=(live.url, f"q{i}", f"n{i}")) for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        new = [len(fake.chat_requests()) - before[fake.url] for fake in two]
        assert sum(new) == 6 and min(new) >= 2, new
        stored = SQLiteChatStore(live.store.path).get_messages("s1")
        assert stored[-1].response_metadata["ollang_host"] == served_by.url


@pytest.mark.reliability(
    "Faults", "several hosts: one killed between turns, the next turn served by another"
)
def test_a_host_stopped_between_turns_the_next_turn_goes_to_the_other(tmp_path, two):
    a, b = two
    with LiveServer(_settings(tmp_path, [a.url, b.url])) as live:
        assert _chat(live.url, "one", "s").status_code == 200
        served, other = (a, b) if a.chat_requests() else (b, a)
        served.kill()
        second = _chat(live.url, "two", "s")
        assert second.status_code == 200, second.text  # failed over before the first token
        assert second.json()["response"] == "echo: two"
        assert len(other.chat_requests()) == 1
        health = httpx.get(f"{live.url}/health").json()
        states = {h["url"]: h["up"] for h in health["hosts"]}
        assert states == {served.url: False, other.url: True}


@pytest.mark.reliability(
    "Faults", "several hosts: one killed mid-stream, partial kept, next turn elsewhere"
)
def test_a_host_killed_mid_stream_keeps_the_partial_and_the_next_turn_goes_elsewhere(tmp_path):
    from tests.reliability.conftest import OllamaProcess

    doomed = OllamaProcess(rate=20, tokens=200)
    doomed.start()
    try:
        with (
            FakeOllama(models=[ModelInfo("llama3:latest")]) as spare,
            LiveServer(_settings(tmp_path, [doomed.host_port, spare.url])) as live,
        ):
            # New sessions spread over both hosts; start them until one lands on the doomed one.
            session = None
            for i in range(10):
                with httpx.stream(
                    "POST",
                    f"{live.url}/chat/stream",
                    json={"message": f"long {i}", "session_id": f"k{i}"},
                    timeout=30,
                ) as r:
                    pieces = r.iter_text()
                    first = next(pieces)
                    if first.startswith("tok"):  # the process's tokens: it is the doomed one
                        session = f"k{i}"
                        time.sleep(0.3)
                        doomed.kill()
                        rest = "".join(pieces)
                        break
                    "".join(pieces)
            assert session is not None, "no session was routed to the doomed host"
            assert "[error]" in rest
            stored = SQLiteChatStore(live.store.path).get_messages(session)
            assert stored[-1].type == "ai" and message_status(stored[-1]) == "error"
            assert stored[-1].content.startswith("tok0")
            again = _chat(live.url, "are you there?", session)
            assert again.status_code == 200 and again.json()["response"] == "echo: are you there?"
    finally:
        doomed.kill()


@pytest.mark.reliability("Faults", "server started with every host down, then one comes up")
def test_the_server_starts_with_every_host_down_and_uses_one_that_comes_up(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with LiveServer(_settings(tmp_path, [url])) as live:
        health = httpx.get(f"{live.url}/health")
        assert health.status_code == 200
        assert health.json()["hosts"][0]["up"] is False
        down = _chat(live.url, "anyone?")
        assert down.status_code == 503
        assert url in down.json()["error"]
        with FakeOllama(models=[ModelInfo("llama3:latest")], port=port):
            started = time.monotonic()
            _wait(lambda: _chat(live.url, "now?").status_code == 200, timeout=10)
            assert time.monotonic() - started < 5, "used within seconds, without a restart"


def test_per_host_concurrency_limits_are_honoured(tmp_path):
    with FakeOllama(models=[ModelInfo("llama3:latest")]) as a:
        a.token_delay = 0.05
        with LiveServer(_settings(tmp_path, [f"{a.url}?max=1"])) as live:
            results: list[int] = []
            threads = [
                threading.Thread(
                    target=lambda i=i: results.append(_chat(live.url, f"m{i}").status_code)
                )
                for i in range(3)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert results == [200, 200, 200]
            assert a.max_in_flight == 1


def test_priority_tiers_fail_over_in_order(tmp_path):
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as gpu,
        FakeOllama(models=[ModelInfo("llama3:latest")]) as cpu,
        LiveServer(_settings(tmp_path, [gpu.url, f"{cpu.url}?priority=1"])) as live,
    ):
        for i in range(4):
            assert _chat(live.url, f"t{i}", f"p{i}").status_code == 200
        assert len(gpu.chat_requests()) == 4 and not cpu.chat_requests()
        gpu.kill()
        assert _chat(live.url, "gpu is off", "p9").status_code == 200
        assert len(cpu.chat_requests()) == 1


def test_the_loaded_model_is_preferred(tmp_path, two):
    a, b = two
    b.loaded["llama3:latest"] = time.time()  # /api/ps on b lists it
    with LiveServer(_settings(tmp_path, [a.url, b.url])) as live:
        for i in range(3):
            assert _chat(live.url, f"x{i}", f"l{i}").status_code == 200
        assert len(b.chat_requests()) == 3


def test_metrics_in_prometheus_format(tmp_path, two):
    a, b = two
    with LiveServer(_settings(tmp_path, [a.url, b.url])) as live:
        assert _chat(live.url, "count me").status_code == 200
        text = httpx.get(f"{live.url}/metrics").text
        assert f'ollang_host_up{{host="{a.url}"}} 1.0' in text
        assert 'ollang_requests_total{host="' in text and 'status="complete"' in text
        assert "ollang_ttft_seconds_bucket" in text and "ollang_in_flight" in text


def test_the_embedded_model_is_routable_while_ollama_is_up(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded extra is not installed")
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        LiveServer(_settings(tmp_path, [a.url], backend="auto")) as live,
    ):
        names = {m["name"]: m for m in httpx.get(f"{live.url}/models").json()["models"]}
        assert names["smollm2:135m"]["hosts"] == ["embedded"]
        r = _chat(live.url, "Say hi.", model="smollm2:135m", options={"num_predict": 4})
        assert r.status_code == 200 and r.json()["response"].strip()
        assert not a.chat_requests()


def test_the_embedded_host_takes_tool_results_and_refuses_what_it_cannot_do(tmp_path):
    """Through the OpenAI dialect: a conversation with a tool result is answered; tools to
    choose among and images are clear 4xx errors in OpenAI's shape, never a 500."""
    pytest.importorskip("llama_cpp", reason="the embedded extra is not installed")
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
    conversation = [
        {"role": "user", "content": "1 + 2?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "3"},
    ]
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with LiveServer(_settings(tmp_path, [], backend="embedded")) as live:

        def post(**body):
            body = {"model": "smollm2:135m", "max_tokens": 4, **body}
            return httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)

        answered = post(messages=conversation)
        assert answered.status_code == 200, answered.text
        assert answered.json()["choices"][0]["message"]["content"].strip()
        for body in (
            {"messages": conversation[:1], "tools": [tool]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}]},
        ):
            refused = post(**body)
            assert 400 <= refused.status_code < 500, refused.text
            assert "embedded model" in refused.json()["error"]["message"]


# -- the CLI uses the same router ---------------------------------------------------------
def _cli_env(tmp_path, hosts: str) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OLLAMA_"))}
    env.update(OLLANG_HOME=str(tmp_path / "home"), OLLANG_OLLAMA_HOSTS=hosts, OLLANG_BACKEND="auto")
    return env


def test_cli_ask_over_several_hosts(tmp_path):
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as a,
        FakeOllama(models=[ModelInfo("mistral:latest")]) as b,
    ):
        env = _cli_env(tmp_path, f"{a.url},{b.url}")
        out = cli("ask", "-m", "mistral", "hi there", env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode().strip() == "echo: hi there"
        assert len(b.chat_requests()) == 1 and not a.chat_requests()
        listed = cli("models", "--json", env=env)
        models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
        assert models["mistral:latest"]["hosts"] == [b.url]


def test_cli_with_no_ollama_names_what_is_available(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded extra is not installed")
    env = _cli_env(tmp_path, f"127.0.0.1:{free_port()}")
    out = cli("ask", "-m", "llama3", "hi", env=env)
    err = out.stderr.decode()
    assert out.returncode == 3, err
    assert "'llama3'" in err and "smollm2:135m" in err and "Traceback" not in err
    assert "using embedded model llama3" not in err


def test_cli_uses_the_embedded_model_while_ollama_is_up(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded extra is not installed")
    with FakeOllama(models=[ModelInfo("llama3:latest")]) as a:
        env = _cli_env(tmp_path, a.url)
        out = cli(
            "ask", "-m", "smollm2:135m", "-o", "num_predict=4", "Say hi.", env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode().strip()
        assert not a.chat_requests()


def test_a_fake_reply_with_a_fault_mid_stream_marks_nothing_lost(tmp_path, two):
    """After an error mid-answer the next turn of that session avoids the host it failed on."""
    a, b = two
    with LiveServer(_settings(tmp_path, [a.url, b.url])) as live:
        assert _chat(live.url, "first", "f").status_code == 200
        served, other = (a, b) if a.chat_requests() else (b, a)
        served.queue(Reply(tokens=["half", " an", " answer"], fault="cut", fault_after=2))
        broken = httpx.post(
            f"{live.url}/chat/stream", json={"message": "second", "session_id": "f"}
        )
        assert "[error]" in broken.text
        assert _chat(live.url, "third", "f").status_code == 200
        assert len(other.chat_requests()) == 1


@pytest.mark.reliability(
    "Faults", "several hosts: one cuts before its first token, the turn fails over"
)
def test_a_host_cut_after_its_headers_before_a_token_fails_over(tmp_path):
    """A proxy in front of Ollama may send headers early; a cut then is still "before the
    first token": the turn goes to the next host, and the cut host is checked again at once
    (it is down until it answers a check; this one, alive, answers)."""
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")]) as first,
        FakeOllama(models=[ModelInfo("llama3:latest")]) as second,
        LiveServer(_settings(tmp_path, [first.url, f"{second.url}?priority=1"])) as live,
    ):
        first.queue(Reply(tokens=["never"], fault="cut", fault_after=0))
        answer = _chat(live.url, "hi", "c")
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"] == "echo: hi"
        assert len(first.chat_requests()) == 1 and len(second.chat_requests()) == 1
        text = httpx.get(f"{live.url}/metrics").text
        assert f'host="{first.url}",kind="ConnectionCutError"' in text
        with SQLiteChatStore(tmp_path / "sessions.db") as store:
            assert [m.text for m in store.get_messages("c")] == ["hi", "echo: hi"]
