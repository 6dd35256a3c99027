"""The ``openai`` kind's translation (ollang.transport.openai_translate), the error
translator's reading of an engine's errors, and the failover rules for them: pure pieces,
no sockets. The real engine is tested in tests/integration/test_openai_hosts.py."""

from __future__ import annotations

import base64

import pytest

from ollang.errors import (
    ConnectionCutError,
    HostAuthError,
    HostBusyError,
    InvalidResponseError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
)
from ollang.routing.failover import fails_over, tells_about_host
from ollang.transport.errors import ConnectionClosed, status_error, translate_error
from ollang.transport.openai_translate import (
    ChatStream,
    EngineModel,
    chat_request,
    data_url,
    model_list,
    openai_messages,
    response_format,
)
from ollang.transport.translate import read_lines

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 16).decode()
URL = "http://gpu2:8000/v1"


# -- request ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "sent", "unmapped"),
    [
        (
            {"temperature": 0.2, "top_p": 0.9, "seed": 7},
            {"temperature": 0.2, "top_p": 0.9, "seed": 7},
            [],
        ),
        ({"num_predict": 64}, {"max_tokens": 64}, []),
        ({"num_predict": -1}, {}, []),  # Ollama's "until it stops": no limit sent
        ({"stop": "END"}, {"stop": ["END"]}, []),
        (
            {"stop": ["a", "b"], "top_k": 40, "min_p": 0.05},
            {"stop": ["a", "b"], "top_k": 40, "min_p": 0.05},
            [],
        ),
        (
            {"presence_penalty": 0.5, "frequency_penalty": 0.1},
            {"presence_penalty": 0.5, "frequency_penalty": 0.1},
            [],
        ),
        (
            {"num_ctx": 8192, "repeat_penalty": 1.1, "mirostat": 2},
            {},
            ["num_ctx", "repeat_penalty", "mirostat"],
        ),
        ({"temperature": None}, {}, []),
    ],
)
def test_options_are_mapped_by_name_and_the_rest_is_named(options, sent, unmapped):
    request, left = chat_request({"model": "m", "messages": [], "options": options})
    assert {
        k: v
        for k, v in request.items()
        if k not in ("model", "messages", "stream", "stream_options")
    } == sent
    assert left == unmapped
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


def test_top_level_fields_without_a_counterpart_are_named():
    _, left = chat_request({"model": "m", "messages": [], "keep_alive": "5m", "think": True})
    assert left == ["keep_alive", "think"]


@pytest.mark.parametrize(
    ("fmt", "wanted"),
    [
        ("json", {"type": "json_object"}),
        (
            {"type": "object", "properties": {"a": {"type": "integer"}}},
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "response",
                    "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                },
            },
        ),
        ("", None),
        (None, None),
    ],
)
def test_format_is_response_format(fmt, wanted):
    assert response_format(fmt) == wanted
    request, _ = chat_request({"model": "m", "messages": [], "format": fmt})
    assert request.get("response_format") == wanted


def test_tools_pass_as_they_are():
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    request, _ = chat_request({"model": "m", "messages": [], "tools": [tool]})
    assert request["tools"] == [tool]


@pytest.mark.parametrize(
    ("image", "url"),
    [
        (PNG, f"data:image/png;base64,{PNG}"),
        (JPEG, f"data:image/jpeg;base64,{JPEG}"),
        ("not base64!", "data:image/png;base64,notbase64!"),
        ("data:image/gif;base64,R0lG", "data:image/gif;base64,R0lG"),
    ],
)
def test_images_are_data_urls_of_their_type(image, url):
    assert data_url(image) == url


def test_messages_images_tool_calls_and_results():
    sent = openai_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?", "images": [PNG]},
            {
                "role": "assistant",
                "content": "",
                "thinking": "hmm",
                "tool_calls": [
                    {"function": {"name": "add", "arguments": {"a": 1}}},
                    {"function": {"name": "mul", "arguments": '{"b": 2}'}},
                ],
            },
            {"role": "tool", "content": "6", "tool_name": "mul"},
            {"role": "tool", "content": "1", "tool_name": "add"},
            {"role": "assistant", "content": "Done."},
        ]
    )
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_2_0",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1}'},
                },
                {
                    "id": "call_2_1",
                    "type": "function",
                    "function": {"name": "mul", "arguments": '{"b": 2}'},
                },
            ],
        },
        {"role": "tool", "content": "6", "tool_call_id": "call_2_1"},  # paired by name
        {"role": "tool", "content": "1", "tool_call_id": "call_2_0"},
        {"role": "assistant", "content": "Done."},
    ]


def test_a_tool_results_own_id_is_kept():
    sent = openai_messages(
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c9", "function": {"name": "f", "arguments": {}}}],
            },
            {"role": "tool", "content": "x", "tool_call_id": "c9"},
        ]
    )
    assert sent[0]["tool_calls"][0]["id"] == "c9"
    assert sent[1]["tool_call_id"] == "c9"


# -- answer -------------------------------------------------------------------------------
def _chunk(delta=None, finish=None, **extra):
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "choices": [choice], **extra}


