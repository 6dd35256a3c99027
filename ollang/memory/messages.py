"""ollang's conventions on LangChain messages, and their plain-dict form.

ollang keeps its own metadata inside ordinary ``langchain_core`` messages so
that they flow through LangChain unchanged:

* ``response_metadata["ollang_status"]``: ``complete``, ``interrupted`` or
  ``error`` (absent means ``complete``);
* ``response_metadata["ollang_created"]``: when the message was first stored,
  float epoch seconds (stores set it when absent);
* ``additional_kwargs["reasoning_content"]``: a model's reasoning ("thinking")
  text, kept apart from the answer (``langchain_ollama``'s convention).

:func:`message_to_dict` and :func:`message_from_dict` convert between messages
and JSON-able dicts. The dicts are what stores keep and what exports contain, so
they are meant to be read by people::

    {"id": "3f2a...", "role": "ai", "content": "Paris.", "reasoning": "The user...",
     "status": "complete", "created": 1732470000.5,
     "usage": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
     "response_metadata": {"model_name": "llama3", "done_reason": "stop"}}

Keys: ``id``, ``role`` (``human``, ``ai``, ``system``, ``tool``, ``function``,
``chat``), ``content`` (a string or a list of content blocks), ``status``,
``created`` (``None`` if never stored) are always present; ``reasoning``,
``name``, ``usage``, ``tool_calls``, ``invalid_tool_calls``, ``tool_call_id``,
``artifact``, ``tool_status``, ``chat_role``, ``response_metadata`` and
``additional_kwargs`` only when they carry something.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast, get_args

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
)

from ollang.errors import InvalidInputError
from ollang.memory.base import TITLE_MAX_CHARS, MessageStatus
from ollang.memory.images import IMAGE_REF, StoredImage, restore_images, split_images

__all__ = [
    "CREATED_KEY",
    "REASONING_KEY",
    "STATUS_KEY",
    "content_text",
    "message_created",
    "message_from_dict",
    "message_model",
    "message_status",
    "message_text",
    "message_to_dict",
    "set_message_status",
    "title_from_text",
]

STATUS_KEY = "ollang_status"
#: The ``status`` column of a streaming reply's snapshot in the SQL stores (never a
#: message's status: it reads back as ``interrupted``, which is what it is if the
#: process that was streaming it is gone). The stores leave such rows out of search.
PARTIAL_STATUS = "partial"
CREATED_KEY = "ollang_created"
REASONING_KEY = "reasoning_content"

_STATUSES: frozenset[str] = frozenset(get_args(MessageStatus))

_CLASSES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "ai": AIMessage,
    "system": SystemMessage,
    "tool": ToolMessage,
    "function": FunctionMessage,
    "chat": ChatMessage,
}

# Message fields handled explicitly; any other field a message class has is
# written under its own name when it differs from its default, so new fields in
# future langchain-core versions survive a round trip instead of being dropped.
_COMMON_FIELDS = frozenset(
    {"content", "additional_kwargs", "response_metadata", "type", "name", "id"}
)
# Field name -> dict key, where the field's own name would be unclear or clash
# with one of ours (ToolMessage.status vs. our status, ChatMessage.role vs. role).
_RENAMED = {"usage_metadata": "usage", "status": "tool_status", "role": "chat_role"}
_UNRENAMED = {key: field for field, key in _RENAMED.items()}


def _validated_status(value: object) -> MessageStatus:
    if value not in _STATUSES:
        raise ValueError(
            f"invalid ollang status {value!r}; expected one of {', '.join(sorted(_STATUSES))}"
        )
    return cast(MessageStatus, value)


def message_status(message: BaseMessage) -> MessageStatus:
    """How the message ended: its ``ollang_status``, ``"complete"`` when absent.

    Raises:
        ValueError: the message carries a status ollang does not know.
    """
    value = message.response_metadata.get(STATUS_KEY) if message.response_metadata else None
    return "complete" if value is None else _validated_status(value)


def set_message_status(message: BaseMessage, status: MessageStatus) -> None:
    """Record ``status`` on the message (in place).

    Raises:
        ValueError: ``status`` is not one of ``complete``, ``interrupted``, ``error``.
    """
    message.response_metadata[STATUS_KEY] = _validated_status(status)


def message_created(message: BaseMessage) -> float | None:
    """When the message was first stored (epoch seconds), or ``None`` if never stored.

    Raises:
        ValueError: ``ollang_created`` is present but not a finite number.
    """
    value = message.response_metadata.get(CREATED_KEY) if message.response_metadata else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"invalid {CREATED_KEY} {value!r}; expected epoch seconds")
    return float(value)


def message_text(message: BaseMessage) -> str:
    """The message's plain text: its string content, or its text blocks joined by newlines.

    Non-text blocks (images, tool calls) contribute nothing. This is what search
    indexes and what titles are made from.
    """
    return content_text(message.content)


def content_text(content: str | list[Any]) -> str:
    """Plain text of message ``content`` (see :func:`message_text`)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def message_model(message: BaseMessage) -> str | None:
    """The model that wrote an AI message, from its response metadata; else ``None``."""
    if message.type not in ("ai", "AIMessageChunk"):
        return None
    meta = message.response_metadata or {}
    model = meta.get("model_name") or meta.get("model")
    return model if isinstance(model, str) and model else None


