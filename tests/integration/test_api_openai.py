"""OpenAI's API on ollang, for real: the ``openai`` SDK and ``ChatOpenAI`` against the
server on a port, over the Ollama-protocol test server, checking what reached it.

Also the sessions recorded for stateless clients (server/recording.py), which both
dialects share: each message once, forks on divergence, ownership by key."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo, Reply
from tests.net import free_port

MODELS = ["llama3:latest", "qwen3:0.6b", "team/coder:7b"]
KEYS = ["key-A-0123456789", "key-B-0123456789"]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()


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
    models = [ModelInfo(name) for name in MODELS] + [ModelInfo("small", context_length=1024)]
    with FakeOllama(models=models) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory):
    with LiveServer(settings(tmp_path_factory.mktemp("oa"), fake.url)) as server:
        yield server


@pytest.fixture
def client(live):
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def last_chat(fake) -> dict:
    return fake.chat_requests()[-1]


def session(live, sid: str, key: str | None = None) -> list[tuple[str, str]]:
    """The session as ``GET /sessions/{id}`` shows it: (role, content) pairs."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(f"{live.url}/sessions/{sid}", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return [(m["role"], m["content"]) for m in r.json()["messages"]]


# -- chat completions ----------------------------------------------------------------------
def test_create_answers_and_maps_every_field_to_ollama(client, fake):
    fake.queue(Reply(tokens=["Bonjour", "!"], thinking=["The", " user"]))
    result = client.chat.completions.create(
        model="llama3",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "In French?"},
        ],
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n"],
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.25,
        reasoning_effort="high",
    )
    choice = result.choices[0]
    assert choice.message.content == "Bonjour!"
    # Reasoning is its own field, never mixed into the content.
    assert choice.message.model_extra["reasoning"] == "The user"
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert result.model == "llama3:latest" and result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.usage.completion_tokens == 4 and result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + 4

    sent = last_chat(fake)
    assert sent["model"] == "llama3:latest"
    assert sent["messages"] == [  # as the client gave them
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "In French?"},
    ]
    options = sent["options"]
    assert {k: options[k] for k in options if k != "num_ctx"} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "num_predict": 50,
        "stop": ["\n\n"],
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
    }
    assert options["num_ctx"] == 8192  # the client set none: ollang's window, not Ollama's 2048
    assert sent["think"] == "high"


def test_only_what_the_client_set_is_sent(client, fake):
    client.chat.completions.create(
        model="llama3",
        messages=[{"role": "user", "content": "x"}],
        max_completion_tokens=9,
        stop="END",
    )
    sent = last_chat(fake)
    assert sent["options"] == {"num_predict": 9, "stop": ["END"], "num_ctx": 8192}
    assert "think" not in sent and "format" not in sent and "tools" not in sent


def test_the_num_ctx_chosen_fits_the_model(client, fake):
    client.chat.completions.create(model="small", messages=[{"role": "user", "content": "x"}])
    assert last_chat(fake)["options"]["num_ctx"] == 1024  # the model's own context length


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            },
            {"type": "object", "properties": {"name": {"type": "string"}}},
        ),
    ],
)
def test_response_format_is_ollamas_format(client, fake, response_format, expected):
    result = client.chat.completions.create(
        model="llama3",
        messages=[{"role": "user", "content": "A city"}],
        response_format=response_format,
    )
    assert last_chat(fake)["format"] == expected
    assert isinstance(json.loads(result.choices[0].message.content), dict)


def test_stream_with_usage(client, fake):
    fake.queue(Reply(tokens=["Hel", "lo", "!"], thinking=["Hmm", "."]))
    chunks = list(
        client.chat.completions.create(
            model="llama3",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
            reasoning_effort="low",
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    content = "".join(d.content or "" for d in deltas)
    reasoning = "".join((d.model_extra or {}).get("reasoning") or "" for d in deltas)
    assert content == "Hello!" and reasoning == "Hmm."
    assert all(not (d.content and (d.model_extra or {}).get("reasoning")) for d in deltas)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_ends_with_done_and_has_no_usage_unless_asked(live, fake):
    fake.queue(Reply(tokens=["a", "b"]))
    r = httpx.post(
        f"{live.url}/v1/chat/completions",
        json={"model": "llama3", "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=10,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [block for block in r.text.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(block[6:]) for block in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "a", "b", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_tool_calls_and_tool_results_reach_ollama(client, fake):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ]
    fake.queue(Reply([], tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    first = client.chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools
    )
    assert last_chat(fake)["tools"] == tools  # passed on as given
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    fake.queue(Reply(tokens=["Sunny", "."]))
    second = client.chat.completions.create(
        model="llama3",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "22 C, sunny"},
        ],
        tools=tools,
    )
    assert second.choices[0].message.content == "Sunny."
    sent = last_chat(fake)["messages"]
    assert sent[1]["role"] == "assistant"
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert sent[2] == {"role": "tool", "content": "22 C, sunny", "tool_name": "get_weather"}


def test_tool_choice_none_and_named(client, fake):
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}},
    ]
    messages = [{"role": "user", "content": "go"}]
    client.chat.completions.create(
        model="llama3", messages=messages, tools=tools, tool_choice="none"
    )
    assert "tools" not in last_chat(fake)
    client.chat.completions.create(
        model="llama3",
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "b"}},
    )
    assert [t["function"]["name"] for t in last_chat(fake)["tools"]] == ["b"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="llama3",
            messages=messages,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "c"}},
        )


