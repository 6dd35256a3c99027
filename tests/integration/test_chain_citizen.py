"""ChatChain inside larger LangChain and LangGraph apps (issue 13, items 1-4).

Each test runs the real runnables: LangChain prompt templates piped into the chain,
``as_tool()``, a LangGraph graph with threads, ``with_retry``/``with_fallbacks`` around
the chain, and a ChatOllama wrapped in LangChain's wrappers talking to the local fake
Ollama server (which records the exact request bodies).
"""

from __future__ import annotations

import logging
import operator
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda

from ollang.chains import (
    FakeChatModel,
    FakeReply,
    InvalidInputError,
    build_chat_chain,
    make_chat_model,
)
from ollang.memory import InMemoryChatStore, message_status
from tests.fake_ollama import ModelInfo, Reply


def cfg(session_id: str) -> dict:
    return {"configurable": {"session_id": session_id}}


def contents(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    return [(m.type, m.text) for m in messages]


# -- 1. inputs ---------------------------------------------------------------------------
def test_chat_prompt_template_piped_into_the_chain():
    model = FakeChatModel(replies=["Arr."])
    store = InMemoryChatStore()
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Talk like a {who}."), ("human", "{question}")]
    )
    chain = prompt | build_chat_chain(model, store=store, system="Be brief.")
    assert chain.invoke({"who": "pirate", "question": "Hello?"}, cfg("p")) == "Arr."
    sent = model.prompts[-1]
    assert contents(sent) == [("system", "Talk like a pirate."), ("human", "Hello?")]
    assert contents(store.get_messages("p")) == [("human", "Hello?"), ("ai", "Arr.")]


def test_string_prompt_template_piped_into_the_chain():
    model = FakeChatModel(replies=["Fluffy."])
    store = InMemoryChatStore()
    chain = PromptTemplate.from_template("Describe a {animal}.") | build_chat_chain(
        model, store=store
    )
    assert chain.invoke({"animal": "cat"}, cfg("s")) == "Fluffy."
    assert contents(store.get_messages("s"))[0] == ("human", "Describe a cat.")


def test_a_message_list_system_first_context_between_last_human_stored():
    model = FakeChatModel(replies=["first", "second"])
    store = InMemoryChatStore()
    chain = build_chat_chain(model, store=store, system="chain's own")
    chain.invoke("earlier question", cfg("m"))
    turn = [
        SystemMessage("turn system"),
        HumanMessage("a document: the sky is green"),
        AIMessage("noted"),
        HumanMessage("what colour is the sky?"),
    ]
    assert chain.invoke(turn, cfg("m")) == "second"
    assert contents(model.prompts[-1]) == [
        ("system", "turn system"),
        ("human", "earlier question"),
        ("ai", "first"),
        ("human", "a document: the sky is green"),
        ("ai", "noted"),
        ("human", "what colour is the sky?"),
    ]
    # Only the last human message (and the answer) joined the session.
    assert contents(store.get_messages("m")) == [
        ("human", "earlier question"),
        ("ai", "first"),
        ("human", "what colour is the sky?"),
        ("ai", "second"),
    ]
    # LangGraph's MessagesState shape, and tuples LangChain can read as messages.
    assert chain.invoke({"messages": [("human", "and grass?")]}, cfg("m")) == "echo: and grass?"


@pytest.mark.parametrize(
    "bad",
    [
        [AIMessage("no question here")],
        [HumanMessage("q"), AIMessage("a reply after the question")],
        [],
        {"input": 42},
        {"input": "hi", "system": 3},
    ],
    ids=["no human", "human not last", "empty list", "number", "system not text"],
)
def test_inputs_that_cannot_be_a_turn_are_clear_errors_and_store_nothing(bad):
    model = FakeChatModel()
    store = InMemoryChatStore()
    chain = build_chat_chain(model, store=store)
    with pytest.raises(InvalidInputError):
        chain.invoke(bad, cfg("x"))
    assert store.get_session("x") is None and model.prompts == []


