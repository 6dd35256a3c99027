"""Agents and structured output on ollang's own models: FakeChatModel and the embedded one.

``create_agent`` (langchain 1.x) runs real tools on the fake's tool calls; structured
output goes through LangChain's own parsers on both the fake and SmolLM2-135M.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ollang.chains import InvalidInputError, build_chat_chain, make_chat_model
from ollang.chains.fake import FakeChatModel, FakeReply, choose_tool, example_json, tool_arguments
from ollang.memory import InMemoryChatStore
from tests.fake_ollama import Reply


def make_tools() -> tuple[list[Any], list[dict[str, Any]]]:
    """An adder and a weather tool that record every real call they get."""
    calls: list[dict[str, Any]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append({"tool": "add", "a": a, "b": b})
        return a + b

    @tool
    def weather(city: str) -> str:
        """Today's weather in a city."""
        calls.append({"tool": "weather", "city": city})
        return f"sunny in {city}"

    return [add, weather], calls


def call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id}


# -- create_agent on the fake --------------------------------------------------------------


def test_create_agent_runs_the_real_tool_the_fake_asks_for():
    tools, calls = make_tools()
    model = FakeChatModel(
        replies=[
            AIMessage("", tool_calls=[call("add", {"a": 20, "b": 22}, "call-add")]),
            "The answer is 42.",
        ]
    )
    agent = create_agent(model, tools=tools)

    result = agent.invoke({"messages": [HumanMessage("What is 20 + 22?")]})

    assert calls == [{"tool": "add", "a": 20, "b": 22}], "the agent ran the real tool once"
    assert len(model.prompts) == 2
    tool_result = model.prompts[1][-1]
    assert isinstance(tool_result, ToolMessage), "the tool's output is the fake's next input"
    assert tool_result.content == "42" and tool_result.tool_call_id == "call-add"
    final = result["messages"][-1]
    assert isinstance(final, AIMessage) and final.content == "The answer is 42."
    assert not final.tool_calls
    bound = [t["function"]["name"] for t in model.bound_tools[0]]
    assert bound == ["add", "weather"], "the agent's tools were bound, in OpenAI format"
    assert model.bound_tools[0][0]["function"]["parameters"]["required"] == ["a", "b"]


def test_create_agent_async_runs_two_tools_in_one_step():
    tools, calls = make_tools()
    model = FakeChatModel(
        replies=[
            AIMessage(
                "Let me look.",
                tool_calls=[
                    call("weather", {"city": "Paris"}, "w1"),
                    call("add", {"a": 1, "b": 2}, "a1"),
                ],
            ),
            "Sunny, and 3.",
        ]
    )
    agent = create_agent(model, tools=tools)

    result = asyncio.run(agent.ainvoke({"messages": [HumanMessage("Weather, and 1+2?")]}))

    assert sorted(c["tool"] for c in calls) == ["add", "weather"]
    results = {m.tool_call_id: m.content for m in model.prompts[1] if isinstance(m, ToolMessage)}
    assert results == {"w1": "sunny in Paris", "a1": "3"}
    assert result["messages"][-1].content == "Sunny, and 3."


def test_create_agent_on_the_unscripted_fake_follows_its_rules():
    # No script: the fake calls the tool named by the user with the numbers in the
    # message, then answers with an echo of the tool result.
    tools, calls = make_tools()
    model = FakeChatModel()
    result = create_agent(model, tools=tools).invoke(
        {"messages": [HumanMessage("Use add on 40 and 2")]}
    )
    assert calls == [{"tool": "add", "a": 40, "b": 2}]
    assert result["messages"][-1].content == "echo: 42"


def test_create_agent_with_a_response_format_returns_the_structured_answer():
    class Weather(BaseModel):
        city: str
        temperature: int

    tools, calls = make_tools()
    model = FakeChatModel(
        replies=[
            AIMessage("", tool_calls=[call("weather", {"city": "Oslo"}, "w1")]),
            AIMessage("", tool_calls=[call("Weather", {"city": "Oslo", "temperature": 4}, "s1")]),
        ]
    )
    result = create_agent(model, tools=tools, response_format=Weather).invoke(
        {"messages": [HumanMessage("Weather in Oslo?")]}
    )
    assert calls == [{"tool": "weather", "city": "Oslo"}]
    assert result["structured_response"] == Weather(city="Oslo", temperature=4)
    names = [t["function"]["name"] for t in model.bound_tools[-1]]
    assert names == ["add", "weather", "Weather"], "the schema is offered as a tool"


