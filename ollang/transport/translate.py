"""Ollama's JSON and LangChain's messages, translated both ways: the one place that does it.

Ollama's ``/api/chat`` speaks in messages ``{"role", "content", "images", "thinking",
"tool_calls", "tool_name"}`` and answers in stream lines whose last one carries the
answer's statistics. LangChain speaks in :class:`~langchain_core.messages.BaseMessage`:
images as standard content blocks (``{"type": "image", "base64", "mime_type"}``),
reasoning in ``additional_kwargs["reasoning_content"]``, tool calls as ``ToolCall``
dicts, the statistics in ``response_metadata`` and the token counts as
``usage_metadata`` — as ``ChatOllama`` does. Every part of ollang that crosses between
the two calls this module:

* **LangChain -> Ollama**: :func:`to_ollama` / :func:`to_ollama_messages` (the server's
  requests to its hosts, and the Ollama dialect's answers), :func:`tool_call_to_ollama`,
  :func:`done_fields` (a reply's statistics as a final line's fields),
  :func:`to_ollama_line` (a streamed chunk as a stream line: the embedded host's answer);
* **Ollama -> LangChain**: :func:`from_ollama` / :func:`from_ollama_messages` (the Ollama
  dialect's requests, the embedded host's input), :func:`tool_call_from_ollama`,
  :func:`stream_metadata` and :func:`stream_usage` (a final line's statistics), and
  :func:`read_lines`, which reads a batch of stream lines as the
  :data:`~ollang.turns.recorder.StreamDelta` a turn's recorder takes.

Only the JSON's shape is translated here; nothing is sent or received.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata

from ollang.errors import InvalidInputError
from ollang.turns.images import MAX_IMAGES, image_block_from_base64
from ollang.turns.recorder import StreamDelta

__all__ = [
    "DONE_FIELDS",
    "METADATA_FIELDS",
    "Line",
    "done_fields",
    "from_ollama",
    "from_ollama_messages",
    "now_iso",
    "read_lines",
    "stream_metadata",
    "stream_usage",
    "to_ollama",
    "to_ollama_line",
    "to_ollama_messages",
    "tool_call_from_ollama",
    "tool_call_to_ollama",
]

#: A JSON object of Ollama's API (a message, a stream line, a request body).
Line = dict[str, Any]

#: The fields of Ollama's final stream line that describe the whole answer.
DONE_FIELDS = (
    "done_reason",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
#: The fields of the final line a reply keeps in ``response_metadata`` (as ChatOllama does).
METADATA_FIELDS = ("model", "created_at", *DONE_FIELDS)

#: LangChain's message types as Ollama's roles.
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_BAD_ARGUMENTS = ("tool call arguments are not a JSON object", "send arguments as an object")


# -- LangChain -> Ollama ------------------------------------------------------------------
def tool_call_to_ollama(
    call: Mapping[str, Any], *, index: int | None = None, with_id: bool = False
) -> Line:
    """A LangChain tool call as Ollama's ``{"function": {"name", "arguments"}}``.

    Args:
        call: The ``ToolCall`` (``name``, ``args``, ``id``).
        index: Its position, written as ``function.index`` (Ollama's answers carry it).
        with_id: Write the call's ``id`` too (ollang's answers do, for clients to pair
            results with calls; requests to Ollama leave it out).
    """
    function: Line = {"name": call["name"], "arguments": call["args"]}
    if index is not None:
        function = {"index": index, **function}
    return {"id": call.get("id"), "function": function} if with_id else {"function": function}


def _images(content: str | list[Any]) -> list[str]:
    if isinstance(content, str):
        return []
    found = (
        block.get("base64") or block.get("data")
        for block in content
        if isinstance(block, dict) and block.get("type") == "image"
    )
    return [image for image in found if image]


def to_ollama(message: BaseMessage, *, thinking: bool = False, call_ids: bool = False) -> Line:
    """One LangChain message as an Ollama message.

    Args:
        message: Any message; its type gives the role (an unknown one is ``user``).
        thinking: Write an AI message's reasoning as ``thinking`` (answers do; requests
            to a host leave it out, as ollang always has).
        call_ids: Write tool calls with their ids and indexes, as ollang's answers do,
            and a tool result's ``tool_call_id`` (requests to a host leave both out).

    Images (standard ``image`` blocks, or ``data`` ones) become ``images``; a tool
    result names its tool as ``tool_name``.
    """
    entry: Line = {"role": _ROLES.get(message.type, "user"), "content": message.text}
    images = _images(message.content)
    if images:
        entry["images"] = images
    if thinking:
        reasoning = message.additional_kwargs.get("reasoning_content")
        if reasoning:
            entry["thinking"] = reasoning
    calls = getattr(message, "tool_calls", None)
    if calls:
        entry["tool_calls"] = [
            tool_call_to_ollama(call, index=n, with_id=True)
            if call_ids
            else tool_call_to_ollama(call)
            for n, call in enumerate(calls)
        ]
    if message.type == "tool":
        entry["tool_name"] = getattr(message, "name", None) or ""
        if call_ids and isinstance(message, ToolMessage) and message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
    return entry


def to_ollama_line(chunk: BaseMessage, model: str) -> Line:
    """A streamed LangChain message chunk as an ``/api/chat`` stream line (what a host that
    is not Ollama answers in): its text, its reasoning as ``thinking``, and — on the chunk
    that ends the answer (a ``done_reason`` in its metadata) — the metadata as the final
    line's fields."""
    line: Line = {"model": model, "done": False}
    message: Line = {"role": "assistant", "content": chunk.text}
    reasoning = chunk.additional_kwargs.get("reasoning_content")
    if reasoning:
        message["thinking"] = reasoning
    meta = chunk.response_metadata or {}
    if meta.get("done_reason"):
        line.update(meta, done=True, created_at=now_iso())
        line.pop("model_name", None)
    line["message"] = message
    return line


