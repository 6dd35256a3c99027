"""A fake chat model for tests: canned replies, recorded prompts, scripted failures, tools.

It is a real ``BaseChatModel``: plug it into :func:`~chains.build_chat_chain`
(or any LangChain code, ``create_agent`` included) exactly where a ``ChatOllama``
would go, and the chain, memory and CLI code run unchanged.

Example:
    >>> model = FakeChatModel(replies=["Hello there!"])
    >>> chain = build_chat_chain(model)
    >>> chain.invoke("hi")
    'Hello there!'
    >>> model.prompts[-1][-1].content
    'hi'

The module also holds the rules the fake follows when nothing is scripted
(:func:`choose_tool`, :func:`tool_arguments`, :func:`example_json`). They use the
standard library only, so ``tests/fake_ollama.py`` answers Ollama requests that
carry ``tools`` or ``format`` by the very same rules.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from ollang.embedded.streamed import StreamedChatModel
from ollang.errors import InvalidInputError

__all__ = [
    "FakeChatModel",
    "FakeReply",
    "choose_tool",
    "example_json",
    "tool_arguments",
]

_PIECES = re.compile(r"\s*\S+|\s+$")


def split_pieces(text: str) -> list[str]:
    """Split text into word pieces that keep their leading spaces ("a b" → ["a", " b"])."""
    return _PIECES.findall(text) or ([text] if text else [])


@dataclass
class FakeReply:
    """One scripted reply.

    Attributes:
        text: The answer.
        reasoning: Reasoning text streamed before the answer.
        fail_after: Raise ``error`` after this many answer pieces (``None``: don't).
        error: The exception to raise.
        delay: Seconds to sleep before each piece (to test cancellation and flushing).
        tool_calls: Tool calls streamed after the text, as LangChain ``ToolCall``
            dicts (``{"name", "args", "id"}``; a missing ``id`` is made up).
    """

    text: str = ""
    reasoning: str = ""
    fail_after: int | None = None
    error: BaseException = field(default_factory=lambda: RuntimeError("fake model failure"))
    delay: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


# -- the rules for unscripted turns (standard library only) -------------------------------
# A test double, not a model: deterministic, and just enough to drive the code paths that
# a real model's tool calls and JSON answers drive.

_QUOTED = re.compile(r"(?<!\w)'([^']+)'(?!\w)|\"([^\"]+)\"")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?!\w)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tool_function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    function = tool.get("function")
    return function if isinstance(function, Mapping) else tool


def choose_tool(
    tools: Sequence[Mapping[str, Any]], text: str, tool_choice: str | None = None
) -> Mapping[str, Any] | None:
    """The tool the fake calls on a user's turn, or ``None`` for no call.

    Rule: ``tool_choice="none"`` calls nothing; a ``tool_choice`` naming a tool calls
    that tool; otherwise the first tool whose name appears in ``text``, else the first
    tool. Tools are OpenAI-format schemas (``{"type": "function", "function": {...}}``,
    as ``bind_tools`` and Ollama's ``tools`` field carry them).
    """
    if not tools or tool_choice == "none":
        return None
    names = [str(_tool_function(t).get("name", "")) for t in tools]
    if tool_choice and tool_choice in names:
        return tools[names.index(tool_choice)]
    for tool, name in zip(tools, names, strict=True):
        if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            return tool
    return tools[0]


def tool_arguments(tool: Mapping[str, Any], text: str) -> dict[str, Any]:
    """The arguments the fake passes to ``tool``, taken from the user's ``text``.

    Rule: a call written in the text (``magic_function(3)``) gives its values to the
    parameters in order; other parameters are filled as :func:`example_json` fills them.
    """
    function = _tool_function(tool)
    parameters = function.get("parameters") or {}
    properties = list((parameters.get("properties") or {}).keys())
    written: dict[str, Any] = {}
    match = re.search(rf"(?<!\w){re.escape(str(function.get('name', '')))}\(([^)]*)\)", text)
    if match:
        values = [_literal(v) for v in match.group(1).split(",") if v.strip()]
        written = dict(zip(properties, values, strict=False))
    filled = _Filler(text, parameters).value(parameters)
    return {**(filled if isinstance(filled, dict) else {}), **written}


def example_json(schema: Mapping[str, Any] | None, text: str) -> Any:
    """The JSON value the fake answers with when asked for JSON (``format``).

    Rule, for a JSON schema: every property gets a value; strings take the quoted
    strings of ``text`` in order, then ``text`` itself; numbers take the numbers of
    ``text`` in order, then 0; booleans are false, arrays empty, enums their first
    value. With no schema (plain JSON mode) the keys are the quoted names in ``text``
    (``'setup' and 'punchline' keys``), each with ``text`` as its value, else
    ``{"echo": text}``.
    """
    if schema:
        return _Filler(text, schema).value(schema)
    keys = [q for q in _quoted(text) if _IDENTIFIER.fullmatch(q)]
    return dict.fromkeys(keys, text) if keys else {"echo": text}


def _quoted(text: str) -> list[str]:
    return [a or b for a, b in _QUOTED.findall(text)]


def _literal(raw: str) -> Any:
    raw = raw.strip()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.strip("'")


class _Filler:
    """Fills a JSON schema with values drawn from a text, in order (see example_json)."""

    def __init__(self, text: str, root: Mapping[str, Any]) -> None:
        self.text = text
        self.strings = iter(_quoted(text))
        self.numbers = iter(_NUMBER.findall(text))
        self.defs = {**(root.get("definitions") or {}), **(root.get("$defs") or {})}

    def value(self, schema: Mapping[str, Any], depth: int = 0) -> Any:
        ref = schema.get("$ref")
        if isinstance(ref, str) and depth < 8:
            return self.value(self.defs.get(ref.rsplit("/", 1)[-1], {}), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            branches = [b for b in schema.get(key) or [] if b.get("type") != "null"]
            if branches:
                return self.value(branches[0], depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind == "object" or "properties" in schema:
            props = schema.get("properties") or {}
            return {k: self.value(v, depth + 1) for k, v in props.items()}
        if kind == "array":
            return []
        if kind in ("integer", "number"):
            number = next(self.numbers, "0")
            return int(float(number)) if kind == "integer" else float(number)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return next(self.strings, self.text)


# -- the model ----------------------------------------------------------------------------


def _tool_choice_name(tool_choice: Any) -> str | None:
    """``tool_choice`` in any of LangChain's spellings, as ``None``/"auto"/"required"/"none"/a name."""
    if tool_choice in (None, False, "auto"):
        return None
    if tool_choice in (True, "any", "required"):
        return "required"
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function") or tool_choice
        return str(function.get("name")) if function.get("name") else "required"
    return str(tool_choice)


class FakeChatModel(StreamedChatModel):
    """A chat model that answers from a queue and records every prompt it receives.

    Script replies as text, :class:`FakeReply` (reasoning, failures, delays) or an
    ``AIMessage`` (its ``tool_calls`` stream as tool-call chunks)::

        model = FakeChatModel(replies=[
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "1"}]),
            "The sum is 3.",
        ])
        agent = create_agent(model, tools=[add])
        agent.invoke({"messages": [("user", "1 + 2?")]})
        model.prompts[-1][-1]        # the ToolMessage with add's result
        model.bound_tools[-1]        # the tools the agent bound, OpenAI format

    When the queue is empty it follows fixed rules instead: on a user's turn with
    tools bound it calls one (:func:`choose_tool`, :func:`tool_arguments`); asked
    for JSON (``format="json"`` or a JSON schema, as Ollama takes it) it answers
    :func:`example_json`; otherwise it answers ``echo: <last message>``.

    ``with_structured_output`` works with pydantic classes, TypedDicts and JSON
    schemas, by ``method="function_calling"`` (default: a forced tool call),
    ``"json_schema"`` (``format`` set to the schema) or ``"json_mode"``
    (``format="json"``), with ``include_raw`` as in LangChain.
    """

    replies: list[str | FakeReply | AIMessage] = Field(default_factory=list)
    model: str = "fake"
    num_ctx: int | None = None
    format: Literal["json", ""] | dict[str, Any] | None = None
    """Ask for JSON on every call, as Ollama's ``format`` option ("json" or a schema)."""

    _prompts: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound_tools: list[list[dict[str, Any]]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _ids: Iterator[int] = PrivateAttr(default_factory=lambda: itertools.count(1))

    @property
    def _llm_type(self) -> str:
        return "ollang-fake"

    @property
    def prompts(self) -> list[list[BaseMessage]]:
        """Every list of messages the model was called with, in order."""
        return self._prompts

    @property
    def bound_tools(self) -> list[list[dict[str, Any]]]:
        """Every list of tools passed to :meth:`bind_tools`, in order, in OpenAI format."""
        return self._bound_tools

    def queue(self, *replies: FakeReply | AIMessage | str) -> None:
        """Add replies to the end of the queue."""
        with self._lock:
            self.replies.extend(replies)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (records them in :attr:`bound_tools`).

        Args:
            tools: LangChain tools, functions, pydantic classes, TypedDicts or
                OpenAI-format dicts.
            tool_choice: ``"auto"``/``None``, ``"any"``/``"required"``, ``"none"``,
                or a tool's name: which tool the unscripted rules call.
            **kwargs: Passed to ``bind`` (e.g. ``parallel_tool_calls``; ignored).

        Raises:
            InvalidInputError: ``tool_choice`` names a tool that is not bound.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        choice = _tool_choice_name(tool_choice)
        names = {t["function"]["name"] for t in formatted}
        if choice not in (None, "required", "none") and choice not in names:
            raise InvalidInputError(
                f"tool_choice {choice!r} is not one of the bound tools",
                "bound: " + ", ".join(sorted(names)),
            )
        with self._lock:
            self._bound_tools.append(formatted)
        return self.bind(tools=formatted, tool_choice=choice, **kwargs)

    # -- replies --------------------------------------------------------------------------
    def _next(self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> FakeReply:
        with self._lock:
            self._prompts.append(list(messages))
            reply = self.replies.pop(0) if self.replies else None
        if isinstance(reply, str):
            return FakeReply(reply)
        if isinstance(reply, AIMessage):
            reasoning = reply.additional_kwargs.get("reasoning_content", "")
            return FakeReply(
                reply.text, reasoning=str(reasoning), tool_calls=[dict(c) for c in reply.tool_calls]
            )
        return reply if reply is not None else self._unscripted(messages, kwargs)

    def _unscripted(self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> FakeReply:
        last = messages[-1].text if messages else ""
        tools = kwargs.get("tools") or []
        if tools and messages and isinstance(messages[-1], HumanMessage):
            tool = choose_tool(tools, last, kwargs.get("tool_choice"))
            if tool is not None:
                name = str(_tool_function(tool)["name"])
                return FakeReply(tool_calls=[{"name": name, "args": tool_arguments(tool, last)}])
        wanted = kwargs.get("format", self.format)
        if wanted:
            schema = wanted if isinstance(wanted, Mapping) else None
            return FakeReply(json.dumps(example_json(schema, last), ensure_ascii=False))
        return FakeReply(f"echo: {last}")

    def _chunks(
        self, reply: FakeReply, messages: Sequence[BaseMessage]
    ) -> Iterator[AIMessageChunk]:
        for piece in split_pieces(reply.reasoning):
            yield AIMessageChunk(content="", additional_kwargs={"reasoning_content": piece})
        pieces = split_pieces(reply.text)
        for index, piece in enumerate(pieces):
            if reply.fail_after is not None and index >= reply.fail_after:
                raise reply.error
            yield AIMessageChunk(content=piece)
        if reply.fail_after is not None and reply.fail_after >= len(pieces):
            raise reply.error
        tool_chunks = 0
        for index, call in enumerate(reply.tool_calls):
            # Arguments arrive in two pieces, as real streams split them: consumers must merge.
            args = json.dumps(call.get("args") or {}, ensure_ascii=False)
            half = len(args) // 2
            call_id = call.get("id") or f"call_{next(self._ids)}"
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": call["name"], "args": args[:half], "id": call_id, "index": index}
                ],
            )
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[{"name": None, "args": args[half:], "id": None, "index": index}],
            )
            tool_chunks += 2
        prompt_chars = sum(len(m.text) for m in messages)
        output = len(pieces) + len(split_pieces(reply.reasoning)) + tool_chunks
        metadata: dict[str, Any] = {"model_name": self.model, "done_reason": "stop"}
        if reply.tool_calls:
            metadata["finish_reason"] = "tool_calls"
        yield AIMessageChunk(
            content="",
            response_metadata=metadata,
            usage_metadata={
                "input_tokens": max(1, prompt_chars // 4),
                "output_tokens": output,
                "total_tokens": max(1, prompt_chars // 4) + output,
            },
            chunk_position="last",
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._next(messages, kwargs)
        for chunk in self._chunks(reply, messages):
            if reply.delay:
                time.sleep(reply.delay)
            if run_manager and (chunk.content or chunk.tool_call_chunks):
                run_manager.on_llm_new_token(chunk.text, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        import asyncio

        reply = self._next(messages, kwargs)
        for chunk in self._chunks(reply, messages):
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if run_manager and (chunk.content or chunk.tool_call_chunks):
                await run_manager.on_llm_new_token(
                    chunk.text, chunk=ChatGenerationChunk(message=chunk)
                )
            yield ChatGenerationChunk(message=chunk)
