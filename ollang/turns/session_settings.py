"""A session remembers how it was started: its model, system prompt and options.

Every way of resuming a session — the REPL's ``-c``/``--session``, ``ollang ask``,
``/chat`` and ``/chat/stream``, the page — goes through :func:`resolve_settings`: what
the caller gives wins, what it leaves out comes from the session, and the result says
which stored settings were overridden (the CLI shows a dim line; over HTTP the answer's
``model`` field says which model answered). The settings used are then stored with
the session (:meth:`SessionSettings.store`), so the next resume continues as this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ollang.memory import ChatStore, SessionInfo

__all__ = ["SessionSettings", "resolve_settings"]


@dataclass
class SessionSettings:
    """The settings a turn runs with.

    Attributes:
        model: The model (``None``: the caller's default).
        system: The system prompt, or ``None``.
        options: Model options.
        overridden: Human-readable notes of the stored settings the caller changed.
        changed: Whether these differ from what the session stored (or it is new).
    """

    model: str | None
    system: str | None
    options: dict[str, Any] = field(default_factory=dict)
    overridden: list[str] = field(default_factory=list)
    changed: bool = True

    def store(self, store: ChatStore, session_id: str, model: str | None = None) -> None:
        """Remember these settings with the session (``model``: the name it resolved to)."""
        store.update_session(
            session_id,
            model=model or self.model,
            system=self.system or "",
            options=self.options,
        )


def resolve_settings(
    info: SessionInfo | None,
    *,
    model: str | None,
    system: str | None,
    options: Mapping[str, Any] | None,
) -> SessionSettings:
    """The settings of a turn in the session ``info`` describes (``None``: a new session).

    Args:
        info: The stored session, if any.
        model, system: What the caller asks for; ``None`` for "as the session was".
        options: Options the caller sets; merged over the session's.
    """
    given = dict(options or {})
    if info is None:
        return SessionSettings(model, system, given)
    stored_options = dict(info.options or {})
    settings = SessionSettings(
        model=model or info.model,
        system=system if system is not None else info.system,
        options={**stored_options, **given},
    )
    notes = []
    if model and info.model and _base(model) != _base(info.model):
        notes.append(f"model {model} (the session used {info.model})")
    if system is not None and info.system is not None and system != info.system:
        notes.append("a new system prompt (the session had another)")
    changed_options = [
        k for k, v in given.items() if stored_options.get(k) != v and k in stored_options
    ]
    if changed_options:
        notes.append("options " + ", ".join(f"{k}={given[k]}" for k in changed_options))
    settings.overridden = notes
    settings.changed = (
        settings.model != info.model
        or (settings.system or None) != info.system
        or settings.options != stored_options
    )
    return settings


def _base(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