def now_iso() -> str:
    """The time now as Ollama writes ``created_at``."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def to_ollama_messages(messages: Iterable[BaseMessage], *, thinking: bool = False) -> list[Line]:
    """LangChain messages as ``/api/chat``'s ``messages`` (see :func:`to_ollama`)."""
    return [to_ollama(message, thinking=thinking) for message in messages]


def done_fields(metadata: Mapping[str, Any]) -> Line:
    """A reply's statistics (``response_metadata``, or a final line) as a final line's
    fields: ``done_reason``, the durations and the counts that are there."""
    return {key: metadata[key] for key in DONE_FIELDS if key in metadata}


# -- Ollama -> LangChain ------------------------------------------------------------------
def _arguments(value: Any, strict: bool) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value or "{}")
        except ValueError as err:
            if strict:
                raise InvalidInputError(*_BAD_ARGUMENTS) from err
            return {}
        if isinstance(parsed, dict):
            return parsed
    if strict and value is not None:
        raise InvalidInputError(*_BAD_ARGUMENTS)
    return {}


def tool_call_from_ollama(call: Mapping[str, Any], *, strict: bool = False) -> ToolCall:
    """An Ollama tool call as LangChain's (an id is made up when it has none).

    ``arguments`` may be an object or a JSON string of one.

    Args:
        call: ``{"id"?, "function": {"name", "arguments"}}``.
        strict: Arguments that are not an object raise (a client's request), rather than
            being read as none (a model's answer).

    Raises:
        InvalidInputError: ``strict``, and the arguments are not a JSON object.
    """
    function = call.get("function") or {}
    return {
        "name": str(function.get("name", "")),
        "args": _arguments(function.get("arguments"), strict),
        "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        "type": "tool_call",
    }


def _human(text: str, images: Sequence[str] | None, where: str) -> HumanMessage:
    if not images:
        return HumanMessage(text)
    if len(images) > MAX_IMAGES:
        raise InvalidInputError(
            f"{where}.images has {len(images)} images; at most {MAX_IMAGES} per message "
            "are accepted",
            "send fewer images",
        )
    blocks: list[Any] = [{"type": "text", "text": text}] if text else []
    blocks += [
        image_block_from_base64("".join(data.split()), f"{where}.images[{index}]")
        for index, data in enumerate(images)
    ]
    return HumanMessage(blocks)