def test_streamed_tool_calls(client, fake):
    fake.queue(Reply([], tool_calls=[{"name": "get_time", "arguments": {"tz": "UTC"}}]))
    chunks = list(
        client.chat.completions.create(
            model="llama3",
            messages=[{"role": "user", "content": "time?"}],
            tools=[{"type": "function", "function": {"name": "get_time"}}],
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].id
    assert calls[0].function.name == "get_time"
    assert json.loads(calls[0].function.arguments) == {"tz": "UTC"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_image_parts_become_ollama_images(client, fake):
    client.chat.completions.create(
        model="llama3",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    assert last_chat(fake)["messages"] == [
        {"role": "user", "content": "What is this?", "images": [PNG]}
    ]
    for url in ("https://example.com/cat.png", "data:image/png;base64,***"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="llama3",
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
                ],
            )
        assert caught.value.body["type"] == "invalid_request_error"


# -- errors ----------------------------------------------------------------------------------
def test_unknown_model_is_not_found(client, fake):
    before = len(fake.chat_requests())
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found" and "gpt-4o" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
        )
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert len(fake.chat_requests()) == before


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": "llama3", "messages": []},
        {"model": "llama3", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "llama3", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
        {"model": "llama3", "messages": [{"role": "user", "content": "x"}], "n": 2},
        {"model": "llama3", "messages": [{"role": "user", "content": "x"}], "logprobs": True},
        {"model": "llama3", "messages": [{"role": "system", "content": "only a system prompt"}]},
        {
            "model": "llama3",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{oops"}}],
                }
            ],
        },
    ],
)
def test_invalid_requests_are_openai_400s(live, body):
    r = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=10)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert set(error) >= {"message", "type", "param", "code"}


def test_malformed_json_and_unknown_paths(live):
    r = httpx.post(f"{live.url}/v1/chat/completions", content=b'{"model": ', timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"]
    r = httpx.get(f"{live.url}/v1/embeddings-nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_ollangs_own_routes_keep_their_error_shape(live):
    r = httpx.post(f"{live.url}/chat", json={"model": 3}, timeout=10)
    assert r.status_code == 422 and isinstance(r.json()["error"], str)


def test_keys_model_allow_list_and_limits(tmp_path, fake):
    small = settings(
        tmp_path, fake.url, api_keys=KEYS, allow_models=["llama3*"], max_message_chars=100
    )
    with LiveServer(small) as server:
        url = f"{server.url}/v1"
        c = openai.OpenAI(base_url=url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "x"}])
        assert caught.value.code == "invalid_api_key"
        assert caught.value.response.headers["www-authenticate"] == "Bearer"
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
        # The SDK always sends a key; without one (curl, say) it is the same 401.
        r = httpx.post(f"{url}/chat/completions", json={"model": "llama3"}, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        c = openai.OpenAI(base_url=url, api_key=KEYS[0], max_retries=0)
        assert (
            c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "x"}])
            .choices[0]
            .message.content
            == "echo: x"
        )
        assert [m.id for m in c.models.list()] == ["llama3:latest"]
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(
                model="qwen3:0.6b", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.NotFoundError):  # not allowed: as if absent, as OpenAI says
            c.models.retrieve("qwen3:0.6b")
        with pytest.raises(openai.APIStatusError) as caught:
            c.chat.completions.create(
                model="llama3", messages=[{"role": "user", "content": "a" * 101}]
            )
        assert caught.value.status_code == 413 and "100" in caught.value.message


