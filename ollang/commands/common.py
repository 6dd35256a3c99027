"""What several commands share: settings, option parsing, session ids, the store, the model."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ollang.errors import InvalidInputError, SettingsError
from ollang.settings import HostSpec, Settings, parse_hosts

if TYPE_CHECKING:
    from ollang.chains.backend import RoutedModel
    from ollang.chains.manage import ModelManager
    from ollang.memory import ChatStore

__all__ = [
    "build_model",
    "cli_settings",
    "model_manager",
    "new_session_id",
    "ollama_hosts_override",
    "open_default_store",
    "parse_options",
    "set_ollama_hosts",
    "validate_session_id",
]

# Command-line options that stand for a setting (``--ollama-host`` for OLLAMA_HOST) win
# over the environment; they are applied to the one Settings object every command uses.
_overrides: dict[str, Any] = {}
_settings: Settings | None = None


def set_ollama_hosts(values: Sequence[str]) -> None:
    """Use these hosts (each ``URL[?priority=N&weight=W&max=M]`` in any ``OLLAMA_HOST``
    form, or ``embedded``) instead of ``$OLLANG_OLLAMA_HOSTS`` / ``$OLLAMA_HOST``.

    Raises:
        InvalidInputError: a value cannot be read as a host.
    """
    global _settings
    try:
        hosts = parse_hosts(",".join(values), "--ollama-host")
    except SettingsError as err:
        raise InvalidInputError(err.message, "e.g. --ollama-host 127.0.0.1:11434") from err
    _overrides["hosts"] = hosts
    _settings = None


def ollama_hosts_override() -> tuple[HostSpec, ...]:
    """The hosts given with ``--ollama-host``, if any."""
    hosts: tuple[HostSpec, ...] = _overrides.get("hosts", ())
    return hosts


def cli_settings() -> Settings:
    """This invocation's settings: the environment, read once, plus command-line overrides."""
    global _settings
    if _settings is None:
        settings = Settings.from_env()
        hosts = _overrides.get("hosts")
        _settings = settings.with_hosts(hosts) if hosts else settings
    return _settings


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
    from ollang.memory.ids import SESSION_ID_HINT, is_valid_session_id

    if not is_valid_session_id(session_id):
        raise InvalidInputError(
            f"invalid session id {session_id[:60]!r}{'...' if len(session_id) > 60 else ''}",
            SESSION_ID_HINT,
        )
    return session_id


def new_session_id() -> str:
    """A fresh, readable, sortable session id like ``20261124-183000-a1b2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def open_default_store() -> ChatStore:
    """The session store: ``$OLLANG_STORE_URL``, else SQLite under ``$OLLANG_HOME``."""
    from ollang.memory import open_store

    settings = cli_settings()
    return open_store(settings.store_url, settings=settings)


def model_manager() -> ModelManager:
    """Model management on the configured Ollama server."""
    from ollang.chains.manage import ModelManager

    return ModelManager(settings=cli_settings())


def build_model(backend: str | None, model: str | None, options: dict[str, Any]) -> RoutedModel:
    """A chat model for ``model`` over the configured hosts (with its name and hosts); a
    notice goes to stderr when ``auto`` answers with the embedded default model.

    Raises:
        NoHostError, ModelNotFoundError: as :func:`~ollang.chains.backend.routed_chat_model`.
    """
    from ollang.chains.backend import routed_chat_model

    routed = routed_chat_model(model, backend=backend, settings=cli_settings(), **options)
    if routed.notice:
        sys.stderr.write(routed.notice + "\n")
        sys.stderr.flush()
    return routed
