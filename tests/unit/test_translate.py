"""Ollama's JSON <-> LangChain messages (:mod:`ollang.transport.translate`): round trips,
the exact shape of requests to a host, and the edges (ids, arguments, images, roles,
statistics)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from ollang.errors import InvalidInputError
from ollang.transport.translate import (
    DONE_FIELDS,
    done_fields,
    from_ollama,
    from_ollama_messages,
    read_lines,
    stream_metadata,
    stream_usage,
    to_ollama,
    to_ollama_line,
    to_ollama_messages,
    tool_call_from_ollama,
    tool_call_to_ollama,
)
from ollang.turns.images import MAX_IMAGES, ImageTooLargeError
from ollang.turns.recorder import TurnRecorder

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x01" * 16).decode()


def image(data: str, mime: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "base64": data, "mime_type": mime}


def call(name: str, args: dict[str, Any], id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": id, "type": "tool_call"}


def same(a: BaseMessage, b: BaseMessage) -> bool:
    """Equal as messages go (type, content, calls, reasoning, tool fields), ids aside."""
    keys = ("type", "content", "tool_calls", "tool_call_id", "name")
    return all(getattr(a, k, None) == getattr(b, k, None) for k in keys) and (
        a.additional_kwargs.get("reasoning_content") == b.additional_kwargs.get("reasoning_content")
    )


# -- round trips ---------------------------------------------------------------------------
LANGCHAIN = [
    SystemMessage("You are terse."),
    HumanMessage("Hi"),
    HumanMessage(""),
    HumanMessage([{"type": "text", "text": "What is this?"}, image(PNG)]),
    HumanMessage([image(PNG), image(JPEG, "image/jpeg")]),
    AIMessage("Hello"),
    AIMessage("", tool_calls=[call("add", {"a": 1, "b": 2}, "call_1")]),
    AIMessage(
        "Two calls",
        tool_calls=[call("f", {}, "c1"), call("g", {"nested": {"x": [1, "y"]}}, "c2")],
    ),
    AIMessage("42", additional_kwargs={"reasoning_content": "6 times 7"}),
    ToolMessage("3", tool_call_id="call_1", name="add"),
    ToolMessage("ok", tool_call_id="c9"),
]


@pytest.mark.parametrize("message", LANGCHAIN, ids=lambda m: f"{m.type}:{str(m.content)[:20]}")
def test_langchain_to_ollama_and_back_is_lossless(message):
    there = to_ollama(message, thinking=True, call_ids=True)
    back = from_ollama(there)
    assert same(back, message), (there, back)


OLLAMA = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "user", "content": "Look", "images": [PNG]},
    {"role": "user", "content": "", "images": [PNG, JPEG]},
    {"role": "assistant", "content": "Hello"},
    {"role": "assistant", "content": "9", "thinking": "3 squared"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "function": {"index": 0, "name": "add", "arguments": {"a": 1}}},
            {"id": "c2", "function": {"index": 1, "name": "now", "arguments": {}}},
        ],
    },
    {"role": "tool", "content": "3", "tool_name": "add", "tool_call_id": "c1"},
]


@pytest.mark.parametrize("message", OLLAMA, ids=lambda m: f"{m['role']}:{m['content'][:12]}")
def test_ollama_to_langchain_and_back_is_lossless(message):
    back = to_ollama(from_ollama(message), thinking=True, call_ids=True)
    assert back == message


def test_a_conversation_round_trips_in_order():
    messages = from_ollama_messages(OLLAMA)
    assert [m.type for m in messages] == [
        "system",
        "human",
        "human",
        "human",
        "ai",
        "ai",
        "ai",
        "tool",
    ]
    assert [to_ollama(m, thinking=True, call_ids=True) for m in messages] == OLLAMA


# -- requests to a host: the shape ollang has always sent ----------------------------------
def test_requests_to_a_host_keep_their_shape():
    sent = to_ollama_messages(
        [
            SystemMessage("s"),
            HumanMessage([{"type": "text", "text": "see"}, image(PNG)]),
            AIMessage(
                "",
                tool_calls=[call("add", {"a": 1}, "c1")],
                additional_kwargs={"reasoning_content": "hmm"},
            ),
            ToolMessage("5", tool_call_id="c1", name="add"),
        ]
    )
    assert sent == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "see", "images": [PNG]},
        # no thinking, no call ids: as ollang has always sent them
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "5", "tool_name": "add"},
    ]


def test_an_old_style_data_image_block_is_sent_too():
    message = HumanMessage(
        [{"type": "image", "source_type": "base64", "data": PNG, "mime_type": "image/png"}]
    )
    assert to_ollama(message)["images"] == [PNG]


def test_an_unknown_message_type_is_sent_as_user():
    from langchain_core.messages import ChatMessage

    assert to_ollama(ChatMessage("x", role="critic")) == {"role": "user", "content": "x"}


@pytest.mark.parametrize(
    ("index", "with_id", "expected"),
    [
        (None, False, {"function": {"name": "f", "arguments": {"a": 1}}}),
        (2, True, {"id": "c", "function": {"index": 2, "name": "f", "arguments": {"a": 1}}}),
        (None, True, {"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}),
    ],
)
def test_tool_call_to_ollama(index, with_id, expected):
    assert tool_call_to_ollama(call("f", {"a": 1}, "c"), index=index, with_id=with_id) == expected


# -- Ollama -> LangChain: the edges ---------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "args"),
    [
        ({"a": 1}, {"a": 1}),
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        (None, {}),
    ],
)
def test_tool_call_arguments_an_object_or_its_json(arguments, args):
    got = tool_call_from_ollama({"id": "x", "function": {"name": "f", "arguments": arguments}})
    assert got == {"name": "f", "args": args, "id": "x", "type": "tool_call"}


@pytest.mark.parametrize("arguments", ["[1, 2]", "not json", "3", 7, [1]])
def test_arguments_that_are_not_an_object(arguments):
    raw = {"function": {"name": "f", "arguments": arguments}}
    assert tool_call_from_ollama(raw)["args"] == {}, "a model's odd answer is read as none"
    with pytest.raises(InvalidInputError, match="not a JSON object"):
        tool_call_from_ollama(raw, strict=True)  # a client's request is refused
    with pytest.raises(InvalidInputError):
        from_ollama({"role": "assistant", "content": "", "tool_calls": [raw]})


def test_calls_without_ids_get_distinct_ones():
    raw = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f"}}] * 3}
    message = from_ollama(raw)
    assert isinstance(message, AIMessage)
    ids = [c["id"] for c in message.tool_calls]
    assert len(set(ids)) == 3 and all(i.startswith("call_") for i in ids)


def test_a_call_without_a_function_has_an_empty_name():
    assert tool_call_from_ollama({})["name"] == ""


def test_a_tool_result_without_ids_or_names():
    message = from_ollama({"role": "tool", "content": "5"})
    assert isinstance(message, ToolMessage)
    assert (message.tool_call_id, message.name) == ("", None)


@pytest.mark.parametrize("role", ["critic", "function", "developer"])
def test_an_unknown_role_is_refused(role):
    with pytest.raises(InvalidInputError, match="unknown message role"):
        from_ollama({"role": role, "content": "x"})


def test_missing_role_and_content_are_a_blank_user_message():
    message = from_ollama({})
    assert isinstance(message, HumanMessage) and message.content == ""


def test_images_come_as_checked_blocks_whatever_their_wrapping():
    wrapped = "\n".join(PNG[i : i + 8] for i in range(0, len(PNG), 8))
    message = from_ollama(
        {"role": "user", "content": "", "images": [f"data:image/png;base64,{PNG}", wrapped, JPEG]}
    )
    assert message.content == [image(PNG), image(PNG), image(JPEG, "image/jpeg")]


@pytest.mark.parametrize(
    ("images", "error", "named"),
    [
        (["!!!"], InvalidInputError, "messages[2].images[0] is not valid base64"),
        (
            [PNG, base64.b64encode(b"plain text").decode()],
            InvalidInputError,
            "messages[2].images[1] is not an image",
        ),
        (
            [PNG] * (MAX_IMAGES + 1),
            InvalidInputError,
            f"messages[2].images has {MAX_IMAGES + 1} images",
        ),
        (["A" * (15 * 2**20)], ImageTooLargeError, "messages[2].images[0] is over"),
    ],
    ids=["base64", "not-an-image", "too-many", "too-large"],
)
def test_bad_images_are_named(images, error, named):
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]
    messages.append({"role": "user", "content": "b", "images": images})
    with pytest.raises(error, match=named.replace("[", r"\[").replace("]", r"\]")):
        from_ollama_messages(messages)


def test_images_on_other_roles_are_not_read():
    message = from_ollama({"role": "assistant", "content": "x", "images": ["!!!"]})
    assert message.content == "x"


# -- the final line's statistics ------------------------------------------------------------
FINAL = {
    "model": "llama3",
    "created_at": "2026-01-01T00:00:00Z",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 10,
    "load_duration": 1,
    "prompt_eval_count": 12,
    "prompt_eval_duration": 2,
    "eval_count": 30,
    "eval_duration": 7,
}


def test_the_final_line_as_metadata_and_usage():
    assert stream_metadata(FINAL) == {k: FINAL[k] for k in ("model", "created_at", *DONE_FIELDS)}
    assert stream_usage(FINAL) == {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42}


@pytest.mark.parametrize(
    ("counts", "usage"),
    [
        ({}, None),
        ({"eval_count": 4}, {"input_tokens": 0, "output_tokens": 4, "total_tokens": 4}),
        ({"prompt_eval_count": 5}, {"input_tokens": 5, "output_tokens": 0, "total_tokens": 5}),
        ({"prompt_eval_count": None, "eval_count": None}, None),
    ],
)
def test_usage_from_partial_counts(counts, usage):
    assert stream_usage({"done": True, **counts}) == usage


def test_done_fields_are_the_statistics_only():
    metadata = {**stream_metadata(FINAL), "model_name": "llama3", "ollang_status": "complete"}
    assert done_fields(metadata) == {k: FINAL[k] for k in DONE_FIELDS}
    assert done_fields({}) == {}


# -- a batch of stream lines ----------------------------------------------------------------
def line(
    content: str = "", thinking: str | None = None, calls: list[Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if calls is not None:
        message["tool_calls"] = calls
    return {"model": "llama3", "message": message, "done": False}


@pytest.mark.parametrize(
    ("lines", "text", "reasoning", "calls", "final"),
    [
        ([], "", "", 0, False),
        ([line("He"), line("llo")], "Hello", "", 0, False),
        ([line(thinking="hm"), line(thinking=" ok"), line("A")], "A", "hm ok", 0, False),
        ([line(calls=[{"function": {"name": "f", "arguments": {}}}])], "", "", 1, False),
        ([line("end"), FINAL], "end", "", 0, True),
        ([{"done": False}, {"model": "m"}], "", "", 0, False),  # lines without a message
    ],
    ids=["empty", "text", "thinking", "tool-call", "final", "no-message"],
)
def test_read_lines(lines, text, reasoning, calls, final):
    got_text, got_reasoning, got_calls, metadata, usage, pieces = read_lines(lines)
    assert (got_text, got_reasoning, len(got_calls), pieces) == (text, reasoning, calls, len(lines))
    assert (metadata is not None, usage is not None) == (final, final)


def test_read_lines_of_a_final_line_in_pieces_keeps_its_statistics():
    *_, metadata, usage, _ = read_lines([FINAL, {"done": True, "eval_count": 31}])
    assert metadata is not None and metadata["eval_count"] == 31 and metadata["model"] == "llama3"
    assert usage == {"input_tokens": 0, "output_tokens": 31, "total_tokens": 31}


def test_the_recorder_keeps_the_reply_chatollama_would():
    recorder = TurnRecorder(session_id="s", model_name="llama3")
    call_line = line(calls=[{"id": "c1", "function": {"name": "add", "arguments": '{"a": 1}'}}])
    assert recorder.observe_delta(read_lines([line(thinking="think")])) == ("", "think")
    assert recorder.observe_delta(read_lines([line("4"), line("2"), call_line])) == ("42", "")
    assert recorder.observe_delta(read_lines([FINAL])) == ("", "")
    message = recorder.message("complete")
    assert message.content == "42"
    assert message.additional_kwargs == {"reasoning_content": "think"}
    assert message.tool_calls == [call("add", {"a": 1}, "c1")]
    assert message.usage_metadata == {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42}
    meta = message.response_metadata
    assert {k: meta[k] for k in stream_metadata(FINAL)} == stream_metadata(FINAL)
    assert (meta["model_name"], meta["ollang_status"]) == ("llama3", "complete")
    result = recorder.finish("complete")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 30)
    assert result.done_reason == "stop" and result.timings.ttft_s is not None


def test_a_streamed_chunk_as_a_stream_line():
    from langchain_core.messages import AIMessageChunk

    middle = to_ollama_line(
        AIMessageChunk("tok", additional_kwargs={"reasoning_content": "hm"}), "smollm2"
    )
    assert middle == {
        "model": "smollm2",
        "done": False,
        "message": {"role": "assistant", "content": "tok", "thinking": "hm"},
    }
    meta = {"done_reason": "stop", "eval_count": 3, "model_name": "smollm2"}
    last = to_ollama_line(AIMessageChunk("", response_metadata=meta), "smollm2")
    assert last["done"] is True and last["done_reason"] == "stop" and last["eval_count"] == 3
    assert "model_name" not in last and last["created_at"].endswith("Z")
    *_, metadata, usage, _ = read_lines([middle, last])
    assert metadata is not None and metadata["done_reason"] == "stop"
    assert usage == {"input_tokens": 0, "output_tokens": 3, "total_tokens": 3}
