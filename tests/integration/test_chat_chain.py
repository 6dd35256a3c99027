"""The chat chain with fake models: streaming, memory, trimming, and the data-loss rule."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda

from ollang.chains import (
    ContextWindowError,
    FakeChatModel,
    FakeReply,
    InvalidInputError,
    build_chat_chain,
)
from ollang.memory import message_status
from ollang.turns.context import SAFETY_MARGIN, estimate_tokens, reply_reserve
from tests.conftest import STORE_BACKENDS, open_test_store


@pytest.fixture(params=STORE_BACKENDS)
def store(request, tmp_path):
    with open_test_store(request.param, tmp_path) as s:
        yield s


def cfg(session_id: str) -> dict:
    return {"configurable": {"session_id": session_id}}


def test_stream_pieces_join_to_invoke_result(store):
    model = FakeChatModel(replies=["Hello there, my friend.", "Hello there, my friend."])
    chain = build_chat_chain(model, store=store)
    pieces = list(chain.stream("hi", cfg("a")))
    assert len(pieces) > 1, "the reply must arrive incrementally"
    assert "".join(pieces) == chain.invoke("hi again", cfg("a")) == "Hello there, my friend."


def test_history_persists_and_sessions_are_isolated(store):
    model = FakeChatModel()
    chain = build_chat_chain(model, store=store, system="You are terse.")
    assert chain.invoke({"input": "my name is Ada"}, cfg("s1")) == "echo: my name is Ada"
    chain.invoke("what is my name?", cfg("s1"))
    chain.invoke("who am I?", cfg("s2"))

    second, third = model.prompts[1], model.prompts[2]
    assert isinstance(second[0], SystemMessage) and second[0].content == "You are terse."
    assert [m.content for m in second[1:]] == [
        "my name is Ada",
        "echo: my name is Ada",
        "what is my name?",
    ]
    assert [m.content for m in third[1:]] == ["who am I?"], "s2 must not see s1's history"

    stored = store.get_messages("s1")
    assert [type(m) for m in stored] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
    assert all(message_status(m) == "complete" for m in stored)
    assert stored[1].usage_metadata["output_tokens"] > 0


def test_default_session_and_plain_string_input(store):
    chain = build_chat_chain(FakeChatModel(), store=store)
    chain.invoke("one")
    chain.invoke(HumanMessage("two"))
    assert [m.content for m in store.get_messages("default")] == [
        "one",
        "echo: one",
        "two",
        "echo: two",
    ]


@pytest.mark.parametrize("bad", ["", "   \n\t", {"input": ""}, {"input": None}, 42, {}])
def test_empty_or_wrong_input_fails_before_any_model_call(store, bad):
    model = FakeChatModel()
    chain = build_chat_chain(model, store=store)
    with pytest.raises(InvalidInputError):
        chain.invoke(bad, cfg("x"))
    with pytest.raises(InvalidInputError):
        list(chain.stream(bad, cfg("x")))
    assert model.prompts == []
    assert store.get_messages("x") == []


def test_trimming_keeps_system_newest_turn_and_budget_with_1000_messages(store):
    turns = 500
    for i in range(turns):
        store.add_messages(
            "long",
            [HumanMessage(f"question {i} " + "x" * 80), AIMessage(f"answer {i} " + "y" * 80)],
        )
    model = FakeChatModel()
    window = 1024
    chain = build_chat_chain(model, store=store, system="SYSTEM PROMPT", context_window=window)
    chain.invoke("newest question", cfg("long"))

    sent = model.prompts[-1]
    assert isinstance(sent[0], SystemMessage) and sent[0].content == "SYSTEM PROMPT"
    assert isinstance(sent[1], HumanMessage), "kept history must start on a human message"
    assert sent[-1].content == "newest question"
    assert sent[-2].content.startswith(f"answer {turns - 1} "), "the newest turn must be kept"
    assert sent[-3].content.startswith(f"question {turns - 1} ")
    budget = window - reply_reserve(model, window)
    assert estimate_tokens(sent) <= budget
    assert len(sent) < 1000 and len(sent) > 5
    # Consecutive kept turns are contiguous: nothing was dropped from the middle.
    numbers = [int(m.content.split()[1]) for m in sent[1:-1]]
    assert numbers == sorted(numbers) and numbers[-1] - numbers[0] == (len(numbers) - 2) // 2


def test_message_too_long_for_window_is_a_clear_error_and_is_still_stored(store):
    model = FakeChatModel()
    chain = build_chat_chain(model, store=store, context_window=256)
    with pytest.raises(ContextWindowError, match="too long"):
        chain.invoke("word " * 2000, cfg("big"))
    assert model.prompts == []
    assert [m.type for m in store.get_messages("big")] == ["human"], "what the user typed is kept"


def test_partial_reply_is_stored_on_error(store):
    model = FakeChatModel(replies=[FakeReply("one two three four", fail_after=2)])
    chain = build_chat_chain(model, store=store)
    received = []
    with pytest.raises(RuntimeError, match="fake model failure"):
        for piece in chain.stream("go", cfg("e")):
            received.append(piece)
    assert "".join(received) == "one two"
    human, ai = store.get_messages("e")
    assert human.content == "go" and message_status(human) == "complete"
    assert ai.content == "one two" and message_status(ai) == "error"


def test_partial_reply_is_stored_when_the_consumer_closes_early(store):
    model = FakeChatModel(replies=["alpha beta gamma delta"])
    chain = build_chat_chain(model, store=store)
    stream = chain.stream("go", cfg("c"))
    assert next(stream) == "alpha"
    stream.close()
    _human, ai = store.get_messages("c")
    assert ai.content == "alpha" and message_status(ai) == "interrupted"
    # The next turn works and sees the interrupted answer as context.
    chain.invoke("again", cfg("c"))
    assert [m.content for m in model.prompts[-1]] == ["go", "alpha", "again"]


def test_keyboard_interrupt_keeps_partial_reply_marked_interrupted(store):
    model = FakeChatModel(replies=[FakeReply("a b c d", fail_after=3, error=KeyboardInterrupt())])
    chain = build_chat_chain(model, store=store)
    with pytest.raises(KeyboardInterrupt):
        chain.invoke("go", cfg("k"))
    ai = store.get_messages("k")[-1]
    assert ai.content == "a b c" and message_status(ai) == "interrupted"


def test_reply_is_flushed_while_streaming(store):
    model = FakeChatModel(replies=[FakeReply("p1 p2 p3 p4 p5 p6 p7 p8", delay=0.06)])
    chain = build_chat_chain(model, store=store)
    chain.flush_interval = 0.1
    seen_mid_stream = []
    for i, _piece in enumerate(chain.stream("go", cfg("f"))):
        if i == 5:
            seen_mid_stream = store.get_messages("f")
    assert len(seen_mid_stream) == 2, "the partial reply must be on disk before the end"
    partial = seen_mid_stream[1]
    assert partial.content.startswith("p1 p2") and message_status(partial) == "interrupted"
    final = store.get_messages("f")
    assert len(final) == 2, "flushes update one message, never add another"
    assert final[1].content == "p1 p2 p3 p4 p5 p6 p7 p8" and message_status(final[1]) == "complete"


def test_reasoning_is_kept_apart_from_the_answer(store):
    model = FakeChatModel(
        replies=[FakeReply("The answer is 42.", reasoning="Let me think deeply.")]
    )
    chain = build_chat_chain(model, store=store)
    events = list(chain.stream_turn("question", cfg("r")))
    reasoning = "".join(e.text for e in events if e.type == "reasoning")
    answer = "".join(e.text for e in events if e.type == "token")
    assert reasoning == "Let me think deeply."
    assert answer == "The answer is 42."
    assert events[-1].type == "done"
    result = events[-1].result
    assert result.text == answer and result.reasoning == reasoning
    stored = store.get_messages("r")[-1]
    assert stored.content == "The answer is 42."
    assert stored.additional_kwargs["reasoning_content"] == "Let me think deeply."


def test_usage_and_timings_are_available_after_a_stream(store):
    model = FakeChatModel(replies=[FakeReply("a b c d e", delay=0.01)])
    chain = build_chat_chain(model, store=store)
    result = chain.invoke_turn("count", cfg("u"))
    assert result.usage.output_tokens == 5
    assert result.usage.input_tokens >= 1
    assert 0 < result.timings.ttft_s <= result.timings.total_s
    assert result.timings.tokens_per_s > 0
    assert result.done_reason == "stop"
    assert result.model == "fake"
    assert result.context.window == 4096 and result.context.history_sent == 0


def test_batch_runs_sessions_independently(store):
    chain = build_chat_chain(FakeChatModel(), store=store)
    out = chain.batch(["one", "two", "three"], [cfg("b1"), cfg("b2"), cfg("b3")])
    assert out == ["echo: one", "echo: two", "echo: three"]
    for sid, text in [("b1", "one"), ("b2", "two"), ("b3", "three")]:
        assert [m.content for m in store.get_messages(sid)] == [text, f"echo: {text}"]


def test_embeds_in_a_larger_langchain_pipeline(store):
    chain = build_chat_chain(FakeChatModel(replies=["quiet words"]), store=store)
    louder = chain | RunnableLambda(str.upper)
    assert louder.invoke("x", cfg("p")) == "QUIET WORDS"
    assert "".join(louder.stream("y", cfg("p"))).startswith("ECHO: Y")


def test_async_mirrors_sync(store):
    model = FakeChatModel(replies=["async reply one", "async reply two"])
    chain = build_chat_chain(model, store=store)

    async def run():
        pieces = [p async for p in chain.astream("a", cfg("as"))]
        whole = await chain.ainvoke("b", cfg("as"))
        batch = await chain.abatch(["c", "d"], [cfg("ab1"), cfg("ab2")])
        return pieces, whole, batch

    pieces, whole, batch = asyncio.run(run())
    assert len(pieces) > 1 and "".join(pieces) == "async reply one"
    assert whole == "async reply two"
    assert batch == ["echo: c", "echo: d"]
    assert [m.content for m in store.get_messages("as")] == [
        "a",
        "async reply one",
        "b",
        "async reply two",
    ]


def test_async_cancellation_keeps_partial_reply(store):
    model = FakeChatModel(replies=[FakeReply("w1 w2 w3 w4 w5 w6 w7 w8", delay=0.05)])
    chain = build_chat_chain(model, store=store)
    got: list[str] = []

    async def consume():
        async for piece in chain.astream("go", cfg("ac")):
            got.append(piece)

    async def run():
        task = asyncio.create_task(consume())
        while len(got) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    ai = store.get_messages("ac")[-1]
    assert message_status(ai) == "interrupted"
    assert ai.content.startswith("".join(got[:3])) and len(ai.content) < len(
        "w1 w2 w3 w4 w5 w6 w7 w8"
    )


def test_async_error_keeps_partial_reply(store):
    model = FakeChatModel(replies=[FakeReply("x y z", fail_after=1)])
    chain = build_chat_chain(model, store=store)

    async def run():
        return [p async for p in chain.astream("go", cfg("ae"))]

    with pytest.raises(RuntimeError):
        asyncio.run(run())
    ai = store.get_messages("ae")[-1]
    assert ai.content == "x" and message_status(ai) == "error"


def test_concurrent_threads_on_one_chain_keep_sessions_apart(store):
    chain = build_chat_chain(FakeChatModel(), store=store)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                assert chain.invoke(f"t{n} m{i}", cfg(f"thread-{n}")) == f"echo: t{n} m{i}"
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(4):
        contents = [m.content for m in store.get_messages(f"thread-{n}")]
        assert contents == [x for i in range(10) for x in (f"t{n} m{i}", f"echo: t{n} m{i}")]


def test_safety_margin_is_a_real_fraction():
    assert 0.5 < SAFETY_MARGIN < 1.0


def test_per_call_system_override(store):
    model = FakeChatModel()
    chain = build_chat_chain(model, store=store, system="default system")
    chain.invoke({"input": "hi", "system": "pirate"}, cfg("sys"))
    assert model.prompts[-1][0].content == "pirate"
