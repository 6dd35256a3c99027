"""What several commands share: settings, option parsing, session ids, the store, the model."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ollang.errors import InvalidInputError, SettingsError
from ollang.settings import HostSpec, Settings, parse_hosts

if TYPE_CHECKING:
    from langchain_core.messages import HumanMessage

    from ollang.memory import ChatStore
    from ollang.routing.backend import RoutedModel
    from ollang.transport.manage import ModelManager
    from ollang.turns.session_settings import SessionSettings

__all__ = [
    "CliSettings",
    "TurnArgs",
    "build_model",
    "model_manager",
    "new_session_id",
    "open_default_store",
    "parse_options",
    "validate_session_id",
]


@dataclass
class CliSettings:
    """This invocation's settings; one lives on the typer context (``ctx.obj``).

    The environment's :class:`~ollang.settings.Settings`, read once on first use, with the
    command-line options that stand for a setting applied over it (they win):
    ``--ollama-host`` for ``$OLLANG_OLLAMA_HOSTS`` / ``$OLLAMA_HOST``. The root command
    makes it; a command's own ``--ollama-host`` applies over the root's. Commands are
    handed :attr:`settings`; nothing is kept between invocations.

    Attributes:
        hosts: The hosts given with ``--ollama-host`` (none: the environment's).
    """

    hosts: tuple[HostSpec, ...] = ()
    _env: Settings | None = field(default=None, repr=False)

    def use_hosts(self, values: Sequence[str]) -> None:
        """Use these hosts (each ``URL[?priority=N&weight=W&max=M]`` in any ``OLLAMA_HOST``
        form, or ``embedded``) instead of the environment's.

        Raises:
            InvalidInputError: a value cannot be read as a host.
        """
        try:
            self.hosts = parse_hosts(",".join(values), "--ollama-host")
        except SettingsError as err:
            raise InvalidInputError(err.message, "e.g. --ollama-host 127.0.0.1:11434") from err

    @property
    def settings(self) -> Settings:
        """The environment's settings (read on first use) with the options applied.

        Raises:
            SettingsError: an environment variable cannot be read (named).
        """
        if self._env is None:
            self._env = Settings.from_env()
        return self._env.with_hosts(self.hosts) if self.hosts else self._env


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
    if key == "format":
        from ollang.chains.structured import parse_format

        return key, parse_format(value)
    if key in ("stop", "keep_alive"):
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


def open_default_store(settings: Settings) -> ChatStore:
    """The session store: ``$OLLANG_STORE_URL``, else SQLite under ``$OLLANG_HOME``."""
    from ollang.memory import open_store

    return open_store(settings.store_url, settings=settings)


def model_manager(settings: Settings) -> ModelManager:
    """Model management on the configured (first) Ollama server."""
    from ollang.transport.manage import ModelManager

    return ModelManager(settings=settings)


def build_model(
    settings: Settings, backend: str | None, model: str | None, options: dict[str, Any]
) -> RoutedModel:
    """A chat model for ``model`` over the configured hosts (with its name and hosts); a
    notice goes to stderr when ``auto`` answers with the embedded default model.

    Raises:
        NoHostError, ModelNotFoundError: as :func:`~ollang.routing.backend.routed_chat_model`.
    """
    from ollang.routing.backend import routed_chat_model

    routed = routed_chat_model(model, backend=backend, settings=settings, **options)
    if routed.notice:
        sys.stderr.write(routed.notice + "\n")
        sys.stderr.flush()
    return routed


@dataclass
class TurnArgs:
    """What a chat command (``ask``, ``chat``, ``run``) was asked for on its command line."""

    model: str | None
    system: str | None
    session: str | None
    cont: bool
    options: list[str]
    images: list[str]
    format: str | None = None
    schema: str | None = None
    think: bool = False
    backend: str | None = None

    def model_options(self) -> dict[str, Any]:
        """``-o`` options, ``--think``, and ``--format``/``--schema`` as ``format``.

        Raises:
            InvalidInputError: a bad option, or both --format and --schema.
        """
        options = parse_options(self.options)
        if self.think:
            options["think"] = True
        wanted = self.answer_format()
        if wanted is not None:
            options["format"] = wanted
        return options

    def answer_format(self) -> str | dict[str, Any] | None:
        """The structured answer asked for: ``"json"``, a schema, or ``None``."""
        if self.format is not None and self.schema is not None:
            raise InvalidInputError("use either --format or --schema, not both")
        if self.format is not None:
            if self.format.strip().lower() != "json":
                raise InvalidInputError(
                    f"--format takes json, got {self.format!r}", "for a schema use --schema"
                )
            return "json"
        if self.schema is not None:
            from ollang.chains.structured import parse_schema

            return parse_schema(self.schema)
        return None

    def session_id(self, store: ChatStore) -> str | None:
        """The session named by ``--session``, or the most recent one with ``-c``."""
        if self.session and self.cont:
            raise InvalidInputError("use either --session or --continue, not both")
        if self.session:
            return validate_session_id(self.session)
        if self.cont:
            recent = store.list_sessions()
            return recent[0].id if recent else new_session_id()
        return None


def human_message(text: str, images: Sequence[str]) -> HumanMessage:
    """The user's message: the text, and the image files attached (checked, base64).

    Raises:
        InvalidInputError: a missing file (named) or a file that is not an image (exit 2).
    """
    from langchain_core.messages import HumanMessage

    from ollang.turns.images import MAX_IMAGES, image_block_from_path

    if not images:
        return HumanMessage(text)
    if len(images) > MAX_IMAGES:
        raise InvalidInputError(f"at most {MAX_IMAGES} images per message, got {len(images)}")
    blocks: list[str | dict[str, Any]] = [{"type": "text", "text": text}]
    blocks += [image_block_from_path(path) for path in images]
    return HumanMessage(blocks)


def session_settings(
    store: ChatStore | None, session_id: str | None, args: TurnArgs, options: dict[str, Any]
) -> SessionSettings:
    """The settings of this turn: the command line's, else the session's (see
    :mod:`ollang.turns.session_settings`); a dim line says what overrode the session's."""
    from ollang.turns.session_settings import resolve_settings

    info = store.get_session(session_id) if store is not None and session_id else None
    settings = resolve_settings(info, model=args.model, system=args.system, options=options)
    for note in settings.overridden:
        dim(f"using {note}")
    return settings


def dim(text: str) -> None:
    """A dim line on stderr (plain on a pipe): notes that are not the answer."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\x1b[2m{text}\x1b[0m\n")
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()