def test_ollama_down_is_a_503(tmp_path):
    with LiveServer(settings(tmp_path, f"http://127.0.0.1:{free_port()}")) as server:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503 and "ollama serve" in caught.value.body["hint"]
        with pytest.raises(openai.InternalServerError):
            c.models.list()


def test_an_upstream_error_before_the_first_token_is_an_openai_error_when_streaming(client, fake):
    fake.queue(Reply(tokens=["x"], fault="http500", error_message="out of memory"))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="llama3", messages=[{"role": "user", "content": "x"}], stream=True
        )
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "server_error" and "out of memory" in caught.value.message


def test_an_error_mid_stream_raises_in_the_sdk(client, fake):
    fake.queue(Reply(tokens=["Part", "ial", " lost"], fault="error", fault_after=2))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="llama3", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Partial"
    assert "something went wrong" in caught.value.message


# -- models ----------------------------------------------------------------------------------
def test_models_list_and_retrieve(client):
    listed = client.models.list()
    assert sorted(m.id for m in listed) == sorted([*MODELS, "small:latest"])
    assert all(m.object == "model" and m.created > 0 for m in listed)
    coder = client.models.retrieve("team/coder:7b")  # a namespaced name: a slash in the path
    assert coder.id == "team/coder:7b" and coder.owned_by == "team"
    assert client.models.retrieve("llama3").id == "llama3:latest"


# -- disconnects -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_fake():
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.05) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_live(slow_fake, tmp_path_factory):
    with LiveServer(settings(tmp_path_factory.mktemp("oa-slow"), slow_fake.url)) as server:
        yield server


@pytest.mark.reliability(
    "Faults", "OpenAI API: client disconnects mid-stream, upstream closed, partial kept"
)
def test_client_disconnect_cancels_upstream_and_keeps_the_partial(slow_live, slow_fake):
    slow_fake.queue(Reply(tokens=[f" w{i}" for i in range(200)]))  # 10 s of tokens
    before = len(slow_fake.cancelled)
    c = openai.OpenAI(
        base_url=f"{slow_live.url}/v1",
        api_key="x",
        max_retries=0,
        default_headers={"X-Session-Id": "oa-disconnect"},
    )
    stream = c.chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "long"}], stream=True
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if received.count(" w") >= 3:
            break
    stream.close()
    left_at = time.monotonic()
    deadline = left_at + 3
    while len(slow_fake.cancelled) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(slow_fake.cancelled) > before, "the upstream request was not cancelled"
    assert slow_fake.cancelled[-1] - left_at < 1.0
    time.sleep(0.2)
    r = httpx.get(f"{slow_live.url}/sessions/oa-disconnect", timeout=10).json()["messages"]
    assert [m["content"] for m in r][:1] == ["long"]
    assert r[-1]["status"] == "interrupted" and r[-1]["content"].startswith(" w0 w1 w2")
    assert len(r[-1]["content"].split()) < 200


# -- recorded sessions ---------------------------------------------------------------------------
def recorded_client(live, sid: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live.url}/v1",
        api_key=key,
        max_retries=0,
        default_headers={"X-Session-Id": sid},
    )


def test_a_recorded_session_holds_each_message_once(live, fake):
    c = recorded_client(live, "oa-rec-1")
    history = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    raw = c.chat.completions.with_raw_response.create(model="llama3", messages=history)
    assert raw.headers["x-session-id"] == "oa-rec-1"
    first = raw.parse()
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And then?"},
    ]
    chunks = list(c.chat.completions.create(model="llama3", messages=history, stream=True))
    answer = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert session(live, "oa-rec-1") == [
        ("human", "Hi"),
        ("ai", "echo: Hi"),
        ("human", "And then?"),
        ("ai", answer),
    ]
    assert answer == "echo: And then?"
    info = live.store.get_session("oa-rec-1")
    assert info.system == "Be terse." and info.title == "Hi" and info.model == "llama3:latest"
    # The model got the client's messages as sent, nothing added from the store.
    assert [m["content"] for m in last_chat(fake)["messages"]] == [
        "Be terse.",
        "Hi",
        "echo: Hi",
        "And then?",
    ]
    listed = httpx.get(f"{live.url}/sessions", timeout=10).json()["sessions"]
    assert "oa-rec-1" in [s["id"] for s in listed]
    assert any(h.session_id == "oa-rec-1" for h in live.store.search("then"))


