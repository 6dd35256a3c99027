"""Sessions as Markdown (to read) and JSON (to keep, and to import back exactly)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from langchain_core.messages import BaseMessage

from ollang.errors import InvalidInputError
from ollang.memory.base import ChatStore, SessionInfo
from ollang.memory.errors import SessionExistsError
from ollang.memory.ids import is_valid_session_id
from ollang.memory.messages import message_from_dict, message_status, message_to_dict

__all__ = [
    "EXPORT_FORMAT",
    "MAX_DEPTH",
    "check_export",
    "export_json",
    "export_markdown",
    "import_json",
    "store_import",
]

#: Tag of the JSON export format, checked on import.
EXPORT_FORMAT = "ollang.session.v1"
#: Deepest nesting an import takes (an export of ollang's is a few levels deep; tool call
#: arguments add what the tool's schema has).
MAX_DEPTH = 64
#: Integers an import takes: 64-bit, what Ollama (and most JSON readers) can read.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_MAX_MESSAGE_ID = 256
_ROLE_TITLES = {"human": "User", "ai": "Assistant", "system": "System", "tool": "Tool"}


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def export_markdown(info: SessionInfo, messages: Sequence[BaseMessage]) -> str:
    """A readable Markdown transcript (reasoning as quotes, interrupted answers marked)."""
    lines = [f"# {info.title or info.id}", ""]
    lines.append(f"- session: `{info.id}`")
    if info.model:
        lines.append(f"- model: {info.model}")
    if info.system:
        lines.append(f"- system prompt: {info.system}")
    if info.options:
        lines.append("- options: " + ", ".join(f"{k}={v}" for k, v in sorted(info.options.items())))
    lines += [f"- created: {_when(info.created)}", f"- messages: {len(messages)}", ""]
    for m in messages:
        status = message_status(m)
        mark = "" if status == "complete" else f" ({status})"
        lines += [f"## {_ROLE_TITLES.get(m.type, m.type.title())}{mark}", ""]
        reasoning = m.additional_kwargs.get("reasoning_content")
        if reasoning:
            lines += ["> " + line for line in str(reasoning).splitlines()] + [""]
        lines += [m.text, ""]
        images = [
            b
            for b in (m.content if isinstance(m.content, list) else [])
            if isinstance(b, dict) and b.get("type") == "image"
        ]
        if images:
            lines += [f"*({len(images)} image{'s' if len(images) > 1 else ''} attached)*", ""]
    return "\n".join(lines)


def export_json(info: SessionInfo, messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The whole session as a JSON-able dict; :func:`import_json` restores it exactly."""
    return {
        "format": EXPORT_FORMAT,
        "session": {
            "id": info.id,
            "title": info.title,
            "model": info.model,
            "created": info.created,
            "updated": info.updated,
            "system": info.system,
            "options": info.options,
        },
        "messages": [message_to_dict(m) for m in messages],
    }


def _refuse(where: str, problem: str, hint: str = "") -> InvalidInputError:
    return InvalidInputError(
        f"{where}: {problem}",
        hint or "fix the file (or export the session again); nothing was imported",
    )