def test_a_stream_reads_as_ollama_lines():
    stream = ChatStream("m")
    assert stream.read([_chunk({"role": "assistant", "content": ""})]) == []  # no first token yet
    lines = stream.read(
        [
            _chunk({"reasoning_content": "Let me"}),
            _chunk({"reasoning": " think."}),
            _chunk({"content": "Hello"}),
            _chunk({"content": " there"}, "stop"),
            {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}},
        ]
    )
    assert [line["message"] for line in lines] == [
        {"role": "assistant", "content": "", "thinking": "Let me"},
        {"role": "assistant", "content": "", "thinking": " think."},
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": " there"},
    ]
    assert stream.finished
    end = stream.end()
    assert len(end) == 1 and end[0]["done"] is True
    assert end[0]["done_reason"] == "stop"
    assert (end[0]["prompt_eval_count"], end[0]["eval_count"]) == (12, 3)
    assert end[0]["total_duration"] >= end[0]["eval_duration"] >= 0
    text, reasoning, calls, metadata, usage, _ = read_lines(lines + end)
    assert (text, reasoning, list(calls)) == ("Hello there", "Let me think.", [])
    assert metadata is not None and metadata["done_reason"] == "stop"
    assert usage == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}


def test_without_usage_the_pieces_are_counted():
    stream = ChatStream("m")
    stream.read([_chunk({"content": "a"}), _chunk({"content": "b"}), _chunk({}, "length")])
    (done,) = stream.end()
    assert done["done_reason"] == "length"
    assert done["eval_count"] == 2 and "prompt_eval_count" not in done


def test_tool_calls_are_assembled_from_their_fragments():
    stream = ChatStream("m")
    lines = stream.read(
        [
            _chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_a", "function": {"name": "add", "arguments": ""}}
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
            _chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "call_b", "function": {"name": "neg", "arguments": "{}"}}
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
        ]
    )
    assert lines == []  # nothing until the calls are whole
    calls_line, done = stream.end()
    assert calls_line["message"]["tool_calls"] == [
        {"id": "call_a", "function": {"index": 0, "name": "add", "arguments": {"a": 1}}},
        {"id": "call_b", "function": {"index": 1, "name": "neg", "arguments": {}}},
    ]
    assert done["done_reason"] == "stop"
    _, _, calls, _, _, _ = read_lines([calls_line, done])
    assert [(c["id"], c["name"], c["args"]) for c in calls] == [
        ("call_a", "add", {"a": 1}),
        ("call_b", "neg", {}),
    ]


def test_an_error_event_is_the_engines_in_stream_error():
    stream = ChatStream("m")
    with pytest.raises(OllamaResponseError, match="out of memory") as caught:
        stream.read(
            [_chunk({"content": "a"}), {"error": {"message": "out of memory", "code": 500}}]
        )
    assert caught.value.status_code == -1
    assert "OpenAI-compatible engine" in caught.value.message


def test_other_choices_than_the_first_are_ignored():
    stream = ChatStream("m")
    event = {
        "choices": [
            {"index": 1, "delta": {"content": "b"}},
            {"index": 0, "delta": {"content": "a"}},
        ]
    }
    assert [line["message"]["content"] for line in stream.read([event])] == ["a"]


# -- models -------------------------------------------------------------------------------
def test_the_model_list():
    answer = {
        "object": "list",
        "data": [{"id": "qwen", "max_model_len": 32768}, {"id": "x/y", "max_model_len": "big"}],
    }
    assert model_list(answer) == [EngineModel("qwen", 32768), EngineModel("x/y", None)]
    assert model_list({"data": []}) == []


@pytest.mark.parametrize(
    "answer",
    [
        {"models": [{"name": "llama3"}]},
        {"data": {"id": "m"}},
        {"data": [{"name": "m"}]},
        {"data": [{"id": ""}]},
        {},
    ],
)
def test_another_shape_is_not_a_model_list(answer):
    with pytest.raises(ValueError, match=r'expected \{"data": \[\{"id": ...\}\]\}'):
        model_list(answer)


# -- errors and failover ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "kind", "retry", "expected", "fails"),
    [
        (
            401,
            '{"error": {"message": "Invalid API key", "type": "auth"}}',
            "openai",
            None,
            HostAuthError,
            True,
        ),
        (403, '{"detail": "Forbidden"}', "openai", None, HostAuthError, True),
        (
            404,
            '{"error": {"message": "The model `m` does not exist."}}',
            "openai",
            None,
            ModelNotFoundError,
            True,
        ),
        (429, '{"error": {"message": "Too many requests"}}', "openai", "7", HostBusyError, True),
        (429, '{"error": "server busy"}', "ollama", None, HostBusyError, True),
        (500, '{"error": {"message": "boom"}}', "openai", None, OllamaResponseError, True),
        (503, "Service Unavailable", "openai", None, OllamaResponseError, True),
        (400, '{"error": {"message": "bad"}}', "openai", None, OllamaResponseError, False),
        (401, '{"error": "unauthorized"}', "ollama", None, OllamaResponseError, False),
    ],
)
def test_an_engines_error_statuses(status, body, kind, retry, expected, fails):
    err = status_error(status, body, "m", url=URL, kind=kind, retry_after=retry)
    assert type(err) is expected
    assert fails_over(err) is fails
    if kind == "openai" and expected is not ModelNotFoundError:
        assert "OpenAI-compatible engine" in err.message
        assert "{" not in err.message  # the engine's own words, not its JSON


