"""Sessions as Markdown (to read) and JSON (to keep, and to import back exactly)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from langchain_core.messages import BaseMessage

from ollang.errors import InvalidInputError
from ollang.memory.base import ChatStore, SessionInfo
from ollang.memory.errors import SessionExistsError
from ollang.memory.ids import is_valid_session_id
from ollang.memory.messages import message_from_dict, message_status, message_to_dict

__all__ = ["EXPORT_FORMAT", "export_json", "export_markdown", "import_json"]

#: Tag of the JSON export format, checked on import.
EXPORT_FORMAT = "ollang.session.v1"
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


def import_json(store: ChatStore, data: Any, *, session_id: str | None = None) -> str:
    """Store an exported session; returns its id.

    Raises:
        InvalidInputError: the data is not an ollang session export.
        SessionExistsError: a session with that id exists (nothing is overwritten).
    """
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInputError(
            "not an ollang session export", f"expected format {EXPORT_FORMAT!r}"
        )
    session = data.get("session")
    raw_messages = data.get("messages")
    if not isinstance(session, dict) or not isinstance(raw_messages, list):
        raise InvalidInputError("the export has no session or no messages list")
    target = session_id or session.get("id")
    if not isinstance(target, str) or not target:
        raise InvalidInputError("the export has no session id", "pass one with --as ID")
    if not is_valid_session_id(target):
        shown = target[:60] + ("..." if len(target) > 60 else "")
        raise InvalidInputError(
            f"invalid session id {shown!r} in the export", "pass one with --as ID"
        )
    try:
        messages = [message_from_dict(m) for m in raw_messages]
    except (ValueError, TypeError, KeyError) as err:
        raise InvalidInputError(f"a message in the export is malformed: {err}") from err
    if store.get_session(target) is not None:
        raise SessionExistsError(target, "import it under another id with --as NEW_ID")
    store.add_messages(target, messages)
    system, options = session.get("system"), session.get("options")
    store.update_session(
        target,
        title=session.get("title"),
        model=session.get("model"),
        system=system if isinstance(system, str) else None,
        options=options if isinstance(options, dict) else None,
    )
    return target


def dumps(data: dict[str, Any]) -> str:
    """JSON text of an export."""
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
