"""Ollama's API on ollang, for real: ``ollama.Client`` and ``ChatOllama`` against the server
on a port, over the Ollama-protocol test server, checking what reached it."""

from __future__ import annotations

import base64
import json
import time

import httpx
import ollama
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo, Reply

MODELS = ["llama3:latest", "qwen3:0.6b", "nomic-embed-text:latest"]
KEY = "key-ollama-0123456789"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
PNG = base64.b64encode(PNG_BYTES).decode()


def settings(tmp_path, fake_url: str, **extra) -> ServerSettings:
    extra.setdefault("backend", "ollama")
    return ServerSettings(
        store_url=f"sqlite:///{tmp_path / 'sessions.db'}",
        ollama_url=fake_url,
        default_model="llama3",
        **extra,
    )


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=[ModelInfo(name) for name in MODELS], pullable=["tinyllama"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory):
    with LiveServer(settings(tmp_path_factory.mktemp("ol"), fake.url)) as server:
        yield server


@pytest.fixture
def client(live):
    return ollama.Client(host=live.url, timeout=10)


def last_chat(fake) -> dict:
    return fake.chat_requests()[-1]


# -- chat ------------------------------------------------------------------------------------
def test_chat_passes_the_request_on_as_given(client, fake):
    fake.queue(Reply(tokens=["4"], thinking=["2", "+2"]))
    reply = client.chat(
        model="llama3",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
        ],
        options={"temperature": 0, "num_keep": 5, "mirostat": 1, "stop": ["\n"]},
        format="json",
        keep_alive="10m",
        think=True,
    )
    assert reply.message.content == "4" and reply.message.thinking == "2+2"
    assert reply.done and reply.done_reason == "stop" and reply.eval_count == 3
    assert reply.prompt_eval_count > 0 and reply.model == "llama3:latest"
    sent = last_chat(fake)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
    ]
    # Ollama options pass on as they are (even ones ollang knows nothing of), with
    # num_ctx set by ollang since the client set none.
    assert sent["options"] == {
        "temperature": 0,
        "num_keep": 5,
        "mirostat": 1,
        "stop": ["\n"],
        "num_ctx": 8192,
    }
    assert sent["format"] == "json" and sent["keep_alive"] == "10m" and sent["think"] is True


def test_a_num_ctx_the_client_sets_is_kept(client, fake):
    client.chat(
        model="llama3", messages=[{"role": "user", "content": "x"}], options={"num_ctx": 512}
    )
    assert last_chat(fake)["options"] == {"num_ctx": 512}


def test_chat_stream_forwards_the_hosts_lines(client, fake):
    fake.queue(Reply(tokens=["Hel", "lo"], thinking=["hm"]))
    parts = list(
        client.chat(
            model="llama3", messages=[{"role": "user", "content": "x"}], stream=True, think=True
        )
    )
    assert [p.message.thinking for p in parts[:-1]] == ["hm", None, None]
    assert [p.message.content for p in parts[:-1]] == ["", "Hel", "lo"]
    assert [p.done for p in parts] == [False, False, False, True]
    done = parts[-1]
    assert done.done_reason == "stop" and done.eval_count == 3 and done.total_duration > 0