def _check_values(value: Any, where: str) -> None:
    """Refuse what no store keeps and no model server reads: NaN and Infinity, integers
    beyond 64 bits, lone surrogates, nesting deeper than :data:`MAX_DEPTH` (iterative:
    no recursion, however deep the data)."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise _refuse(at, "NaN and Infinity are not numbers a session can hold")
        elif isinstance(item, int):
            if not _INT_MIN <= item <= _INT_MAX:
                raise _refuse(at, "a number out of range (integers are at most 64 bits)")
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse(at, "not valid Unicode (a lone surrogate, \\ud800-\\udfff)") from None
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise _refuse(at, f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    name = str(key)
                    _check_values(name, at)
                    shown = name if len(name) <= 40 else name[:40] + "..."
                    children.append((child, f"{at}.{shown}", depth + 1))
            else:
                children = [(child, f"{at}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
        else:  # pragma: no cover - json.loads makes nothing else
            raise _refuse(at, f"a {type(item).__name__} is not JSON")


def _number(value: Any, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise _refuse(where, "not a number (epoch seconds)")


def _text_or_none(value: Any, where: str, what: str = "text") -> None:
    if value is not None and not isinstance(value, str):
        raise _refuse(where, f"must be {what} or null, not {type(value).__name__}")


def check_export(
    data: Any,
    *,
    session_id: str | None = None,
    check_settings: Callable[[dict[str, Any]], None] | None = None,
    check_content: Callable[[Any, str], None] | None = None,
) -> tuple[str, list[BaseMessage], dict[str, Any]]:
    """Check an export as every other way in checks what it takes; nothing is stored.

    Here: the format, the session id, every value (finite numbers, 64-bit integers, valid
    Unicode, at most :data:`MAX_DEPTH` deep), the fields' types, the messages. The
    callers above this layer add theirs: ``check_settings(settings)`` for the model and
    its options, ``check_content(content, where)`` for each message's content (the CLI
    checks images as ``-i`` does).

    Returns:
        The session id to import under, the messages, and the session's settings
        (``title``, ``model``, ``system``, ``options``).

    Raises:
        InvalidInputError: not an export, or a field no other entry would accept,
            named (``messages[3].content[1]: image URLs are not supported; ...``).
    """
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInputError(
            "not an ollang session export", f"expected format {EXPORT_FORMAT!r}"
        )
    session = data.get("session")
    raw_messages = data.get("messages")
    if not isinstance(session, dict) or not isinstance(raw_messages, list):
        raise InvalidInputError("the export has no session or no messages list")
    _check_values(session, "session")
    target = _import_target(session_id or session.get("id"))
    settings = _session_settings(session)
    if check_settings is not None:
        check_settings(settings)
    messages = [
        _message(raw, f"messages[{index}]", check_content) for index, raw in enumerate(raw_messages)
    ]
    return target, messages, settings


def _import_target(target: Any) -> str:
    """The session id an import goes under (``--as ID``, else the export's)."""
    if not isinstance(target, str) or not target:
        raise InvalidInputError("the export has no session id", "pass one with --as ID")
    if not is_valid_session_id(target):
        shown = target[:60] + ("..." if len(target) > 60 else "")
        raise InvalidInputError(
            f"invalid session id {shown!r} in the export", "pass one with --as ID"
        )
    return target


def _session_settings(session: dict[str, Any]) -> dict[str, Any]:
    """The export's session fields checked; its settings (title, model, system, options)."""
    for key in ("title", "model", "system"):
        _text_or_none(session.get(key), f"session.{key}")
    for key in ("created", "updated"):
        _number(session.get(key), f"session.{key}")
    options = session.get("options")
    if options is not None and not isinstance(options, dict):
        raise _refuse("session.options", "must be an object of model options or null")
    return {
        "title": session.get("title"),
        "model": session.get("model"),
        "system": session.get("system"),
        "options": options,
    }


def _message(raw: Any, where: str, check_content: Callable[[Any, str], None] | None) -> BaseMessage:
    """One exported message, checked (``where``: ``messages[N]``, for the errors)."""
    if not isinstance(raw, dict):
        raise _refuse(where, "not a message object")
    _check_values(raw, where)
    _number(raw.get("created"), f"{where}.created")
    message_id = raw.get("id")
    if message_id is not None and (
        not isinstance(message_id, str) or not 0 < len(message_id) <= _MAX_MESSAGE_ID
    ):
        raise _refuse(f"{where}.id", f"must be text of 1-{_MAX_MESSAGE_ID} characters")
    content = raw.get("content", "")
    if not isinstance(content, (str, list)):
        raise _refuse(f"{where}.content", "must be text or a list of content blocks")
    if check_content is not None:
        check_content(content, f"{where}.content")
    try:
        return message_from_dict(raw)
    except (ValueError, TypeError, KeyError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _refuse(where, f"malformed: {problem}") from err


def import_json(
    store: ChatStore,
    data: Any,
    *,
    session_id: str | None = None,
    check_settings: Callable[[dict[str, Any]], None] | None = None,
    check_content: Callable[[Any, str], None] | None = None,
) -> str:
    """Store an exported session, checked first (:func:`check_export`); returns its id.

    All of it is written in one transaction (:meth:`ChatStore.batch`), or nothing.

    Args:
        store: Where to import.
        data: The parsed JSON export.
        session_id: Import under this id instead of the export's.
        check_settings: Checks the session's settings (the CLI passes the check of its
            model options, so an imported session resumes as any other).
        check_content: Checks a message's content (the CLI passes its image checks).

    Raises:
        InvalidInputError: the data is not an ollang session export, or holds a value no
            other entry would accept (the field is named).
        SessionExistsError: a session with that id exists (nothing is overwritten).
    """
    target, messages, settings = check_export(
        data, session_id=session_id, check_settings=check_settings, check_content=check_content
    )
    return store_import(store, target, messages, settings)


def store_import(
    store: ChatStore, target: str, messages: list[BaseMessage], settings: dict[str, Any]
) -> str:
    """Store what :func:`check_export` returned, in one transaction; returns the id.

    Raises:
        SessionExistsError: a session ``target`` exists (nothing is written).
    """
    with store.batch():
        if store.get_session(target) is not None:
            raise SessionExistsError(target, "import it under another id with --as NEW_ID")
        store.add_messages(target, messages)
        store.update_session(
            target,
            title=settings["title"],
            model=settings["model"],
            system=settings["system"],
            options=settings["options"],
        )
    return target


def dumps(data: dict[str, Any]) -> str:
    """JSON text of an export."""
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
