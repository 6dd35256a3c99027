"""The turn life cycle's decisions, driven by hand: what is stored, when, with what status."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

from ollang.memory import message_status
from ollang.turns.context import ContextBudget
from ollang.turns.lifecycle import TurnLifecycle, Write

BUDGET = ContextBudget(
    window=4096, reserve=512, prompt_tokens=10, history_sent=0, history_dropped=0
)


def _ai(text: str, status: str) -> AIMessage:
    return AIMessage(text, response_metadata={"ollang_status": status})


def test_a_new_question_is_stored_before_the_model_is_called():
    life = TurnLifecycle("s1")
    question = HumanMessage("hi")
    opening = life.open(question, [])
    assert opening.question is question
    assert opening.write == Write("s1", [question], wait=True)


@pytest.mark.parametrize(
    ("recent", "retried"),
    [
        ([HumanMessage("hi", id="q1")], True),  # no answer yet
        ([HumanMessage("hi", id="q1"), _ai("par", "error")], True),  # only a failed attempt
        ([HumanMessage("hi", id="q1"), _ai("done", "complete")], False),  # answered: new turn
        ([HumanMessage("hi", id="q1"), _ai("stop", "interrupted")], False),  # user stopped it
        ([HumanMessage("other", id="q1")], False),  # a different question
    ],
)
def test_a_retried_question_is_reused_not_stored_again(recent, retried):
    life = TurnLifecycle("s1")
    opening = life.open(HumanMessage("hi"), recent)
    if retried:
        assert opening.write is None and opening.question.id == "q1"
    else:
        assert opening.write is not None and opening.question.content == "hi"


def test_a_stateless_turn_asks_for_no_writes():
    life = TurnLifecycle(None)
    assert life.open(HumanMessage("hi")).write is None
    recorder = life.begin(BUDGET)
    recorder.observe(AIMessageChunk("a"))
    recorder.last_flush = -1e9
    assert life.streamed() is None
    assert life.stopped(RuntimeError("x")) is None
    write, result = life.finish()
    assert write is None and result.text == "a"


def test_flushes_are_snapshots_marked_interrupted_at_most_once_per_interval():
    life = TurnLifecycle("s1", flush_interval=3600)
    recorder = life.begin(BUDGET)
    recorder.observe(AIMessageChunk("par"))
    assert life.streamed() is None  # not due yet
    recorder.last_flush -= 3601
    write = life.streamed()
    assert write is not None and write.session_id == "s1"
    [snapshot] = write.messages
    assert snapshot.content == "par" and message_status(snapshot) == "interrupted"
    assert life.streamed() is None  # the clock restarted


def test_the_complete_reply_is_stored_with_the_same_id_as_its_snapshots():
    life = TurnLifecycle("s1", model_name="m", flush_interval=0)
    recorder = life.begin(BUDGET)
    recorder.observe(AIMessageChunk("he"))
    snapshot = life.streamed()
    recorder.observe(AIMessageChunk("llo"))
    write, result = life.finish()
    assert write is not None and snapshot is not None
    assert write.wait is True
    assert write.messages[0].id == snapshot.messages[0].id == result.message_id
    assert result.text == "hello" and result.status == "complete"
    assert message_status(write.messages[0]) == "complete"


@pytest.mark.parametrize(
    ("err", "status", "wait"),
    [
        (RuntimeError("boom"), "error", True),  # stored before the error reaches the caller
        (KeyboardInterrupt(), "interrupted", False),
        (GeneratorExit(), "interrupted", False),
        (asyncio.CancelledError(), "interrupted", False),  # must not await while cancelled
    ],
)
def test_a_stopped_turn_keeps_what_arrived(err, status, wait):
    life = TurnLifecycle("s1")
    recorder = life.begin(BUDGET)
    recorder.observe(AIMessageChunk("partial"))
    write = life.stopped(err)
    assert write is not None and write.wait is wait
    assert write.messages[0].content == "partial"
    assert message_status(write.messages[0]) == status


def test_a_turn_stopped_before_anything_arrived_stores_no_reply():
    life = TurnLifecycle("s1")
    assert life.stopped(RuntimeError("before begin")) is None
    life.begin(BUDGET)
    assert life.stopped(RuntimeError("nothing yet")) is None


def test_streaming_before_begin_is_a_programming_error():
    with pytest.raises(RuntimeError, match="begin"):
        TurnLifecycle("s1").streamed()
