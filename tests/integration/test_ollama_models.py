"""The real ChatOllama / OllamaLLM / ollama client against a local Ollama-protocol server."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from ollang.chains import (
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
    build_chat_chain,
    build_generate_chain,
    make_chat_model,
    make_llm,
)
from ollang.memory import InMemoryChatStore, message_status
from ollang.settings import Settings, parse_ollama_host
from tests.fake_ollama import FakeOllama, ModelInfo, Reply
from tests.net import free_port


def cfg(session_id: str) -> dict:
    return {"configurable": {"session_id": session_id}}


# The table is ollama-python's own doctest of _parse_host: we must agree with it.
@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":56789", "http://127.0.0.1:56789"),
        ("1.2.3.4:56789", "http://1.2.3.4:56789"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
        ("example.com", "http://example.com:11434"),
        ("example.com:56789", "http://example.com:56789"),
        ("example.com/", "http://example.com:11434"),
        ("example.com:56789/path/", "http://example.com:56789/path"),
        ("https://example.com:56789/path", "https://example.com:56789/path"),
        ("[0001:002:003:0004::1]", "http://[0001:002:003:0004::1]:11434"),
        ("[0001:002:003:0004::1]:56789", "http://[0001:002:003:0004::1]:56789"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("  localhost:1234  ", "http://localhost:1234"),
    ],
)
def test_ollama_host_forms(value, url):
    assert parse_ollama_host(value) == url


@pytest.mark.parametrize("bad", ["ftp://x", "host:notaport", "http://h:99999"])
def test_bad_ollama_host_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="OLLAMA_HOST"):
        parse_ollama_host(bad)


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OLLAMA_HOST", ":4321")
    monkeypatch.setenv("OLLANG_MODEL", "mistral")
    monkeypatch.setenv("OLLANG_HOME", str(tmp_path))
    monkeypatch.setenv("OLLANG_READ_TIMEOUT", "7.5")
    s = Settings.from_env()
    assert (s.ollama_url, s.model, s.home, s.read_timeout) == (
        "http://127.0.0.1:4321",
        "mistral",
        tmp_path,
        7.5,
    )
    assert s.store_path == tmp_path / "sessions.db"
    monkeypatch.setenv("OLLANG_READ_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="OLLANG_READ_TIMEOUT"):
        Settings.from_env()


def test_model_and_host_come_from_the_environment(fake_ollama):
    model = make_chat_model()
    assert model.model == "llama3"
    assert model.base_url == fake_ollama.url
    assert model.invoke("hello").content == "echo: hello"


def test_options_reach_the_request_body(fake_ollama):
    model = make_chat_model(
        "llama3",
        temperature=0.3,
        top_p=0.8,
        top_k=20,
        seed=7,
        num_ctx=2048,
        num_predict=64,
        stop=["END"],
        keep_alive="10m",
        format="json",
        think=True,
    )
    model.invoke("hi")
    body = fake_ollama.chat_requests()[-1]
    assert body["model"] == "llama3"
    assert body["options"] == {
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 20,
        "seed": 7,
        "num_ctx": 2048,
        "num_predict": 64,
        "stop": ["END"],
    }
    assert body["keep_alive"] == "10m"
    assert body["format"] == "json"
    assert body["think"] is True


def test_unknown_option_is_rejected():
    with pytest.raises(Exception, match="unknown model option"):
        make_chat_model("llama3", temprature=1)


def test_timeouts_are_set(fake_ollama, monkeypatch):
    monkeypatch.setenv("OLLANG_READ_TIMEOUT", "90")
    timeout = make_chat_model()._client._client.timeout
    assert timeout.connect == 5.0 and timeout.read == 90.0


def _dead_url() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there now


@pytest.mark.parametrize("call", ["invoke", "stream", "astream", "batch"])
def test_server_down_is_ollama_unavailable_on_every_path(call):
    host = _dead_url()
    model = make_chat_model("llama3", base_url=host)
    with pytest.raises(OllamaUnavailableError) as info:
        if call == "invoke":
            model.invoke("hi")
        elif call == "stream":
            list(model.stream("hi"))
        elif call == "batch":
            model.batch(["hi"])
        else:

            async def run():
                return [c async for c in model.astream("hi")]

            asyncio.run(run())
    err = info.value
    assert f"http://{host}" in str(err) and "ollama serve" in str(err)
    assert isinstance(err.__cause__, Exception), "the raw error is chained"


def test_missing_model_names_it_and_lists_installed(fake_ollama):
    fake_ollama.add_model("mistral:7b")
    model = make_chat_model("nosuchmodel")
    with pytest.raises(ModelNotFoundError) as info:
        list(model.stream("hi"))
    text = str(info.value)
    assert "nosuchmodel" in text and "ollama pull nosuchmodel" in text
    assert "llama3:latest" in text and "mistral:7b" in text


def test_in_stream_error_keeps_partial_reply(fake_ollama):
    fake_ollama.queue(
        Reply(
            tokens=["Partial", " answer", " lost"],
            fault="error",
            fault_after=2,
            error_message="model runner crashed",
        )
    )
    store = InMemoryChatStore()
    chain = build_chat_chain(make_chat_model(), store=store)
    got = []
    with pytest.raises(OllamaResponseError, match="model runner crashed"):
        for piece in chain.stream("go", cfg("s")):
            got.append(piece)
    assert "".join(got) == "Partial answer"
    ai = store.get_messages("s")[-1]
    assert ai.content == "Partial answer" and message_status(ai) == "error"
    # and the next turn works
    assert chain.invoke("again", cfg("s")) == "echo: again"


def test_connection_cut_mid_stream_keeps_partial_reply(fake_ollama):
    fake_ollama.queue(Reply(tokens=["one", " two", " three"], fault="cut", fault_after=2))
    store = InMemoryChatStore()
    chain = build_chat_chain(make_chat_model(), store=store)
    with pytest.raises(OllamaResponseError, match="was cut mid-response"):
        chain.invoke("go", cfg("cut"))
    ai = store.get_messages("cut")[-1]
    assert ai.content == "one two" and message_status(ai) == "error"


def test_garbage_line_is_a_clear_error(fake_ollama):
    fake_ollama.queue(Reply(tokens=["ok", " then"], fault="garbage", fault_after=1))
    chain = build_chat_chain(make_chat_model(), store=InMemoryChatStore())
    with pytest.raises(OllamaResponseError, match="sent an invalid response"):
        chain.invoke("go", cfg("g"))


def test_http_500_is_a_response_error(fake_ollama):
    fake_ollama.queue(Reply(tokens=["x"], fault="http500", error_message="out of memory"))
    with pytest.raises(OllamaResponseError, match="out of memory"):
        make_chat_model().invoke("hi")


def test_server_that_never_answers_times_out(fake_ollama, monkeypatch):
    monkeypatch.setenv("OLLANG_READ_TIMEOUT", "0.5")
    fake_ollama.queue(Reply(tokens=["never"], fault="hang"))
    started = time.monotonic()
    with pytest.raises(OllamaTimeoutError, match="did not answer in time"):
        list(make_chat_model().stream("hi"))
    assert time.monotonic() - started < 5


def test_async_errors_are_translated_too(fake_ollama):
    async def run():
        model = make_chat_model("ghost")
        return [c async for c in model.astream("hi")]

    with pytest.raises(ModelNotFoundError, match="ghost"):
        asyncio.run(run())


def test_context_length_from_show_drives_trimming_and_num_ctx(monkeypatch):
    with FakeOllama(models=[ModelInfo("tiny:latest", context_length=512)]) as srv:
        monkeypatch.setenv("OLLAMA_HOST", srv.host_port)
        store = InMemoryChatStore()
        for i in range(100):
            store.add_messages(
                "t", [_h(f"question {i} " + "q" * 60), _a(f"answer {i} " + "a" * 60)]
            )
        chain = build_chat_chain(make_chat_model("tiny"), store=store)
        result = chain.invoke_turn("latest", cfg("t"))
        body = srv.chat_requests()[-1]
        assert body["options"]["num_ctx"] == 512, "the window we trim to is the one Ollama uses"
        sent = body["messages"]
        assert sent[-1]["content"] == "latest"
        assert sent[0]["role"] == "user"
        assert sent[-2]["content"].startswith("answer 99 ")
        assert 2 < len(sent) < 30
        assert result.context.window == 512
        assert result.usage.input_tokens < 512
        shows = [r for r in srv.requests if r.path == "/api/show"]
        chain.invoke("and again", cfg("t"))
        assert len([r for r in srv.requests if r.path == "/api/show"]) == len(shows) == 1, "cached"


def test_truncation_by_the_server_is_warned(fake_ollama, caplog):
    chain = build_chat_chain(make_chat_model(num_ctx=1024), store=InMemoryChatStore())
    fake_ollama.queue(Reply(tokens=["ok"], prompt_eval_count=1024))
    with caplog.at_level(logging.WARNING, logger="ollang"):
        result = chain.invoke_turn("hi", cfg("w"))
    assert result.truncated
    assert "truncated" in caplog.text


def test_thinking_is_separate_from_the_answer(fake_ollama):
    fake_ollama.queue(Reply(tokens=["It", " is", " 3."], thinking=["Count", " the", " r's."]))
    store = InMemoryChatStore()
    chain = build_chat_chain(make_chat_model(think=True), store=store)
    events = list(chain.stream_turn("how many r in strawberry?", cfg("th")))
    assert "".join(e.text for e in events if e.type == "token") == "It is 3."
    assert "".join(e.text for e in events if e.type == "reasoning") == "Count the r's."
    stored = store.get_messages("th")[-1]
    assert stored.content == "It is 3."
    assert stored.additional_kwargs["reasoning_content"] == "Count the r's."


def test_usage_and_timings_come_from_the_final_chunk(fake_ollama):
    fake_ollama.queue(Reply(tokens=["a", " b", " c", " d"]))
    result = build_chat_chain(make_chat_model(), store=InMemoryChatStore()).invoke_turn(
        "x", cfg("u")
    )
    assert result.usage.output_tokens == 4
    assert result.usage.input_tokens >= 1
    assert result.done_reason == "stop"
    assert result.model == "llama3"
    assert result.timings.tokens_per_s > 0 and result.timings.ttft_s > 0
    assert result.message.response_metadata["eval_count"] == 4


def test_closing_a_stream_early_cancels_the_upstream_request(fake_ollama):
    fake_ollama.token_delay = 0.05
    fake_ollama.queue(Reply(tokens=[f" t{i}" for i in range(100)]))
    store = InMemoryChatStore()
    chain = build_chat_chain(make_chat_model(), store=store)
    stream = chain.stream("go", cfg("cl"))
    next(stream)
    next(stream)
    closed_at = time.monotonic()
    stream.close()
    deadline = closed_at + 2
    while not fake_ollama.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_ollama.cancelled, "the server must see the client go away"
    assert fake_ollama.cancelled[0] - closed_at < 1.0
    assert message_status(store.get_messages("cl")[-1]) == "interrupted"


def test_generate_chain_with_ollama_llm(fake_ollama):
    fake_ollama.queue(Reply(tokens=["Paris", "."]))
    chain = build_generate_chain(make_llm(temperature=0), template="Capital of {country}?")
    assert chain.invoke({"country": "France"}) == "Paris."
    body = [r.body for r in fake_ollama.requests if r.path == "/api/generate"][-1]
    assert body["prompt"] == "Capital of France?"
    assert body["options"]["temperature"] == 0


def test_generate_chain_streams_and_accepts_a_chat_model(fake_ollama):
    pieces = list(build_generate_chain(make_chat_model()).stream("tell me"))
    assert len(pieces) > 1 and "".join(pieces) == "echo: tell me"


def test_generate_errors_are_translated(fake_ollama):
    with pytest.raises(ModelNotFoundError):
        build_generate_chain(make_llm("ghost")).invoke("hi")


def _h(text):
    from langchain_core.messages import HumanMessage

    return HumanMessage(text)


def _a(text):
    from langchain_core.messages import AIMessage

    return AIMessage(text)
