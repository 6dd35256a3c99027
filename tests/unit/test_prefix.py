"""Prefix digests for cache-aware routing (ollang.routing.prefix): pure functions."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from ollang.routing.prefix import PrefixCache, canonical, longest_known, prefix_digests

MODEL = "llama3:latest"
PNG_A = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG_B = PNG_A.replace("DUlEQVR42mNk", "DUlEQVR42mNl")


def _image(data: str, text: str = "what is this?") -> HumanMessage:
    return HumanMessage(
        [
            {"type": "text", "text": text},
            {"type": "image", "base64": data, "mime_type": "image/png"},
        ]
    )


def _call(name: str, args: dict, call_id: str = "call_1") -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def conversation() -> list:
    return [
        SystemMessage("You are terse."),
        HumanMessage("Hi"),
        AIMessage("Hello."),
        _image(PNG_A),
        AIMessage("A pixel."),
        _call("weather", {"city": "Paris", "unit": "C"}),
        ToolMessage("21 C", tool_call_id="call_1"),
        HumanMessage("Thanks"),
    ]


def test_one_digest_per_message_the_same_for_the_same_messages():
    first = prefix_digests(MODEL, conversation())
    again = prefix_digests(MODEL, conversation())
    assert first == again
    assert len(first) == 8 and len(set(first)) == 8
    assert all(len(d) == 16 for d in first)


def test_a_continued_conversation_shares_the_digests_of_its_beginning():
    messages = conversation()
    shorter = prefix_digests(MODEL, messages[:3])
    longer = prefix_digests(MODEL, [*messages, AIMessage("You're welcome."), HumanMessage("Bye")])
    assert longer[:3] == shorter
    assert longer[:8] == prefix_digests(MODEL, messages)


@pytest.mark.parametrize(
    ("index", "changed"),
    [
        (0, SystemMessage("You are verbose.")),
        (1, HumanMessage("Hi!")),
        (2, AIMessage("Hello!")),
        (3, _image(PNG_B)),  # another image, the same text
        (3, _image(PNG_A, "what is that?")),  # the same image, other text
        (3, HumanMessage("what is this?")),  # the image left out
        (5, _call("weather", {"city": "Lyon", "unit": "C"})),  # other arguments
        (5, _call("forecast", {"city": "Paris", "unit": "C"})),  # another tool
        (6, ToolMessage("22 C", tool_call_id="call_1")),
        (1, AIMessage("Hi")),  # the same text in another role
    ],
)
def test_any_change_in_a_message_changes_its_digest_and_every_later_one(index, changed):
    messages = conversation()
    before = prefix_digests(MODEL, messages)
    messages[index] = changed
    after = prefix_digests(MODEL, messages)
    assert after[:index] == before[:index]
    assert all(a != b for a, b in zip(after[index:], before[index:], strict=True))


def test_the_model_is_part_of_every_digest():
    a = prefix_digests("llama3:latest", conversation())
    b = prefix_digests("mistral:latest", conversation())
    assert not set(a) & set(b)


@pytest.mark.parametrize(
    ("sent", "resent"),
    [
        # A client resends the reply it got: surrounding blanks, ids, reasoning and
        # metadata do not count.
        (
            AIMessage(
                "  The answer.\n",
                id="abc",
                additional_kwargs={"reasoning_content": "thinking..."},
                response_metadata={"ollang_host": "http://a", "model_name": MODEL},
            ),
            AIMessage("The answer."),
        ),
        (
            _call("weather", {"unit": "C", "city": "Paris"}, "call_x"),
            _call("weather", {"city": "Paris", "unit": "C"}, "call_y"),
        ),
        # Text as blocks or as one string.
        (
            HumanMessage([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
            HumanMessage("ab"),
        ),
    ],
)
def test_what_clients_do_not_resend_alike_is_left_out(sent, resent):
    assert canonical(sent) == canonical(resent)


def test_tool_call_arguments_that_are_not_json_still_digest():
    message = _call("f", {"when": object()})
    assert prefix_digests(MODEL, [message])


def test_the_longest_known_prefix_wins():
    digests = prefix_digests(MODEL, conversation())
    known = {digests[1]: "http://a", digests[4]: "http://b"}
    assert longest_known(digests, known) == (5, "http://b")
    assert longest_known(digests, known.get) == (5, "http://b")
    assert longest_known(digests[:4], known) == (2, "http://a")
    assert longest_known(digests, {}) is None
    assert longest_known([], known) is None


def test_the_cache_forgets_the_least_recently_used_and_the_expired():
    now = [0.0]
    cache = PrefixCache(capacity=3, max_age=10.0, clock=lambda: now[0])
    cache.put([b"a", b"b"], "h1")
    cache.put([b"c"], "h2")
    assert cache.get(b"a") == "h1"  # now the most recently used
    cache.put([b"d"], "h3")  # b goes
    assert cache.get(b"b") is None
    assert [cache.get(k) for k in (b"a", b"c", b"d")] == ["h1", "h2", "h3"]
    now[0] = 10.5
    cache.put([b"e"], "h4")
    assert cache.get(b"a") is None and cache.get(b"e") == "h4"