def test_raw_stream_is_ndjson(live, fake):
    fake.queue(Reply(tokens=["a", "b"]))
    r = httpx.post(
        f"{live.url}/api/chat",
        json={"model": "llama3", "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["message"]["content"] for line in lines] == ["a", "b", ""]
    assert lines[-1]["done"] is True and "eval_count" in lines[-1]


def test_images_and_tools(client, fake):
    client.chat(
        model="llama3",
        messages=[{"role": "user", "content": "What is this?", "images": [PNG_BYTES]}],
    )
    assert last_chat(fake)["messages"] == [
        {"role": "user", "content": "What is this?", "images": [PNG]}
    ]

    tools = [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two numbers",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                },
            },
        }
    ]
    fake.queue(Reply([], tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]))
    reply = client.chat(model="llama3", messages=[{"role": "user", "content": "2+3?"}], tools=tools)
    assert last_chat(fake)["tools"] == tools
    call = reply.message.tool_calls[0]
    assert call.function.name == "add" and call.function.arguments == {"a": 2, "b": 3}
    fake.queue(Reply(tokens=["5"]))
    client.chat(
        model="llama3",
        messages=[
            {"role": "user", "content": "2+3?"},
            reply.message,
            {"role": "tool", "content": "5", "tool_name": "add"},
        ],
        tools=tools,
    )
    sent = last_chat(fake)["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]
    assert sent[2] == {"role": "tool", "content": "5", "tool_name": "add"}


def test_empty_messages_load_the_model_without_a_turn(client, fake):
    before = len(fake.chat_requests())
    reply = client.chat(model="llama3", messages=[])
    assert reply.done and reply.done_reason == "load" and reply.message.content == ""
    assert len(fake.chat_requests()) == before


# -- generate --------------------------------------------------------------------------------
def test_generate_stream_and_not(client, fake):
    fake.queue(Reply(tokens=["Blue", " light"]))
    reply = client.generate(model="llama3", prompt="Why is the sky blue?", system="Be brief.")
    assert reply.response == "Blue light" and reply.done and reply.eval_count == 2
    assert last_chat(fake)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    fake.queue(Reply(tokens=["a", "b"], thinking=["t"]))
    parts = list(client.generate(model="llama3", prompt="x", stream=True, think=True))
    assert [p.response for p in parts] == ["", "a", "b", ""]
    assert parts[0].thinking == "t" and parts[-1].done and parts[-1].done_reason == "stop"
    fake.queue(Reply(tokens=["ok"]))
    client.generate(model="llama3", prompt="look", images=[PNG_BYTES])
    assert last_chat(fake)["messages"] == [{"role": "user", "content": "look", "images": [PNG]}]
    before = len(fake.chat_requests())
    loaded = client.generate(model="llama3", prompt="")
    assert loaded.done_reason == "load" and len(fake.chat_requests()) == before


def test_generate_is_never_recorded(live, fake):
    before = [s.id for s in live.store.list_sessions()]
    ollama.Client(host=live.url, headers={"X-Session-Id": "gen-1"}).generate(
        model="llama3", prompt="one-shot"
    )
    assert [s.id for s in live.store.list_sessions()] == before


# -- models ----------------------------------------------------------------------------------
def test_list_show_ps_version(client, live, fake):
    listed = client.list().models
    assert sorted(m.model for m in listed) == sorted(MODELS)
    first = next(m for m in listed if m.model == "llama3:latest")
    assert first.size > 0 and first.details.family == "llama" and first.digest
    shown = client.show("llama3")
    assert shown.modelinfo["llama.context_length"] == 8192 and shown.template
    assert fake.requests[-1].body == {"model": "llama3:latest"}  # the host's own answer
    client.chat(model="qwen3:0.6b", messages=[{"role": "user", "content": "load"}])
    assert "qwen3:0.6b" in [m.model for m in client.ps().models]
    version = httpx.get(f"{live.url}/api/version", timeout=10).json()
    assert version["version"] == "0.12.0" and version["ollang"]


def test_allow_list_applies_everywhere(tmp_path, fake):
    with LiveServer(settings(tmp_path, fake.url, allow_models=["llama3*"])) as server:
        c = ollama.Client(host=server.url, timeout=10)
        fake.loaded["qwen3:0.6b"] = time.time()
        assert [m.model for m in c.list().models] == ["llama3:latest"]
        assert [m.model for m in c.ps().models if m.model != "llama3:latest"] == []
        for call in (
            lambda: c.chat(model="qwen3:0.6b", messages=[{"role": "user", "content": "x"}]),
            lambda: c.generate(model="qwen3:0.6b", prompt="x"),
            lambda: c.show("qwen3:0.6b"),
            lambda: c.embed(model="nomic-embed-text", input="x"),
        ):
            with pytest.raises(ollama.ResponseError) as caught:
                call()
            assert caught.value.status_code == 403


def test_embed_is_passed_on(client, fake):
    reply = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(reply.embeddings) == 2 and len(reply.embeddings[0]) == 4
    assert fake.requests[-1].path == "/api/embed"
    assert fake.requests[-1].body == {"model": "nomic-embed-text:latest", "input": ["a", "b"]}
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model="nope", input="x")
    assert caught.value.status_code == 404


