"""What several commands share: option parsing, session ids, the store, the model."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

from chains.errors import InvalidInputError

__all__ = [
    "build_model",
    "new_session_id",
    "open_default_store",
    "parse_options",
    "validate_session_id",
]

_OPTION_TYPES: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "seed": int,
    "num_ctx": int,
    "num_predict": int,
    "repeat_penalty": float,
    "repeat_last_n": int,
    "mirostat": int,
    "mirostat_eta": float,
    "mirostat_tau": float,
    "num_gpu": int,
    "num_thread": int,
    "tfs_z": float,
}


def parse_option(key: str, value: str) -> tuple[str, Any]:
    """One ``KEY VALUE`` model option, typed (``stop`` may repeat, ``think`` is a flag or level)."""
    key = key.strip().lower().replace("-", "_")
    if key in _OPTION_TYPES:
        try:
            return key, _OPTION_TYPES[key](value)
        except ValueError as err:
            raise InvalidInputError(
                f"option {key} needs a number, got {value!r}", "e.g. -o temperature=0.2"
            ) from err
    if key == "think":
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return key, True
        if lowered in ("0", "false", "no", "off"):
            return key, False
        return key, lowered  # a level: low, medium, high
    if key in ("stop", "keep_alive", "format"):
        return key, value
    raise InvalidInputError(
        f"unknown option {key!r}",
        "known: " + ", ".join(sorted([*_OPTION_TYPES, "stop", "keep_alive", "format", "think"])),
    )


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``-o KEY=VALUE`` options as a dict (``stop`` collects into a list)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"option {pair!r} is not KEY=VALUE", "e.g. -o num_ctx=8192")
        name, typed = parse_option(key, value)
        if name == "stop":
            options.setdefault("stop", []).append(typed)
        else:
            options[name] = typed
    return options


def validate_session_id(session_id: str) -> str:
    """A session id that is safe anywhere it is shown or used (no paths, no control chars)."""
    from memory.ids import SESSION_ID_HINT, is_valid_session_id

    if not is_valid_session_id(session_id):
        raise InvalidInputError(
            f"invalid session id {session_id[:60]!r}{'...' if len(session_id) > 60 else ''}",
            SESSION_ID_HINT,
        )
    return session_id


def new_session_id() -> str:
    """A fresh, readable, sortable session id like ``20261124-183000-a1b2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def open_default_store() -> Any:
    """The session store (SQLite under ``$OLLANG_HOME``)."""
    from memory import open_store

    return open_store()


def build_model(backend: str | None, model: str | None, options: dict[str, Any]) -> Any:
    """A chat model on the chosen backend; a notice goes to stderr when ``auto`` falls back."""
    from chains.backend import choose_backend, make_backend_chat_model

    choice = choose_backend(backend, model=model)
    if choice.notice:
        sys.stderr.write(choice.notice + "\n")
        sys.stderr.flush()
    return make_backend_chat_model(choice, model, **options)


def model_label(model: Any) -> str:
    """The name a chat model is shown under."""
    return str(getattr(model, "model", None) or "model")