def test_metadata_session_id_records_too(live):
    c = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0)
    c.chat.completions.create(
        model="llama3",
        messages=[{"role": "user", "content": "remember me"}],
        metadata={"session_id": "oa-meta"},
    )
    assert session(live, "oa-meta") == [("human", "remember me"), ("ai", "echo: remember me")]


def test_an_edited_history_forks_the_old_branch(live):
    c = recorded_client(live, "oa-fork")
    c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "one"}])
    history = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
    ]
    c.chat.completions.create(model="llama3", messages=history)
    # The client edits its second question and sends again.
    history[2]["content"] = "TWO"
    c.chat.completions.create(model="llama3", messages=history)
    assert session(live, "oa-fork") == [
        ("human", "one"),
        ("ai", "echo: one"),
        ("human", "TWO"),
        ("ai", "echo: TWO"),
    ]
    assert session(live, "oa-fork@1") == [
        ("human", "one"),
        ("ai", "echo: one"),
        ("human", "two"),
        ("ai", "echo: two"),
    ]
    # Regenerating the first answer (the history cut back to the first question).
    c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "one"}])
    assert session(live, "oa-fork") == [("human", "one"), ("ai", "echo: one")]
    assert len(session(live, "oa-fork@2")) == 4


def test_a_retry_after_an_error_keeps_the_failed_attempt_and_forks_nothing(live, fake):
    c = recorded_client(live, "oa-retry")
    fake.queue(Reply(tokens=["Part", "ial", "x"], fault="error", fault_after=2))
    with pytest.raises(openai.APIError):
        list(
            c.chat.completions.create(
                model="llama3", messages=[{"role": "user", "content": "q"}], stream=True
            )
        )
    c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "q"}])
    detail = httpx.get(f"{live.url}/sessions/oa-retry", timeout=10).json()["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in detail] == [
        ("human", "q", "complete"),
        ("ai", "Partial", "error"),
        ("ai", "echo: q", "complete"),
    ]
    c.chat.completions.create(
        model="llama3",
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "echo: q"},
            {"role": "user", "content": "next"},
        ],
    )
    assert [m[1] for m in session(live, "oa-retry")][-2:] == ["next", "echo: next"]
    assert live.store.get_session("oa-retry@1") is None


def test_no_session_named_nothing_recorded(live):
    before = {s.id: s.message_count for s in live.store.list_sessions()}
    openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0).chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "not recorded"}]
    )
    assert {s.id: s.message_count for s in live.store.list_sessions()} == before
    assert not live.store.search("recorded")


def test_an_invalid_session_id_is_a_400(live):
    c = recorded_client(live, "../etc")
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "x"}])


def test_recorded_sessions_belong_to_the_key(tmp_path, fake):
    with LiveServer(settings(tmp_path, fake.url, api_keys=KEYS)) as server:
        a = recorded_client(server, "shared-name", KEYS[0])
        b = recorded_client(server, "shared-name", KEYS[1])
        a.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "mine"}])
        before = len(fake.chat_requests())
        with pytest.raises(openai.NotFoundError) as caught:
            b.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "x"}])
        assert caught.value.code == "session_not_found"
        assert len(fake.chat_requests()) == before
        assert session(server, "shared-name", KEYS[0]) == [("human", "mine"), ("ai", "echo: mine")]
        # A fork on divergence belongs to the same key.
        a.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "other"}])
        r = httpx.get(
            f"{server.url}/sessions", headers={"Authorization": f"Bearer {KEYS[1]}"}, timeout=10
        )
        assert r.json()["sessions"] == []
        assert session(server, "shared-name@1", KEYS[0]) == [
            ("human", "mine"),
            ("ai", "echo: mine"),
        ]


def test_record_all_records_and_continues_conversations(tmp_path, fake):
    with LiveServer(settings(tmp_path, fake.url, record_all=True)) as server:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(
            model="llama3", messages=[{"role": "user", "content": "first"}]
        )
        sid = raw.headers["x-session-id"]
        history = [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": raw.parse().choices[0].message.content},
            {"role": "user", "content": "second"},
        ]
        raw = c.chat.completions.with_raw_response.create(model="llama3", messages=history)
        assert raw.headers["x-session-id"] == sid
        # Another conversation with the same opening is a session of its own.
        other = c.chat.completions.with_raw_response.create(
            model="llama3", messages=[{"role": "user", "content": "first"}]
        )
        assert other.headers["x-session-id"] != sid
        assert session(server, sid) == [
            ("human", "first"),
            ("ai", "echo: first"),
            ("human", "second"),
            ("ai", "echo: second"),
        ]
        assert len(server.store.list_sessions()) == 2