# -- errors ----------------------------------------------------------------------------------
def test_errors_have_ollamas_shape_and_statuses(client, live, fake):
    before = len(fake.chat_requests())
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404 and "nope" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.chat(model="nope", messages=[{"role": "user", "content": "x"}], stream=True))
    assert caught.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("nope")
    assert caught.value.status_code == 404
    assert len(fake.chat_requests()) == before
    for body in (
        {"messages": []},
        {"model": "llama3", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "llama3", "messages": [{"role": "user", "content": "x", "images": ["***"]}]},
        {"model": "llama3", "options": {"temperature": {"nested": 1}}},
    ):
        r = httpx.post(f"{live.url}/api/chat", json=body, timeout=10)
        assert r.status_code == 400, r.text
        assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_an_error_mid_stream_is_an_error_line(client, fake):
    fake.queue(Reply(tokens=["Part", "ial", " lost"], fault="error", fault_after=2))
    received = []
    with pytest.raises(ollama.ResponseError) as caught:
        for part in client.chat(
            model="llama3", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received.append(part.message.content)
    assert "".join(received) == "Partial"
    assert caught.value.status_code == -1 and "something went wrong" in caught.value.error


def test_keys_and_limits(tmp_path, fake):
    small = settings(tmp_path, fake.url, api_keys=[KEY], max_message_chars=100)
    with LiveServer(small) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            c = ollama.Client(host=server.url, headers=headers, timeout=10)
            for call in (
                lambda c=c: c.chat(model="llama3", messages=[{"role": "user", "content": "x"}]),
                lambda c=c: c.list(),
                lambda c=c: c.ps(),
                lambda c=c: c.show("llama3"),
            ):
                with pytest.raises(ollama.ResponseError) as caught:
                    call()
                assert caught.value.status_code == 401
        c = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert c.chat(model="llama3", messages=[{"role": "user", "content": "x"}]).message.content
        with pytest.raises(ollama.ResponseError) as caught:
            c.chat(model="llama3", messages=[{"role": "user", "content": "a" * 101}])
        assert caught.value.status_code == 413
        with pytest.raises(ollama.ResponseError) as caught:
            c.generate(model="llama3", prompt="p" * 101)
        assert caught.value.status_code == 413


def test_pull_only_when_allowed(client, tmp_path, fake):
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("tinyllama")
    assert caught.value.status_code == 403
    assert not [r for r in fake.requests if r.path == "/api/pull"]
    with LiveServer(settings(tmp_path, fake.url, allow_pull=True)) as server:
        c = ollama.Client(host=server.url, timeout=20)
        progress = list(c.pull("tinyllama", stream=True))
        assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
        assert any(p.total for p in progress) and any(p.completed for p in progress)
        assert c.pull("tinyllama").status == "success"
        with pytest.raises(ollama.ResponseError):
            list(c.pull("no-such-model", stream=True))
        r = httpx.post(f"{server.url}/api/pull", json={"model": "evil.example.com/x/y"}, timeout=10)
        assert r.status_code == 400


# -- disconnects -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_fake():
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.05) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_live(slow_fake, tmp_path_factory):
    with LiveServer(settings(tmp_path_factory.mktemp("ol-slow"), slow_fake.url)) as server:
        yield server