def title_from_text(text: str) -> str | None:
    """A session title made from a message: its first non-blank line, cut to 60 characters."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:TITLE_MAX_CHARS].rstrip()
    return None


@functools.cache
def _field_defaults(cls: type[BaseMessage]) -> tuple[tuple[str, Any], ...]:
    """The class-specific fields of a message class with their defaults, computed once.

    ``FieldInfo.get_default(call_default_factory=True)`` inspects the factory's
    signature on every call (pydantic 2.11+), which made each store write cost
    tens of microseconds per field. The defaults are only compared against,
    never handed out, so sharing them is safe.
    """
    return tuple(
        (field, info.get_default(call_default_factory=True))
        for field, info in cls.model_fields.items()
        if field not in _COMMON_FIELDS
    )


def message_to_dict(message: BaseMessage, *, copy_values: bool = True) -> dict[str, Any]:
    """A JSON-able dict holding everything in ``message`` (see the module docs).

    Message chunks are converted to their full message class first. The dict
    shares no mutable state with the message unless ``copy_values`` is false (for a
    caller that only reads the dict before the message can change, as a store
    encoding a row: the deep copies were a tenth of a store write).

    Raises:
        ValueError: unknown message type (e.g. ``RemoveMessage``) or invalid
            ollang metadata.
    """
    if isinstance(message, BaseMessageChunk):
        message = message_chunk_to_message(message)
    role = message.type
    if role not in _CLASSES:
        raise ValueError(f"cannot store a message of type {role!r}")
    copied = copy.deepcopy if copy_values else _same
    data: dict[str, Any] = {
        "id": message.id,
        "role": role,
        "content": copied(message.content),
    }
    additional = dict(copied(message.additional_kwargs))
    reasoning = additional.get(REASONING_KEY)
    if isinstance(reasoning, str):  # anything else stays in additional_kwargs, untouched
        data["reasoning"] = additional.pop(REASONING_KEY)
    data["status"] = message_status(message)
    data["created"] = message_created(message)
    if message.name is not None:
        data["name"] = message.name
    for field, default in _field_defaults(type(message)):
        value = getattr(message, field)
        if value != default:  # required fields always differ
            data[_RENAMED.get(field, field)] = copied(value)
    metadata = dict(copied(message.response_metadata))
    metadata.pop(STATUS_KEY, None)
    metadata.pop(CREATED_KEY, None)
    if metadata:
        data["response_metadata"] = metadata
    if additional:
        data["additional_kwargs"] = additional
    return data


def _same(value: Any) -> Any:
    return value


def message_from_dict(data: Mapping[str, Any], *, copy_values: bool = True) -> BaseMessage:
    """The message a :func:`message_to_dict` dict describes (a new object).

    ``ollang_status`` is always set on the result (``complete`` when the dict has
    no status); ``ollang_created`` when the dict has a ``created`` time.
    ``copy_values=False`` skips the deep copies when the caller hands over values
    nobody else holds (a store decoding its own rows: a third of a history read).

    Raises:
        ValueError: unknown role or key, or an invalid status.
    """
    clone = copy.deepcopy if copy_values else _same
    rest = dict(data)
    role = rest.pop("role", None)
    cls = _CLASSES.get(role) if isinstance(role, str) else None
    if cls is None:
        raise ValueError(f"unknown message role {role!r}; expected one of {', '.join(_CLASSES)}")
    kwargs: dict[str, Any] = {
        "content": clone(rest.pop("content", "")),
        "id": rest.pop("id", None),
    }
    additional = clone(dict(rest.pop("additional_kwargs", None) or {}))
    reasoning = rest.pop("reasoning", None)
    if reasoning is not None:
        additional[REASONING_KEY] = reasoning
    metadata = clone(dict(rest.pop("response_metadata", None) or {}))
    metadata[STATUS_KEY] = _validated_status(rest.pop("status", None) or "complete")
    created = rest.pop("created", None)
    if created is not None:
        metadata[CREATED_KEY] = float(created)
    fields = cls.model_fields
    for key, value in rest.items():
        field = _UNRENAMED.get(key, key)
        if field not in fields or field in _COMMON_FIELDS - {"name"}:
            raise ValueError(f"unknown key {key!r} for a {role} message")
        kwargs[field] = clone(value)
    if cls is AIMessage:
        # Passed even when empty: otherwise AIMessage would re-parse tool calls
        # out of additional_kwargs and the round trip would not be exact.
        kwargs.setdefault("tool_calls", [])
        kwargs.setdefault("invalid_tool_calls", [])
    return cls(additional_kwargs=additional, response_metadata=metadata, **kwargs)


def message_from_row(
    row: Sequence[Any],
    message_id: Callable[[Any], str],
    fetch_images: Callable[[list[str]], Mapping[str, bytes]],
) -> BaseMessage:
    """A message as the SQL stores keep it (one row) as a message again.

    ``row`` is ``(id, role, text, exact, reasoning, status, created, extra)``:
    ``exact`` is the content's JSON when ``text`` is not all of it (content blocks),
    ``extra`` the JSON of the keys without a column of their own. ``message_id``
    decodes the stored id; ``fetch_images`` gets the bytes of the images the
    content refers to, by hash (a missing one stays a reference).
    """
    msg_id, role, text, exact, reasoning, status, created, extra = row
    data: dict[str, Any] = json.loads(extra) if extra else {}
    content: str | list[Any] = text
    if exact is not None:
        content = json.loads(exact)
        if isinstance(content, list) and IMAGE_REF in exact:
            content = restore_images(content, fetch_images)
    data.update(
        id=message_id(msg_id),
        role=role,
        content=content,
        status="interrupted" if status == PARTIAL_STATUS else status or "complete",
        created=created,
    )
    if reasoning is not None:
        data["reasoning"] = reasoning
    return message_from_dict(data, copy_values=False)  # everything here was just decoded


class RowMessage(NamedTuple):
    """A message as the SQL stores write it (see :func:`message_for_row`)."""

    #: Its :func:`message_to_dict` form, images replaced by references.
    data: dict[str, Any]
    #: The images taken out of its content, stored once each.
    images: list[StoredImage]
    #: The title a human message gives a session that has none (else ``None``).
    title: str | None
    #: The model that wrote it (:func:`message_model`).
    model: str | None


def message_for_row(message: BaseMessage) -> RowMessage:
    """What a SQL store writes for ``message``; gives it an id (uuid4 hex) if it has none,
    on the caller's object, since the caller may upsert it later."""
    if message.id is None:
        message.id = uuid.uuid4().hex
    data = message_to_dict(message, copy_values=False)  # encoded into a row at once
    title = title_from_text(content_text(data["content"])) if data["role"] == "human" else None
    images: list[StoredImage] = []
    if not isinstance(data["content"], str):
        data["content"], images = split_images(data["content"])
    return RowMessage(data, images, title, message_model(message))