# -- the fake's tool calls and structured output -------------------------------------------


def test_tool_calls_stream_as_chunks_that_merge_into_the_call():
    model = FakeChatModel(
        replies=[AIMessage("Adding.", tool_calls=[call("add", {"a": 1, "b": 2}, "x")])]
    )
    tools, _ = make_tools()
    chunks = list(model.bind_tools(tools).stream("1+2"))
    pieces = [c for c in chunks if c.tool_call_chunks]
    assert len(pieces) == 2, "the arguments arrive in two pieces"
    assert pieces[0].tool_call_chunks[0]["args"] != json.dumps({"a": 1, "b": 2})
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert isinstance(full, AIMessageChunk) and full.chunk_position == "last"
    assert full.text == "Adding."
    assert full.tool_calls == [
        {"name": "add", "args": {"a": 1, "b": 2}, "id": "x", "type": "tool_call"}
    ]
    assert full.usage_metadata and full.usage_metadata["output_tokens"] == 3


def test_a_tool_call_reply_keeps_failures_and_reasoning():
    model = FakeChatModel(
        replies=[
            FakeReply("partial answer here", fail_after=1, tool_calls=[call("add", {}, "z")]),
            FakeReply(reasoning="thinking hard", tool_calls=[call("add", {"a": 1}, "y")]),
        ]
    )
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="fake model failure"):
        for chunk in model.stream("go"):
            seen.append(chunk.text)
    assert "".join(seen) == "partial", "no tool call escapes a failed stream"
    message = model.invoke("again")
    assert message.additional_kwargs["reasoning_content"] == "thinking hard"
    assert message.tool_calls[0]["args"] == {"a": 1}


def test_bind_tools_checks_tool_choice_and_forces_the_named_tool():
    tools, _ = make_tools()
    model = FakeChatModel()
    with pytest.raises(InvalidInputError, match="not one of the bound tools"):
        model.bind_tools(tools, tool_choice="nope")
    message = model.bind_tools(tools, tool_choice="weather").invoke("What is 1 + 2 in 'Rome'?")
    assert message.tool_calls[0]["name"] == "weather"
    assert message.tool_calls[0]["args"] == {"city": "Rome"}
    assert model.bind_tools(tools, tool_choice="none").invoke("add 1 2").content == "echo: add 1 2"


def test_without_tools_the_fake_still_echoes_and_records_prompts():
    model = FakeChatModel()
    chain = build_chat_chain(model, store=InMemoryChatStore())
    assert chain.invoke("hello", {"configurable": {"session_id": "s"}}) == "echo: hello"
    assert model.prompts[-1][-1].content == "hello"
    assert model.bound_tools == []


class Person(BaseModel):
    """A person."""

    name: str = Field(description="the person's name")
    age: int


class PersonDict(TypedDict):
    """A person."""

    name: str
    age: int


PERSON_SCHEMA = Person.model_json_schema()


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (Person, Person(name="Ada", age=36)),
        (PersonDict, {"name": "Ada", "age": 36}),
        (PERSON_SCHEMA, {"name": "Ada", "age": 36}),
    ],
    ids=["pydantic", "typeddict", "json_schema"],
)
def test_structured_output_on_the_unscripted_fake(schema, expected, method):
    structured = FakeChatModel().with_structured_output(schema, method=method)
    assert structured.invoke("The person is 'Ada', aged 36.") == expected
    assert asyncio.run(structured.ainvoke("The person is 'Ada', aged 36.")) == expected
    assert list(structured.stream("The person is 'Ada', aged 36."))[-1] == expected