@pytest.mark.reliability(
    "Faults", "Ollama API: client disconnects mid-stream, upstream closed, partial kept"
)
def test_client_disconnect_cancels_upstream_and_keeps_the_partial(slow_live, slow_fake):
    slow_fake.queue(Reply(tokens=[f" w{i}" for i in range(200)]))  # 10 s of tokens
    before = len(slow_fake.cancelled)
    body = {
        "model": "llama3",
        "messages": [{"role": "user", "content": "long"}],
    }
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST", f"{slow_live.url}/api/chat", json=body, headers={"X-Session-Id": "ol-cut"}
        ) as response,
    ):
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if received.count(b" w") >= 3:
                break
        left_at = time.monotonic()
    deadline = left_at + 3
    while len(slow_fake.cancelled) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(slow_fake.cancelled) > before, "the upstream request was not cancelled"
    assert slow_fake.cancelled[-1] - left_at < 1.0
    time.sleep(0.2)
    stored = httpx.get(f"{slow_live.url}/sessions/ol-cut", timeout=10).json()["messages"]
    assert stored[0]["content"] == "long" and stored[-1]["status"] == "interrupted"
    assert stored[-1]["content"].startswith(" w0 w1 w2")


# -- recorded sessions -----------------------------------------------------------------------
def test_a_recorded_ollama_conversation_holds_each_message_once(live, fake):
    c = ollama.Client(host=live.url, headers={"X-Session-Id": "ol-rec"}, timeout=10)
    messages = [{"role": "user", "content": "Hello", "images": [PNG_BYTES]}]
    first = c.chat(model="llama3", messages=messages)
    messages += [first.message, {"role": "user", "content": "More"}]
    list(c.chat(model="llama3", messages=messages, stream=True))
    detail = httpx.get(f"{live.url}/sessions/ol-rec", timeout=10).json()["messages"]
    assert [(m["role"], m["content"]) for m in detail] == [
        ("human", "Hello"),
        ("ai", "echo: Hello"),
        ("human", "More"),
        ("ai", "echo: More"),
    ]
    stored = live.store.get_messages("ol-rec")[0].content
    assert {"type": "image", "base64": PNG, "mime_type": "image/png"} in stored


# -- LangChain's ChatOllama --------------------------------------------------------------------
def test_chat_ollama_against_ollang(live, fake):
    from langchain_ollama import ChatOllama
    from pydantic import BaseModel

    llm = ChatOllama(model="llama3", base_url=live.url, temperature=0.2, reasoning=True)
    fake.queue(Reply(tokens=["Hi"], thinking=["greet"]))
    reply = llm.invoke("Hello")
    assert reply.content == "Hi" and reply.additional_kwargs["reasoning_content"] == "greet"
    assert reply.usage_metadata["output_tokens"] == 2
    assert last_chat(fake)["options"]["temperature"] == 0.2 and last_chat(fake)["think"] is True
    fake.queue(Reply(tokens=["a", "b"]))
    assert "".join(chunk.content for chunk in llm.stream("x")) == "ab"

    def multiply(a: int, b: int) -> int:
        """Multiply two numbers."""
        return a * b

    fake.queue(Reply([], tool_calls=[{"name": "multiply", "arguments": {"a": 3, "b": 4}}]))
    called = llm.bind_tools([multiply]).invoke("3 times 4?")
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [("multiply", {"a": 3, "b": 4})]

    class Answer(BaseModel):
        value: int

    structured = ChatOllama(model="llama3", base_url=live.url).with_structured_output(Answer)
    assert isinstance(structured.invoke("A number"), Answer)
    assert last_chat(fake)["format"]["properties"]["value"]["type"] == "integer"


def test_openapi_documents_the_ollama_routes(live):
    spec = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    for path in ("/api/chat", "/api/generate", "/api/show", "/api/pull", "/api/embed"):
        assert "requestBody" in spec["paths"][path]["post"], path
    for path in ("/api/tags", "/api/ps", "/api/version"):
        assert "get" in spec["paths"][path]