def test_a_429_keeps_its_wait_and_is_a_429():
    err = status_error(429, "{}", "m", url=URL, kind="openai", retry_after="7")
    assert isinstance(err, HostBusyError)
    assert err.retry_after == 7.0 and err.http_status == 429
    assert "retry after 7 s" in err.hint
    assert tells_about_host(err)
    assert status_error(429, "{}", "m", url=URL, retry_after="Wed, 21 Oct 2015").retry_after is None


def test_a_refused_key_says_to_set_it():
    err = status_error(401, '{"error": {"message": "no key"}}', "m", url=URL, kind="openai")
    assert "key=" in err.hint
    assert tells_about_host(err)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (ConnectionClosed("closed"), ConnectionCutError),
        (ConnectionRefusedError(), OllamaUnavailableError),
    ],
)
def test_raw_errors_are_worded_for_an_engine(raw, expected):
    err = translate_error(raw, url=URL, kind="openai")
    assert type(err) is expected
    assert "OpenAI-compatible engine" in err.message
    assert "ollama serve" not in err.hint


def test_the_openai_sdks_errors_are_translated():
    import httpx
    import openai

    request = httpx.Request("POST", URL + "/chat/completions")
    busy = httpx.Response(
        429, request=request, headers={"retry-after": "3"}, json={"error": {"message": "slow down"}}
    )
    err = translate_error(
        openai.RateLimitError("slow down", response=busy, body=None), url=URL, kind="openai"
    )
    assert isinstance(err, HostBusyError) and err.retry_after == 3.0
    gone = openai.APIConnectionError(request=request)
    assert isinstance(translate_error(gone, url=URL, kind="openai"), OllamaUnavailableError)
    missing = httpx.Response(404, request=request, json={"error": {"message": "no such model"}})
    err = translate_error(
        openai.NotFoundError("x", response=missing, body=None), url=URL, model="m", kind="openai"
    )
    assert isinstance(err, ModelNotFoundError)


def test_an_invalid_model_list_is_worded_as_such():
    err = InvalidResponseError(
        URL, "GET /models: expected ...", kind="openai", what="not a model list"
    )
    assert err.message.startswith(
        f"the OpenAI-compatible engine at {URL} sent an invalid response (not a model list"
    )


# -- Server-Sent Events framing (ollang.transport.openai_wire.EventFrames) -------------------
BODY = (
    b": a comment\r\n"
    b'data: {"n": 1}\r\n\r\n'
    b'event: message\r\nid: 7\r\ndata: {"n": 2}\r\n\r\n'
    b'data: {"n":\ndata: 3}\n\n'  # one event's data over two lines, \n endings
    b"data: [DONE]\r\n\r\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(BODY)])
def test_events_are_framed_wherever_the_pieces_split(size):
    from ollang.transport.openai_wire import EventFrames

    frames = EventFrames()
    events = []
    for start in range(0, len(BODY), size):
        events += frames.feed(BODY[start : start + size])
    assert events == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert frames.done and frames.end() == []
    assert frames.feed(b'data: {"n": 4}\n\n') == []  # nothing after [DONE]


@pytest.mark.parametrize(
    ("body", "events", "done"),
    [
        (b'data: {"n": 1}', [{"n": 1}], False),  # a last event without its blank line
        (b'data: {"n": 1}\n\ndata: [DONE]', [{"n": 1}], True),
        (b'data: {"n": 1}\n\n', [{"n": 1}], False),  # no [DONE]: the reader decides
        (b"<html>502</html>", [], False),  # not SSE at all
    ],
)
def test_a_body_that_ends_early(body, events, done):
    from ollang.transport.openai_wire import EventFrames

    frames = EventFrames()
    assert frames.feed(body) + frames.end() == events
    assert frames.done is done


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_the_http_libraries_raw_errors_are_translated_alike(module):
    # openai 3.x streams over httpx2, its own fork of httpx: a cut stream or a timeout in
    # ChatOpenAI arrives as httpx2's classes, and must read as httpx's do.
    http = pytest.importorskip(module)
    request = http.Request("POST", URL + "/chat/completions")
    cases = [
        (http.ReadTimeout("slow", request=request), OllamaTimeoutError),
        (http.ConnectTimeout("slow", request=request), OllamaUnavailableError),
        (http.RemoteProtocolError("peer closed", request=request), ConnectionCutError),
        (http.ConnectError("refused", request=request), OllamaUnavailableError),
    ]
    for raw, expected in cases:
        assert type(translate_error(raw, url=URL, kind="openai")) is expected, raw