def test_structured_output_parses_scripted_replies_and_includes_raw():
    model = FakeChatModel(
        replies=[
            AIMessage("", tool_calls=[call("Person", {"name": "Bo", "age": 7}, "p")]),
            '{"name": "Cy", "age": 8}',
            "not json at all",
        ]
    )
    tool_result = model.with_structured_output(Person, include_raw=True).invoke("who?")
    assert tool_result["parsed"] == Person(name="Bo", age=7)
    assert tool_result["raw"].tool_calls[0]["id"] == "p" and tool_result["parsing_error"] is None
    assert model.with_structured_output(Person, method="json_mode").invoke("who?") == Person(
        name="Cy", age=8
    )
    failed = model.with_structured_output(Person, method="json_schema", include_raw=True).invoke(
        "who?"
    )
    assert failed["parsed"] is None and failed["parsing_error"] is not None
    assert failed["raw"].content == "not json at all"
    assert model.prompts[1][-1].content == "who?"


def test_json_mode_on_the_fake_sees_only_the_prompt_as_a_real_model_would():
    structured = FakeChatModel().with_structured_output(Person, method="json_mode")
    # The schema is not sent in JSON mode: without the keys named, no Person comes back.
    with pytest.raises(Exception, match="Failed to parse Person"):
        structured.invoke("Who is Ada?")
    answer = FakeChatModel().with_structured_output(PERSON_SCHEMA, method="json_mode")
    assert answer.invoke("Give 'name' and 'age' as JSON") == {
        "name": "Give 'name' and 'age' as JSON",
        "age": "Give 'name' and 'age' as JSON",
    }


def test_unknown_structured_output_method_is_an_error():
    with pytest.raises(InvalidInputError, match="unknown structured output method"):
        FakeChatModel().with_structured_output(Person, method="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "choice", "expected"),
    [
        ("What is magic_function(3)?", None, ("magic_function", {"input": 3})),
        ("call other_tool please", None, ("other_tool", {"name": "call other_tool please"})),
        ("nothing named", None, ("magic_function", {"input": 0})),
        ("magic_function(3)", "other_tool", ("other_tool", {"name": "magic_function(3)"})),
        ("What's up, 'Zoë'?", "other_tool", ("other_tool", {"name": "Zoë"})),
    ],
)
def test_the_unscripted_tool_rules(text, choice, expected):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "magic_function",
                "parameters": {"type": "object", "properties": {"input": {"type": "integer"}}},
            },
        },
        {
            "type": "function",
            "function": {
                "name": "other_tool",
                "parameters": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    ]
    chosen = choose_tool(tools, text, choice)
    assert chosen is not None
    assert (chosen["function"]["name"], tool_arguments(chosen, text)) == expected
    assert choose_tool(tools, text, "none") is None


def test_example_json_fills_nested_and_optional_fields():
    class Inner(BaseModel):
        flag: bool
        tags: list[str]

    class Outer(BaseModel):
        title: str
        score: float
        kind: str = Field(json_schema_extra={"enum": ["a", "b"]})
        inner: Inner
        note: str | None = None

    value = example_json(Outer.model_json_schema(), "'Hi' scored 2.5 and 'more'")
    assert Outer.model_validate(value) == Outer(
        title="Hi",
        score=2.5,
        kind="a",
        inner=Inner(flag=False, tags=[]),
        note="more",
    )


# -- ollang's ChatOllama on the fake Ollama server: tools and format on the wire ----------


def test_create_agent_on_ollangs_chat_model_through_the_ollama_wire(fake_ollama):
    tools, calls = make_tools()
    fake_ollama.queue(
        Reply([], tool_calls=[{"name": "weather", "arguments": {"city": "Lima"}}]),
        "Sunny in Lima today.",
    )
    model = make_chat_model("llama3", base_url=fake_ollama.url)
    result = create_agent(model, tools=tools).invoke({"messages": [HumanMessage("Lima?")]})

    assert calls == [{"tool": "weather", "city": "Lima"}]
    first, second = fake_ollama.chat_requests()
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "weather"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "weather"
    assert second["messages"][-1] == {"role": "tool", "content": "sunny in Lima"}
    assert result["messages"][-1].content == "Sunny in Lima today."


def test_the_fake_ollama_answers_tools_and_format_by_the_fakes_rules(fake_ollama):
    model = make_chat_model("llama3", base_url=fake_ollama.url)
    tools, _ = make_tools()
    message = model.bind_tools(tools).invoke("Use weather for 'Quito'")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("weather", {"city": "Quito"})]

    person = model.with_structured_output(Person).invoke("The person is 'Ada', aged 36.")
    assert person == Person(name="Ada", age=36)
    assert fake_ollama.chat_requests()[-1]["format"] == Person.model_json_schema()
    as_json = make_chat_model("llama3", base_url=fake_ollama.url, format="json")
    assert json.loads(as_json.invoke("Say 'hi' as JSON").content) == {"hi": "Say 'hi' as JSON"}