def from_ollama(message: Mapping[str, Any], *, where: str = "message") -> BaseMessage:
    """One Ollama message as a LangChain message.

    A user message's ``images`` (base64, or ``data:`` URLs) become image blocks, checked
    as every image ollang takes is (:mod:`ollang.turns.images`); an assistant's
    ``thinking`` becomes its ``reasoning_content`` and its ``tool_calls`` LangChain's;
    a tool result keeps ``tool_call_id`` and its ``tool_name`` as the message's name.

    Args:
        message: ``{"role", "content", ...}`` (roles: system, user, assistant, tool).
        where: How errors name the message (``messages[3]``).

    Raises:
        InvalidInputError: an unknown role, tool call arguments that are not an object,
            images that are not images, too many of them.
        ImageTooLargeError: an image over the size limit.
    """
    role = message.get("role") or "user"
    content = str(message.get("content") or "")
    if role == "user":
        return _human(content, message.get("images"), where)
    if role == "system":
        return SystemMessage(content)
    if role == "assistant":
        calls = [
            tool_call_from_ollama(call, strict=True) for call in message.get("tool_calls") or []
        ]
        thinking = message.get("thinking")
        extra = {"reasoning_content": thinking} if thinking else {}
        return AIMessage(content, tool_calls=calls, additional_kwargs=extra)
    if role == "tool":
        return ToolMessage(
            content,
            tool_call_id=str(message.get("tool_call_id") or ""),
            name=message.get("tool_name") or None,
        )
    raise InvalidInputError(
        f"unknown message role {role!r}", "roles: system, user, assistant, tool"
    )


def from_ollama_messages(messages: Iterable[Mapping[str, Any]]) -> list[BaseMessage]:
    """Ollama messages as LangChain messages, in order (errors name ``messages[i]``)."""
    return [
        from_ollama(message, where=f"messages[{index}]") for index, message in enumerate(messages)
    ]


def stream_metadata(line: Mapping[str, Any]) -> dict[str, Any]:
    """A final stream line's fields kept in the reply's ``response_metadata``."""
    return {key: line[key] for key in METADATA_FIELDS if key in line}


def stream_usage(line: Mapping[str, Any]) -> UsageMetadata | None:
    """A final stream line's token counts as ``usage_metadata`` (``None``: it has none)."""
    inputs, outputs = line.get("prompt_eval_count"), line.get("eval_count")
    if inputs is None and outputs is None:
        return None
    return {
        "input_tokens": inputs or 0,
        "output_tokens": outputs or 0,
        "total_tokens": (inputs or 0) + (outputs or 0),
    }


def read_lines(lines: Sequence[Mapping[str, Any]]) -> StreamDelta:
    """A batch of ``/api/chat`` stream lines as one :data:`StreamDelta`.

    The answer and reasoning text joined, tool calls as LangChain's, and — when the batch
    holds the final line — its statistics and token counts. Per batch, not per line: the
    server's hot path calls it once for every piece the socket delivered.
    """
    text = reasoning = ""
    calls: Sequence[ToolCall] = ()
    metadata: dict[str, Any] | None = None
    usage: UsageMetadata | None = None
    for line in lines:
        message = line.get("message")
        if message:
            content = message.get("content")
            if content:
                text += content
            thinking = message.get("thinking")
            if thinking:
                reasoning += thinking
            raw = message.get("tool_calls")
            if raw:
                calls = [*calls, *(tool_call_from_ollama(call) for call in raw)]
        if line.get("done"):
            metadata = {**(metadata or {}), **stream_metadata(line)}
            usage = stream_usage(line) or usage
    return text, reasoning, calls, metadata, usage, len(lines)


# The recorder (a layer below) reads stream lines through this module's reader.
