"""The HTTP server, for real: uvicorn on a free port, httpx as the client, the Ollama-protocol
test server behind it. Nothing is mocked between the socket and Ollama's wire format."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from ollang.memory import SQLiteChatStore, message_status
from ollang.server import ServerSettings, streaming
from ollang.server.auth import owner_of_key
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo, Reply
from tests.net import free_port

MODELS = ["mistral:latest", "llama3:latest", "qwen3:0.6b"]
WORDS = ["Hello", " there", ",", " how", " can", " I", " help", " you", " today", "?"]


def settings(tmp_path, fake_url: str, **extra) -> ServerSettings:
    # The Ollama path only: with `auto`, the embedded backend is a host too (its models
    # are listed and routable beside Ollama's; tests/integration/test_routing.py covers that).
    extra.setdefault("backend", "ollama")
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_url=fake_url,
        default_model="llama3",
        **extra,
    )


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=[ModelInfo(name) for name in MODELS], token_delay=0.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory):
    with LiveServer(settings(tmp_path_factory.mktemp("srv"), fake.url)) as server:
        yield server


@pytest.fixture
def client(live):
    with httpx.Client(base_url=live.url, timeout=10) as c:
        yield c


def last_chat(fake) -> dict:
    return fake.chat_requests()[-1]


def user_texts(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


def assert_json_error(response: httpx.Response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500 or response.status_code in (502, 503, 504)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "hint" in body
    assert "Traceback" not in response.text
    return body


# -- the tutorial's calls -----------------------------------------------------------------
def test_the_tutorials_curl_call_works_verbatim(live, client, fake):
    fake.queue(Reply(tokens=["Bonjour", "!"]))
    # Exactly what `curl -X POST URL -d '{...}'` sends: a form Content-Type, a JSON body.
    response = client.post(
        "/chat",
        content=b'{"message": "Hello", "model": "mistral"}',
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "curl/8.5.0",
            "Accept": "*/*",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "Bonjour!"
    assert last_chat(fake)["model"] == "mistral:latest"
    assert user_texts(last_chat(fake)) == ["Hello"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_real_curl_command(live, fake):
    fake.queue(Reply(tokens=["Hi", " from", " curl"]))
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            f"{live.url}/chat",
            "-d",
            '{"message": "Hello", "model": "mistral"}',
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert json.loads(out)["response"] == "Hi from curl"


def test_query_parameter_form(client, fake):
    fake.queue(Reply(tokens=["Hey"]))
    response = client.post("/chat", params={"message": "Hello"})
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "Hey"
    assert last_chat(fake)["model"] == "llama3:latest"  # the server's default model


def test_chat_response_shape(client, fake):
    fake.queue(Reply(tokens=WORDS))
    body = client.post("/chat", json={"message": "Hi", "model": "mistral"}).json()
    assert body["response"] == "".join(WORDS)
    assert body["model"] == "mistral:latest"
    assert len(body["session_id"]) == 32 and body["status"] == "complete"
    assert set(body["usage"]) == {"input_tokens", "output_tokens"}
    assert body["usage"]["output_tokens"] > 0 and body["usage"]["input_tokens"] > 0
    assert set(body["timings"]) == {"ttft_s", "total_s", "tokens_per_s"}
    assert 0 <= body["timings"]["ttft_s"] <= body["timings"]["total_s"]


def test_session_continuity(client, fake):
    fake.queue(Reply(tokens=["Nice", " to", " meet", " you", ",", " Ada"]))
    first = client.post("/chat", json={"message": "My name is Ada."}).json()
    fake.queue(Reply(tokens=["Ada"]))
    second = client.post(
        "/chat", json={"message": "What is my name?", "session_id": first["session_id"]}
    ).json()
    assert second["session_id"] == first["session_id"]
    sent = last_chat(fake)["messages"]
    assert [m["content"] for m in sent[-3:]] == [
        "My name is Ada.",
        "Nice to meet you, Ada",
        "What is my name?",
    ]
    # A new call without session_id starts afresh.
    fake.queue(Reply(tokens=["?"]))
    third = client.post("/chat", json={"message": "Who am I?"}).json()
    assert third["session_id"] != first["session_id"]
    assert user_texts(last_chat(fake)) == ["Who am I?"]


def test_system_prompt_and_options_reach_ollama(client, fake):
    fake.queue(Reply(tokens=["ok"]))
    client.post(
        "/chat",
        json={"message": "Hi", "system": "Be terse.", "options": {"temperature": 0.2, "seed": 7}},
    ).raise_for_status()
    sent = last_chat(fake)
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."} or (
        sent["messages"][0]["role"] == "system" and sent["messages"][0]["content"] == "Be terse."
    )
    assert sent["options"]["temperature"] == 0.2 and sent["options"]["seed"] == 7


# -- streaming -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_fake():
    with FakeOllama(models=[ModelInfo(name) for name in MODELS], token_delay=0.05) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_live(slow_fake, tmp_path_factory):
    with LiveServer(settings(tmp_path_factory.mktemp("slow"), slow_fake.url)) as server:
        yield server


def parse_sse(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        events.append((event, "\n".join(data)))
    return events


ACCEPTS = {
    "text": None,
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
}


def stream_timed(url: str, accept: str | None, payload: dict) -> tuple[list[bytes], float, float]:
    """POST /chat/stream; the chunks, when the first arrived and when the stream ended."""
    headers = {"Accept": accept} if accept else {}
    chunks: list[bytes] = []
    start = time.monotonic()
    first = None
    with httpx.stream(
        "POST", f"{url}/chat/stream", json=payload, headers=headers, timeout=10
    ) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            if first is None:
                first = time.monotonic() - start
            chunks.append(chunk)
    return chunks, first or 0.0, time.monotonic() - start


@pytest.mark.parametrize("fmt", list(ACCEPTS))
def test_streams_arrive_incrementally_in_each_format(slow_live, slow_fake, fmt):
    slow_fake.queue(Reply(tokens=WORDS))
    chunks, first, total = stream_timed(slow_live.url, ACCEPTS[fmt], {"message": "Hi"})
    # 10 tokens 50 ms apart: the first is here long before the last.
    assert first < total - 0.25, (first, total)
    text = b"".join(chunks).decode()
    if fmt == "text":
        assert text == "".join(WORDS)
    elif fmt == "sse":
        events = parse_sse(text)
        assert [e for e, _ in events] == ["token"] * len(WORDS) + ["done"]
        assert "".join(d for e, d in events if e == "token") == "".join(WORDS)
        done = json.loads(events[-1][1])
        assert done["model"] == "llama3:latest" and len(done["session_id"]) == 32
        assert done["usage"]["output_tokens"] > 0 and done["timings"]["ttft_s"] is not None
    else:
        lines = [json.loads(line) for line in text.splitlines()]
        assert all(line["done"] is False for line in lines[:-1])
        assert "".join(line["message"]["content"] for line in lines[:-1]) == "".join(WORDS)
        assert lines[-1]["done"] is True and "usage" in lines[-1] and "timings" in lines[-1]


def test_stream_media_types_and_session_header(slow_live, slow_fake):
    for accept, media in [
        (None, "text/plain"),
        ("text/event-stream", "text/event-stream"),
        ("application/x-ndjson", "application/x-ndjson"),
    ]:
        slow_fake.queue(Reply(tokens=["a"]))
        headers = {"Accept": accept} if accept else {}
        r = httpx.post(f"{slow_live.url}/chat/stream", json={"message": "x"}, headers=headers)
        assert r.headers["content-type"].startswith(media)
        assert len(r.headers["x-session-id"]) == 32


def test_reasoning_is_streamed_apart(slow_live, slow_fake):
    slow_fake.queue(Reply(tokens=["42"], thinking=["Let", " me", " think"]))
    r = httpx.post(
        f"{slow_live.url}/chat/stream",
        json={"message": "?", "options": {"think": True}},
        headers={"Accept": "text/event-stream"},
    )
    events = parse_sse(r.text)
    assert "".join(d for e, d in events if e == "reasoning") == "Let me think"
    assert "".join(d for e, d in events if e == "token") == "42"


@pytest.mark.reliability("Faults", "server: Ollama error mid-stream")
@pytest.mark.parametrize("fmt", list(ACCEPTS))
def test_error_inside_a_stream_then_clean_close(live, fake, fmt):
    fake.queue(Reply(tokens=["Partial", " answer", " lost"], fault="error", fault_after=2))
    headers = {"Accept": ACCEPTS[fmt]} if ACCEPTS[fmt] else {}
    r = httpx.post(f"{live.url}/chat/stream", json={"message": "x"}, headers=headers, timeout=10)
    assert r.status_code == 200
    if fmt == "sse":
        events = parse_sse(r.text)
        assert [e for e, _ in events] == ["token", "token", "error"]
        error = json.loads(events[-1][1])
        assert error["error"] and "hint" in error
    elif fmt == "ndjson":
        last = json.loads(r.text.splitlines()[-1])
        assert last["error"] and last["done"] is True
    else:
        assert r.text.startswith("Partial answer\n[error] ")
    sid = r.headers["x-session-id"]
    stored = SQLiteChatStore(live.store.path).get_messages(sid)
    assert stored[-1].content == "Partial answer" and message_status(stored[-1]) == "error"


@pytest.mark.reliability("Faults", "server: client disconnects mid-stream")
@pytest.mark.parametrize("fmt", list(ACCEPTS))
def test_client_disconnect_cancels_upstream_and_keeps_the_partial(slow_live, slow_fake, fmt):
    slow_fake.queue(Reply(tokens=[f" w{i}" for i in range(200)]))  # 10 s of tokens
    before = len(slow_fake.cancelled)
    headers = {"Accept": ACCEPTS[fmt]} if ACCEPTS[fmt] else {}
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST", f"{slow_live.url}/chat/stream", json={"message": "long"}, headers=headers
        ) as response,
    ):
        sid = response.headers["x-session-id"]
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if received.count(b" w") >= 3:
                break
        left_at = time.monotonic()
    # Leaving the `with` closed the connection: within a second Ollama's request is gone.
    deadline = time.monotonic() + 3
    while len(slow_fake.cancelled) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(slow_fake.cancelled) > before, "the upstream request was not cancelled"
    assert slow_fake.cancelled[-1] - left_at < 1.0
    time.sleep(0.2)
    stored = SQLiteChatStore(slow_live.store.path).get_messages(sid)
    assert stored[0].content == "long"
    assert message_status(stored[-1]) == "interrupted"
    assert stored[-1].content.startswith(" w0 w1 w2")
    assert len(stored[-1].content.split()) < 200


def test_headers_go_out_while_the_model_loads(slow_live, slow_fake, monkeypatch):
    monkeypatch.setattr(streaming, "HEADERS_AFTER", 0.2)
    slow_fake.queue(Reply(tokens=["late"], first_token_delay=1.0))
    started = time.monotonic()
    with httpx.stream("POST", f"{slow_live.url}/chat/stream", json={"message": "x"}) as r:
        headers_at = time.monotonic() - started
        body = r.read()
    assert r.status_code == 200 and body == b"late"
    assert headers_at < 0.8 < time.monotonic() - started


@pytest.mark.reliability("Faults", "server: client disconnects before the first token")
def test_disconnect_before_the_first_token_cancels_upstream(slow_live, slow_fake):
    slow_fake.queue(Reply(tokens=["never"], fault="hang"))  # a model that is still loading
    before = len(slow_fake.cancelled)
    body = json.dumps({"message": "are you there?", "session_id": "loading-1"}).encode()
    host, port = slow_live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        time.sleep(0.5)
        left_at = time.monotonic()
    deadline = left_at + 3
    while len(slow_fake.cancelled) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(slow_fake.cancelled) > before, "the upstream request was not cancelled"
    assert slow_fake.cancelled[-1] - left_at < 1.0
    stored = SQLiteChatStore(slow_live.store.path).get_messages("loading-1")
    assert [m.content for m in stored] == ["are you there?"]


# -- errors --------------------------------------------------------------------------------
def test_ollama_down_is_503_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with LiveServer(settings(tmp_path, url)) as server, httpx.Client(base_url=server.url) as c:
        for path in ("/chat", "/chat/stream", "/generate", "/models"):
            body = assert_json_error(
                c.post(path, json={"message": "Hi", "prompt": "Hi"})
                if path != "/models"
                else c.get(path),
                503,
            )
            assert url in body["error"] and "ollama serve" in body["hint"]
        health = c.get("/health")
        assert health.status_code == 200
        assert health.json()["ollama"] == {
            "reachable": False,
            "url": url,
            "version": None,
            "error": health.json()["ollama"]["error"],
        }


def test_unknown_model_is_404_with_pull_hint_and_nothing_pulled(client, fake):
    for path in ("/chat", "/chat/stream"):
        body = assert_json_error(client.post(path, json={"message": "Hi", "model": "nope"}), 404)
        assert "nope" in body["error"]
        assert "ollama pull nope" in body["hint"]
    assert not [r for r in fake.requests if r.path == "/api/pull"]


def test_health_reports_ollama(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["ollama"]["reachable"] is True and body["ollama"]["version"]


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b'{"message": ', 400),
        (b"\xff\xfe", 400),
        (b"{}", 422),
        (b'{"message": ""}', 422),
        (b'{"message": "   "}', 422),
        (b'{"message": 5}', 422),
        (b'{"message": ["a"]}', 422),
        (b'{"message": null}', 422),
        (b"[1, 2]", 422),
        (b'"Hello"', 422),
        (b'{"message": "x", "model": 3}', 422),
        (b'{"message": "x", "model": "../etc"}', 422),
        (b'{"message": "x", "session_id": "../../etc/passwd"}', 422),
        (b'{"message": "x", "session_id": "a..b"}', 422),
        (b'{"message": "x", "session_id": ""}', 422),
        (b'{"message": "x", "session_id": "' + b"a" * 129 + b'"}', 422),
        (b'{"message": "x", "options": {"bogus": 1}}', 422),
        (b'{"message": "x", "options": {"temperature": "hot"}}', 422),
        (b'{"message": "x", "options": "fast"}', 422),
        (b'{"message": "x", "system": 1}', 422),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, 400),
    ],
)
def test_bad_input_is_a_json_4xx(client, content, status):
    for path in ("/chat", "/chat/stream"):
        assert_json_error(client.post(path, content=content), status)


def test_bad_query_and_path_values(client):
    assert_json_error(client.post("/chat", params={"message": "x", "session_id": "a/b"}), 422)
    assert_json_error(client.get("/sessions/a..b"), 422)
    assert_json_error(client.get("/sessions/" + "x" * 200), 422)
    assert_json_error(client.get("/sessions", params={"limit": "many"}), 422)
    assert_json_error(client.get("/no/such/endpoint"), 404)
    assert_json_error(client.put("/chat"), 405)


@pytest.mark.reliability("Hostile input", "server: body and message limits")
def test_body_and_message_limits(tmp_path, fake):
    small = settings(
        tmp_path, fake.url, max_body_bytes=4096, max_image_body_bytes=4096, max_message_chars=100
    )
    with LiveServer(small) as server, httpx.Client(base_url=server.url) as c:
        big = json.dumps({"message": "a" * 10_000}).encode()
        assert_json_error(c.post("/chat", content=big), 413)

        def chunked():  # no Content-Length: counted as it is read
            yield big[:2000]
            yield big[2000:]

        assert_json_error(c.post("/chat", content=chunked()), 413)
        body = assert_json_error(c.post("/chat", json={"message": "a" * 101}), 413)
        assert "100" in body["error"]
        assert_json_error(c.post("/chat", json={"message": "a", "system": "s" * 101}), 413)
        # The OpenAI and Ollama endpoints answer in their own error shapes, also when the
        # declared Content-Length alone is refused (before the app reads anything).
        for body in (big, chunked()):
            openai = c.post("/v1/chat/completions", content=body)
            assert openai.status_code == 413 and openai.json()["error"]["message"]
            ollama = c.post("/api/chat", content=big)
            assert ollama.status_code == 413 and isinstance(ollama.json()["error"], str)


def test_default_body_limit_is_a_mebibyte_and_32_mib_for_model_requests(client):
    # A mebibyte for everything but the model requests, which may carry images.
    assert_json_error(client.post("/models/pull", json={"model": "a" * (1024 * 1024)}), 413)
    # A model request of more than a mebibyte is read (images), its message still limited.
    body = assert_json_error(client.post("/chat", json={"message": "a" * (1024 * 1024)}), 413)
    assert "100000" in body["error"]
    assert_json_error(
        client.post("/chat", content=b'{"message": "' + b"a" * (32 * 1024 * 1024) + b'"}'), 413
    )


# -- models ----------------------------------------------------------------------------------
def test_models_lists_installed_models(client):
    models = client.get("/models").json()["models"]
    assert sorted(m["name"] for m in models) == sorted(MODELS)
    first = models[0]
    assert isinstance(first["size"], int) and isinstance(first["size_gb"], float)
    assert set(first["details"]) >= {"family", "parameter_size", "quantization_level"}


def test_allow_model_patterns(tmp_path, fake):
    with LiveServer(settings(tmp_path, fake.url, allow_models=["mistral*", "qwen3:*"])) as server:
        c = httpx.Client(base_url=server.url)
        names = sorted(m["name"] for m in c.get("/models").json()["models"])
        assert names == ["mistral:latest", "qwen3:0.6b"]
        body = assert_json_error(c.post("/chat", json={"message": "x", "model": "llama3"}), 403)
        assert "not allowed" in body["error"]
        assert_json_error(c.post("/chat", json={"message": "x"}), 403)  # the default, llama3
        fake.queue(Reply(tokens=["ok"]))
        assert c.post("/chat", json={"message": "x", "model": "mistral"}).status_code == 200
        fake.queue(Reply(tokens=["ok"]))
        assert c.post("/chat", json={"message": "x", "model": "qwen3:0.6b"}).status_code == 200
        c.close()


def test_pull_is_forbidden_unless_allowed(client, fake):
    assert_json_error(client.post("/models/pull", json={"model": "tinyllama"}), 403)
    assert not [r for r in fake.requests if r.path == "/api/pull"]


def test_pull_streams_ndjson_progress_when_allowed(tmp_path):
    with (
        FakeOllama(models=[ModelInfo("llama3:latest")], pullable=["tinyllama"]) as f,
        LiveServer(settings(tmp_path, f.url, allow_pull=True)) as server,
        httpx.Client(base_url=server.url, timeout=20) as c,
    ):
        r = c.post("/models/pull", json={"model": "tinyllama"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert lines[0]["status"] == "pulling manifest"
        assert lines[-1] == {"status": "success"}
        assert any("total" in line for line in lines)
        assert any(m["name"].startswith("tinyllama") for m in c.get("/models").json()["models"])
        # Unknown names: an error line; registry hosts and odd names: refused outright.
        r = c.post("/models/pull", json={"model": "no-such-model"})
        last = json.loads(r.text.splitlines()[-1])
        assert last["error"] and last["done"] is True
        for name in ("evil.example.com/x/y", "https://example.com/m", "../x", ""):
            assert_json_error(c.post("/models/pull", json={"model": name}), 422)


# -- sessions --------------------------------------------------------------------------------
def test_sessions_list_get_delete(client, fake):
    fake.queue(Reply(tokens=["Four"]))
    sid = client.post("/chat", json={"message": "2+2?"}).json()["session_id"]
    listed = client.get("/sessions").json()["sessions"]
    assert listed[0]["id"] == sid and listed[0]["title"] == "2+2?"
    assert listed[0]["message_count"] == 2
    detail = client.get(f"/sessions/{sid}").json()
    assert [(m["role"], m["content"], m["status"]) for m in detail["messages"]] == [
        ("human", "2+2?", "complete"),
        ("ai", "Four", "complete"),
    ]
    assert detail["messages"][1]["model"] == "llama3:latest"
    assert client.delete(f"/sessions/{sid}").status_code == 204
    assert_json_error(client.get(f"/sessions/{sid}"), 404)
    assert_json_error(client.delete(f"/sessions/{sid}"), 404)
    assert sid not in [s["id"] for s in client.get("/sessions").json()["sessions"]]


# -- auth ------------------------------------------------------------------------------------
@pytest.mark.reliability(
    "Security", "no key reads, lists, continues or deletes another key's sessions"
)
def test_api_keys_and_session_ownership(tmp_path, fake):
    keys = ["key-A-0123456789", "key-B-0123456789"]
    with LiveServer(settings(tmp_path, fake.url, api_keys=keys)) as server:
        anon = httpx.Client(base_url=server.url)
        a = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys[0]}"})
        b = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys[1]}"})
        wrong = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer nope"})

        for c in (anon, wrong):
            for method, path in [
                ("POST", "/chat"),
                ("POST", "/chat/stream"),
                ("GET", "/models"),
                ("GET", "/sessions"),
                ("GET", "/sessions/x"),
                ("DELETE", "/sessions/x"),
                ("POST", "/generate"),
                ("POST", "/models/pull"),
            ]:
                r = c.request(method, path, json={"message": "hi"})
                assert_json_error(r, 401)
                assert r.headers["www-authenticate"] == "Bearer"
        basic = httpx.post(f"{server.url}/chat", json={"message": "x"}, auth=("u", keys[0]))
        assert_json_error(basic, 401)
        assert anon.get("/health").status_code == 200
        assert anon.get("/").status_code == 200  # the page shell; its API calls need the key

        fake.queue(Reply(tokens=["secret", " plans"]))
        sid = a.post("/chat", json={"message": "my secret"}).json()["session_id"]
        n_requests = len(fake.chat_requests())

        assert [s["id"] for s in a.get("/sessions").json()["sessions"]] == [sid]
        assert b.get("/sessions").json()["sessions"] == []
        assert_json_error(b.get(f"/sessions/{sid}"), 404)
        assert_json_error(b.delete(f"/sessions/{sid}"), 404)
        for path in ("/chat", "/chat/stream"):
            assert_json_error(b.post(path, json={"message": "tell me", "session_id": sid}), 404)
        assert len(fake.chat_requests()) == n_requests  # B's turns never reached Ollama
        detail = a.get(f"/sessions/{sid}").json()
        assert [m["content"] for m in detail["messages"]] == ["my secret", "secret plans"]

        # B cannot take over an id A holds, but gets its own sessions.
        fake.queue(Reply(tokens=["hi", " B"]))
        own = b.post("/chat", json={"message": "hello", "session_id": "b-own"})
        assert own.status_code == 200
        assert [s["id"] for s in b.get("/sessions").json()["sessions"]] == ["b-own"]

        # The store records a digest of the key, never the key.
        info = server.store.get_session(sid)
        assert info.owner == owner_of_key(keys[0]) and keys[0] not in info.owner
        raw = (tmp_path / "sessions.db").read_bytes()
        assert keys[0].encode() not in raw and keys[1].encode() not in raw

        assert b.delete(f"/sessions/{sid}").status_code == 404
        assert a.delete(f"/sessions/{sid}").status_code == 204
        for c in (anon, a, b, wrong):
            c.close()


def test_cors_is_off_unless_configured(client, tmp_path, fake):
    r = client.options(
        "/chat",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers
    origin = "https://app.example"
    with LiveServer(settings(tmp_path, fake.url, cors_origins=[origin])) as server:
        r = httpx.options(
            f"{server.url}/chat",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.headers["access-control-allow-origin"] == origin
        preflight = httpx.options(
            f"{server.url}/v1/chat/completions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-session-id",
            },
        )
        assert preflight.status_code == 200, preflight.text  # a browser may send the header
        streamed = httpx.post(
            f"{server.url}/chat/stream", json={"message": "hi"}, headers={"Origin": origin}
        )
        exposed = streamed.headers["access-control-expose-headers"].lower()
        assert "x-session-id" in exposed and streamed.headers["x-session-id"]  # and read it


# -- generate --------------------------------------------------------------------------------
def test_generate_and_generate_stream(client, fake):
    sessions_before = client.get("/sessions").json()["sessions"]
    fake.queue(Reply(tokens=["Blue", " light", " scatters"]))
    body = client.post("/generate", json={"prompt": "Why is the sky blue?"}).json()
    assert body["response"] == "Blue light scatters"
    assert body["usage"]["output_tokens"] and body["timings"]["ttft_s"] is not None
    assert "session_id" not in body or body["session_id"] is None
    fake.queue(Reply(tokens=["a", "b"]))
    r = client.post(
        "/generate/stream", json={"prompt": "x"}, headers={"Accept": "application/x-ndjson"}
    )
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line.get("response") for line in lines[:-1]] == ["a", "b"]
    assert lines[-1]["done"] is True
    assert client.get("/sessions").json()["sessions"] == sessions_before  # nothing stored
    assert fake.requests[-1].path == "/api/chat"


# -- docs ------------------------------------------------------------------------------------
def test_openapi_documents_typed_bodies(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/chat"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/ChatRequest"
    chat = spec["components"]["schemas"]["ChatRequest"]
    assert chat["required"] == ["message"]
    assert chat["properties"]["message"]["type"] == "string"
    assert "ChatOptions" in spec["components"]["schemas"]
    ok = spec["paths"]["/chat"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"] == "#/components/schemas/ChatResponse"
    for path in (
        "/chat/stream",
        "/generate",
        "/models",
        "/models/pull",
        "/sessions",
        "/sessions/{session_id}",
        "/health",
    ):
        assert path in spec["paths"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"message": "Hello", "system": "\\ud800"}',
        '{"message": "Hello", "options": {"format": {"x": NaN}}}',
        '{"message": "Hello", "options": {"stop": ["\\udfff"]}}',
        '{"message": "Hello", "options": {"format": {"x": 1e400}}}',
    ],
)
def test_json_values_that_cannot_be_passed_on_are_a_422(client, raw):
    body = assert_json_error(
        client.post("/chat", content=raw, headers={"Content-Type": "application/json"}), 422
    )
    assert "cannot be passed on" in body["error"]


def test_integers_beyond_64_bits_are_a_422_never_rounded(client, fake):
    raw = f'{{"message": "Hello", "options": {{"seed": {10**22 + 1}}}}}'  # a float: 10**22
    body = assert_json_error(
        client.post("/chat", content=raw, headers={"Content-Type": "application/json"}), 422
    )
    assert "cannot be passed on" in body["error"]
    ok = f'{{"message": "Hello", "options": {{"seed": {2**63 - 1}}}}}'
    assert client.post("/chat", content=ok).status_code == 200
    assert last_chat(fake)["options"]["seed"] == 2**63 - 1