def test_input_schema_and_as_tool_work_plainly():
    store = InMemoryChatStore()
    chain = build_chat_chain(FakeChatModel(replies=["42"]), store=store)
    schema = chain.input_schema.model_json_schema()
    assert set(schema["properties"]) == {"input", "system"} and schema["required"] == ["input"]
    tool = chain.as_tool(name="ask_expert", description="Ask the expert.")
    assert set(tool.args) == {"input", "system"}
    assert tool.invoke({"input": "meaning of life?"}) == "42"


# -- 2. threads --------------------------------------------------------------------------
def test_config_specs_declare_session_and_thread_ids():
    specs = {spec.id for spec in build_chat_chain(FakeChatModel()).config_specs}
    assert specs == {"session_id", "thread_id"}


def test_langgraph_threads_are_separate_sessions():
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        question: str
        answers: Annotated[list[str], operator.add]

    model = FakeChatModel()
    store = InMemoryChatStore()
    chain = build_chat_chain(model, store=store)

    def answer(state: State, config) -> dict:
        return {"answers": [chain.invoke(state["question"], config)]}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    app = graph.compile()
    app.invoke({"question": "I am thread A", "answers": []}, {"configurable": {"thread_id": "A"}})
    app.invoke({"question": "I am thread B", "answers": []}, {"configurable": {"thread_id": "B"}})
    assert "I am thread A" not in [m.text for m in model.prompts[-1]]
    assert contents(store.get_messages("A"))[0] == ("human", "I am thread A")
    assert contents(store.get_messages("B"))[0] == ("human", "I am thread B")
    # session_id wins over thread_id when both are given.
    chain.invoke("explicit", {"configurable": {"session_id": "S", "thread_id": "A"}})
    assert store.get_session("S") is not None


def test_no_session_id_uses_the_default_session_and_warns_once(caplog):
    store = InMemoryChatStore()
    chain = build_chat_chain(FakeChatModel(), store=store)
    with caplog.at_level(logging.WARNING, logger="ollang"):
        chain.invoke("one")
        chain.invoke("two")
    assert caplog.text.count("no session_id") == 1
    assert [m.text for m in store.get_messages("default")][::2] == ["one", "two"]


# -- 3. retries and fallbacks ------------------------------------------------------------
def test_with_retry_stores_the_question_once_and_does_not_send_the_failed_attempt():
    model = FakeChatModel(
        replies=[FakeReply("partial words and more", fail_after=2), "the real answer"]
    )
    store = InMemoryChatStore()
    chain = build_chat_chain(model, store=store).with_retry(
        stop_after_attempt=2, wait_exponential_jitter=False
    )
    assert chain.invoke("hello", cfg("r")) == "the real answer"
    stored = store.get_messages("r")
    assert contents(stored) == [
        ("human", "hello"),
        ("ai", "partial words"),
        ("ai", "the real answer"),
    ]
    assert [message_status(m) for m in stored] == ["complete", "error", "complete"]
    assert contents(model.prompts[0]) == contents(model.prompts[1]) == [("human", "hello")]
    # Later turns do not see the failed attempt either.
    chain.invoke("next", cfg("r"))
    assert contents(model.prompts[-1]) == [
        ("human", "hello"),
        ("ai", "the real answer"),
        ("human", "next"),
    ]


def test_with_fallbacks_to_another_chain_on_the_same_store():
    store = InMemoryChatStore()
    broken = FakeChatModel(replies=[FakeReply("half an", fail_after=2)])
    backup = FakeChatModel(replies=["a whole answer"])
    chain = build_chat_chain(broken, store=store).with_fallbacks(
        [build_chat_chain(backup, store=store)]
    )
    assert chain.invoke("question", cfg("f")) == "a whole answer"
    assert contents(store.get_messages("f")) == [
        ("human", "question"),
        ("ai", "half an"),
        ("ai", "a whole answer"),
    ]
    assert contents(backup.prompts[-1]) == [("human", "question")]