def test_the_fake_ollama_sends_scripted_tool_calls_unstreamed_too(fake_ollama):
    import ollama

    fake_ollama.queue(Reply(["Checking."], tool_calls=[{"name": "add", "arguments": {"a": 1}}]))
    response = ollama.Client(host=fake_ollama.url).chat(
        model="llama3", messages=[{"role": "user", "content": "1?"}], stream=False
    )
    assert response.message.content == "Checking."
    assert response.message.tool_calls is not None
    assert [(c.function.name, dict(c.function.arguments)) for c in response.message.tool_calls] == [
        ("add", {"a": 1})
    ]


# -- the embedded model (SmolLM2-135M through llama.cpp) -----------------------------------


class Joke(BaseModel):
    """A joke."""

    setup: str
    punchline: str


class JokeDict(TypedDict):
    setup: str
    punchline: str


@pytest.fixture(scope="module")
def embedded():
    pytest.importorskip(
        "llama_cpp", reason="the embedded extra (llama-cpp-python) is not installed"
    )
    from ollang.embedded.model import make_embedded_chat_model

    return make_embedded_chat_model(temperature=0, seed=1, num_predict=160)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize(
    "schema",
    [Joke, JokeDict, Joke.model_json_schema()],
    ids=["pydantic", "typeddict", "json_schema"],
)
def test_embedded_structured_output_has_the_schemas_shape(embedded, schema, method):
    # The grammar makes even the 135M model answer with exactly the schema's keys.
    result = embedded.with_structured_output(schema, method=method).invoke(
        "Tell me a joke about cats."
    )
    joke = result if isinstance(result, Joke) else Joke.model_validate(result)
    assert joke.setup.strip() and isinstance(joke.punchline, str)
    if not isinstance(result, Joke):
        assert set(result) == {"setup", "punchline"}


def test_embedded_structured_output_includes_raw_and_streams(embedded):
    raw = embedded.with_structured_output(Joke, include_raw=True).invoke("A joke about dogs?")
    assert raw["parsing_error"] is None and isinstance(raw["parsed"], Joke)
    assert json.loads(raw["raw"].content) == raw["parsed"].model_dump()
    assert raw["raw"].response_metadata["done_reason"] == "stop"
    assert raw["raw"].usage_metadata["output_tokens"] > 5

    parts = list(embedded.with_structured_output(JokeDict).stream("A joke about dogs?"))
    assert len(parts) > 1, "partial objects arrive while the JSON is generated"
    assert parts[-1] == raw["parsed"].model_dump(), "same prompt, temperature 0: same joke"
    again = asyncio.run(embedded.with_structured_output(Joke).ainvoke("A joke about dogs?"))
    assert again == raw["parsed"]


def test_embedded_forced_tool_call_fits_the_tools_schema(embedded):
    @tool
    def magic_function(input: int) -> int:
        """Apply a magic function to an input."""
        return input + 2

    bound = embedded.bind_tools([magic_function], tool_choice="magic_function")
    message = bound.invoke("What is magic_function(3)?")
    assert [c["name"] for c in message.tool_calls] == ["magic_function"]
    assert isinstance(message.tool_calls[0]["args"]["input"], int)
    assert message.tool_calls[0]["id"]

    full = None
    for chunk in embedded.bind_tools([magic_function], tool_choice="any").stream(
        "What is magic_function(3)?"
    ):
        full = chunk if full is None else full + chunk
    assert full is not None and len(full.tool_call_chunks) == 1
    assert full.tool_calls[0]["name"] == "magic_function", "the name is not repeated per piece"
    assert full.tool_calls[0]["args"] == message.tool_calls[0]["args"]
    assert ToolMessage(str(magic_function.invoke(full.tool_calls[0])), tool_call_id="x")