#: Keys of a message dict with a column of their own in the SQL stores (the rest: ``extra``).
_COLUMN_KEYS = ("id", "role", "content", "reasoning", "status", "created")


def compact_json(value: Any) -> str:
    """JSON with compact separators and real UTF-8, not ``\\u`` escapes (every byte counts
    on disk); NUL comes out as ``\\u0000``, which any text column holds."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def message_row(
    data: Mapping[str, Any], encode_id: Callable[[str], Any], *, nul_free: bool = False
) -> tuple[Any, ...]:
    """A message dict (:func:`message_for_row`) as the SQL stores' columns, in the order
    :func:`message_from_row` reads: ``(id, role, text, exact, reasoning, status, created,
    extra)``.

    ``text`` is the plain text (what search indexes), ``exact`` the content's JSON when
    ``text`` is not all of it, ``status`` NULL for ``complete``, ``extra`` the JSON of
    the keys without a column. ``nul_free``: no text column can hold NUL (PostgreSQL), so
    content with NUL is kept exactly in ``exact`` (its text with spaces for NUL) and
    reasoning with NUL goes to ``extra``. Everything that can fail on the message fails
    here, before any transaction.

    Raises:
        InvalidInputError: a value is not valid Unicode, or not JSON (a tool artifact).
    """
    content = data["content"]
    extra = {key: value for key, value in data.items() if key not in _COLUMN_KEYS}
    reasoning = data.get("reasoning")
    if nul_free and reasoning is not None and "\x00" in reasoning:
        extra["reasoning"] = reasoning  # JSON keeps NUL; a text column cannot
        reasoning = None
    try:
        if isinstance(content, str) and not (nul_free and "\x00" in content):
            text, exact = content, None
        else:
            text = content if isinstance(content, str) else content_text(content)
            if nul_free:
                text = text.replace("\x00", " ")
            exact = compact_json(content)
        values = (
            encode_id(data["id"]),
            data["role"],
            text,
            exact,
            reasoning,
            None if data["status"] == "complete" else data["status"],
            data["created"],
            compact_json(extra) if extra else None,
        )
        for value in values:
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInputError(f"a message is not valid Unicode ({err.reason})") from err
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"a message cannot be stored as JSON ({err})") from err
    return values