# -- LangChain's ChatOpenAI ---------------------------------------------------------------------
def test_chat_openai_invoke_stream_tools_and_structured_output(live, fake):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    llm = ChatOpenAI(
        model="llama3", base_url=f"{live.url}/v1", api_key="x", max_retries=0, temperature=0.1
    )
    fake.queue(Reply(tokens=["Hi", " Ada"]))
    reply = llm.invoke("Hello")
    assert reply.content == "Hi Ada" and reply.usage_metadata["output_tokens"] == 2
    assert last_chat(fake)["options"]["temperature"] == 0.1
    fake.queue(Reply(tokens=["a", "b", "c"]))
    assert "".join(chunk.content for chunk in llm.stream("x")) == "abc"

    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    fake.queue(Reply([], tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    called = llm.bind_tools([get_weather]).invoke("Weather in Oslo?")
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]

    class City(BaseModel):
        name: str

    city = llm.with_structured_output(City, method="json_schema").invoke("A city")
    assert isinstance(city, City)
    assert last_chat(fake)["format"]["properties"]["name"]["type"] == "string"


def test_openapi_documents_the_openai_routes(live):
    spec = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"] == "#/components/schemas/OpenAIChatRequest"
    assert "/v1/models" in spec["paths"] and "/v1/models/{model_id}" in spec["paths"]


# -- the recording rules, on a store directly ----------------------------------------------------
def _ai(text: str, status: str = "complete"):
    from langchain_core.messages import AIMessage

    from ollang.memory import set_message_status

    message = AIMessage(text)
    set_message_status(message, status)
    return message


def _record(store, messages, session_id="s"):
    from ollang.server.recording import Recording

    recording = Recording(session_id, None, messages)
    recording(store)
    return recording


def _texts(store, session_id="s") -> list[str]:
    return [m.text for m in store.get_messages(session_id)]


def test_a_divergence_after_a_superseded_attempt_cuts_the_attempt_too():
    from langchain_core.messages import HumanMessage

    from ollang.memory import InMemoryChatStore

    store = InMemoryChatStore()
    store.add_messages("s", [HumanMessage("u1"), _ai("fail", "error"), _ai("a1")])
    recording = _record(store, [HumanMessage("u1"), HumanMessage("edited")])
    # The failed attempt belonged to the branch that went: it is in the fork, not here.
    assert _texts(store) == ["u1", "edited"]
    assert recording.fork == "s@1" and _texts(store, "s@1") == ["u1", "fail", "a1"]
    again = _record(store, [HumanMessage("u1"), HumanMessage("edited")])
    assert again.fork is None and again.added == 0


def test_a_superseded_attempt_is_not_a_divergence():
    from langchain_core.messages import HumanMessage

    from ollang.memory import InMemoryChatStore

    store = InMemoryChatStore()
    store.add_messages("s", [HumanMessage("u1"), _ai("fail", "interrupted"), _ai("a1")])
    recording = _record(store, [HumanMessage("u1"), _ai("a1"), HumanMessage("u2")])
    assert recording.fork is None and recording.added == 1
    assert _texts(store) == ["u1", "fail", "a1", "u2"]


@pytest.mark.parametrize(("same", "forked"), [(True, False), (False, True)])
def test_images_are_compared_by_content(same, forked):
    from langchain_core.messages import HumanMessage

    from ollang.memory import InMemoryChatStore

    def with_image(data: str) -> HumanMessage:
        block = {"type": "image", "base64": data, "mime_type": "image/png"}
        return HumanMessage([{"type": "text", "text": "look"}, block])

    store = InMemoryChatStore()
    store.add_messages("s", [with_image(PNG), _ai("a cat")])
    other = PNG if same else base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x01" * 24).decode()
    recording = _record(store, [with_image(other), _ai("a cat"), HumanMessage("and?")])
    assert (recording.fork is not None) is forked
    assert len(store.get_messages("s")) == 3


def test_fork_names_stay_valid_session_ids():
    from ollang.memory import InMemoryChatStore
    from ollang.memory.ids import is_valid_session_id
    from ollang.server.recording import fork_name

    store = InMemoryChatStore()
    long_id = "a" * 128
    first = fork_name(store, long_id)
    assert first == "a" * 126 + "@1" and is_valid_session_id(first)
    store.add_messages(first, [_ai("x")])
    assert fork_name(store, long_id) == "a" * 126 + "@2"