def test_embedded_model_refuses_to_choose_tools_itself_with_a_clear_error(embedded):
    from ollang.embedded.model import ToolChoiceUnsupportedError

    tools, calls = make_tools()
    with pytest.raises(ToolChoiceUnsupportedError) as caught:
        embedded.bind_tools(tools)
    assert isinstance(caught.value, InvalidInputError)
    assert "tool_choice is automatic" in caught.value.message
    assert "OLLANG_BACKEND=ollama" in caught.value.hint
    with pytest.raises(ToolChoiceUnsupportedError, match="among 2 tools"):
        embedded.bind_tools(tools, tool_choice="any")
    with pytest.raises(InvalidInputError, match="not one of the bound tools"):
        embedded.bind_tools(tools, tool_choice="nope")
    # An agent fails on its first model call, with the same error, before any tool runs.
    with pytest.raises(ToolChoiceUnsupportedError):
        create_agent(embedded, tools=tools).invoke({"messages": [HumanMessage("1 + 2?")]})
    assert calls == []
    text = embedded.bind_tools(tools, tool_choice="none").invoke("Say hi.")
    assert text.content and not text.tool_calls


def test_create_agent_response_format_on_the_embedded_model(embedded):
    # One structured-output tool and no others: create_agent forces that one call.
    result = create_agent(embedded, tools=[], response_format=Joke).invoke(
        {"messages": [HumanMessage("Tell me a joke about cats.")]}
    )
    assert isinstance(result["structured_response"], Joke)


def test_embedded_format_option_as_ollama_takes_it():
    pytest.importorskip(
        "llama_cpp", reason="the embedded extra (llama-cpp-python) is not installed"
    )
    from ollang.embedded.model import make_embedded_chat_model

    as_json = make_embedded_chat_model(temperature=0, seed=1, num_predict=120, format="json")
    answer = as_json.invoke("List three colors as JSON.").content
    assert isinstance(json.loads(answer), dict | list)
    # A bounded string: SmolLM2 writes a long "color" here, which an unbounded one lets
    # run past num_predict (then the JSON is cut, as Ollama's would be).
    schema = (
        '{"type": "object", "properties": {"color": {"type": "string", "maxLength": 40}},'
        ' "required": ["color"]}'
    )
    shaped = make_embedded_chat_model(temperature=0, seed=1, num_predict=60, format=schema)
    # Strict JSON: no raw newline may be in the string either.
    assert set(json.loads(shaped.invoke("Name a color.").content)) == {"color"}
    with pytest.raises(InvalidInputError, match="format must be 'json' or a JSON schema"):
        make_embedded_chat_model(format="yaml")
    with pytest.raises(InvalidInputError, match="format is not valid JSON"):
        make_embedded_chat_model(format="{not json")


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, {"type": "string", "maxLength": 500}),
        ({"type": "string", "maxLength": 9}, {"type": "string", "maxLength": 9}),
        ({"type": "string", "enum": ["a"]}, {"type": "string", "enum": ["a"]}),
        (
            {"type": "array", "items": {"type": ["string", "null"]}},
            {
                "type": "array",
                "maxItems": 50,
                "items": {"type": ["string", "null"], "maxLength": 500},
            },
        ),
        (
            {"properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "string"}}},
            {
                "properties": {"a": {"$ref": "#/$defs/A"}},
                "$defs": {"A": {"type": "string", "maxLength": 500}},
            },
        ),
    ],
)
def test_embedded_schemas_get_bounds_so_a_rambling_model_still_closes_its_json(schema, expected):
    pytest.importorskip(
        "llama_cpp", reason="the embedded extra (llama-cpp-python) is not installed"
    )
    from ollang.embedded.model import _bounded

    assert _bounded(schema) == expected