def test_the_same_question_after_a_complete_answer_is_a_new_turn():
    store = InMemoryChatStore()
    chain = build_chat_chain(FakeChatModel(), store=store)
    chain.invoke("again?", cfg("n"))
    chain.invoke("again?", cfg("n"))
    assert [m.type for m in store.get_messages("n")] == ["human", "ai", "human", "ai"]


def test_a_retry_after_a_failure_before_any_text_reuses_the_stored_question():
    store = InMemoryChatStore()
    model = FakeChatModel(replies=[FakeReply("x", fail_after=0), "ok"])
    chain = build_chat_chain(model, store=store)
    with pytest.raises(RuntimeError):
        chain.invoke("hi", cfg("e"))
    assert contents(store.get_messages("e")) == [("human", "hi")]  # on disk before the call
    assert chain.invoke("hi", cfg("e")) == "ok"
    assert contents(store.get_messages("e")) == [("human", "hi"), ("ai", "ok")]


# -- 4. wrapped models -------------------------------------------------------------------
@pytest.fixture
def tiny_ollama(fake_ollama):
    fake_ollama.add_model(ModelInfo("tiny:latest", context_length=512))
    return fake_ollama


@pytest.mark.parametrize(
    "wrap",
    [
        lambda m: m.with_retry(),
        lambda m: m.with_fallbacks([make_chat_model("tiny")]),
        lambda m: m.bind(stop=["\n\n"]),
        lambda m: m.with_config(tags=["x"]),
    ],
    ids=["with_retry", "with_fallbacks", "bind", "with_config"],
)
def test_wrapped_ollama_models_still_get_the_num_ctx_they_were_trimmed_to(tiny_ollama, wrap):
    chain = build_chat_chain(wrap(make_chat_model("tiny")), store=InMemoryChatStore())
    result = chain.invoke_turn("hi", cfg("w"))
    assert result.context.window == 512
    assert tiny_ollama.chat_requests()[-1]["options"]["num_ctx"] == 512


def test_configurable_fields_keep_num_ctx_and_the_chosen_value(tiny_ollama):
    from langchain_core.runnables import ConfigurableField

    model = make_chat_model("tiny").configurable_fields(
        temperature=ConfigurableField(id="temperature")
    )
    chain = build_chat_chain(model, store=InMemoryChatStore())
    chain.invoke("hi", {"configurable": {"session_id": "c", "temperature": 0.25}})
    options = tiny_ollama.chat_requests()[-1]["options"]
    assert options["num_ctx"] == 512 and options["temperature"] == 0.25


def test_fallbacks_trim_to_the_smallest_window(fake_ollama):
    fake_ollama.add_model(ModelInfo("big:latest", context_length=8192))
    fake_ollama.add_model(ModelInfo("small:latest", context_length=1024))
    model = make_chat_model("big").with_fallbacks([make_chat_model("small")])
    result = build_chat_chain(model).invoke_turn("hi", cfg("s"))
    assert result.context.window == 1024


def test_a_retried_model_retries_failures_before_the_first_token(tiny_ollama):
    tiny_ollama.queue(Reply(tokens=[], fault="http500"), Reply(tokens=["fine", " now"]))
    store = InMemoryChatStore()
    model = make_chat_model("tiny").with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    assert build_chat_chain(model, store=store).invoke("hi", cfg("t")) == "fine now"
    assert contents(store.get_messages("t")) == [("human", "hi"), ("ai", "fine now")]
    assert len(tiny_ollama.chat_requests()) == 2


def test_something_other_than_a_chat_model_is_refused_at_build_time():
    with pytest.raises(InvalidInputError, match="needs a chat model"):
        build_chat_chain(RunnableLambda(lambda x: x))
