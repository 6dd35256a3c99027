"""The server's configuration: one object, the core settings plus the server's own.

:class:`ServerSettings` *contains* the core :class:`ollang.settings.Settings`
(:attr:`ServerSettings.core`: ``OLLAMA_HOST``, ``OLLANG_OLLAMA_HOSTS``, ``OLLANG_BACKEND``,
``OLLANG_MODEL``, ``OLLANG_STORE_URL``, the timeouts...), read from the environment
unless given, and adds what only the server has, read from ``OLLANG_SERVER_*`` (or given
as keywords). Five server fields may override a core value for the server alone:
``store_url``, ``ollama_url``, ``ollama_hosts``, ``backend`` and ``default_model``. They
are applied to :attr:`~ServerSettings.core` once, when the settings are built; everything
downstream reads only ``core``.

Each variable has one parsing rule everywhere: the overrides are read by the same
functions as their core variables (:func:`~ollang.settings.parse_ollama_host`,
:func:`~ollang.settings.parse_hosts`, :func:`~ollang.settings.parse_backend`), and
booleans by :func:`~ollang.settings.parse_bool`. Lists may be given in the environment as
JSON (``["a", "b"]``) or comma-separated (``a,b``). A bad value raises
:class:`~ollang.errors.SettingsError` naming the variable (and the keyword). API keys are
held as secrets, so printing or logging the settings never shows them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Self

from ollang.errors import SettingsError
from ollang.settings import (
    HostSpec,
    Settings,
    parse_backend,
    parse_bool,
    parse_hosts,
    parse_ollama_host,
)

__all__ = ["CORE_OVERRIDES", "ServerSettings"]

#: The environment variables' prefix: field ``api_keys`` is ``OLLANG_SERVER_API_KEYS``.
ENV_PREFIX = "OLLANG_SERVER_"

#: The server fields that override a core setting: field name -> the core's attribute.
CORE_OVERRIDES = {
    "store_url": "store_url",
    "ollama_url": "ollama_url",
    "ollama_hosts": "hosts",
    "backend": "backend",
    "default_model": "model",
}

_StrList = Annotated[list[str], NoDecode]
#: A boolean read with the same rule as every other ollang boolean.
_Bool = Annotated[
    bool, BeforeValidator(lambda value, info: parse_bool(value, _variable(info.field_name or "")))
]


def _split(value: Any) -> Any:
    """``a,b`` or ``["a","b"]`` from the environment as a list; lists pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _variable(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _settings_error(err: ValidationError) -> SettingsError:
    """A pydantic error as a :class:`SettingsError` naming the variable and the keyword."""
    problems = err.errors()
    first = problems[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    variable = _variable(field)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, SettingsError):
        message = cause.message
    else:
        message = str(cause) if isinstance(cause, Exception) else str(first["msg"])
    if message.startswith(variable):  # ollang's own parsers name the variable already
        message = f"{variable} ({field}=){message[len(variable) :]}"
    else:
        shown = "" if field in ("api_keys", "admin_keys") else f", got {first.get('input')!r}"
        message = f"{variable} ({field}=): {message}{shown}"
    others = sorted({_variable(str(p["loc"][0])) for p in problems[1:] if p["loc"]} - {variable})
    if others:
        message += f" (also {', '.join(others)})"
    hint = cause.hint if isinstance(cause, SettingsError) else ""
    return SettingsError(message, hint)


class ServerSettings(BaseSettings):
    """Everything ``ollang serve`` can be told, with safe defaults: the core settings
    (:attr:`core`) plus the server's own fields.

    Build it with keyword arguments (tests, :func:`ollang.server.serve`), e.g.
    ``ServerSettings(api_keys=["k"], allow_models=["llama3*"])``, or let it read
    ``OLLANG_SERVER_HOST``, ``OLLANG_SERVER_API_KEYS``... from the environment; a keyword
    wins over the environment. ``core=`` gives the core settings (default:
    :meth:`Settings.from_env() <ollang.settings.Settings.from_env>`); the override fields
    (:data:`CORE_OVERRIDES`), when set, win over it.

    Raises:
        SettingsError: a value cannot be read (named: ``OLLANG_SERVER_PORT (port=): ...``),
            or a core variable cannot (``OLLANG_BACKEND must be ...``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; loopback unless told.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer keys; none means no auth (single local user).",
    )
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys that may manage keys (/admin/keys) and read every key's "
        "usage; they also work as ordinary keys.",
    )
    allow_models: _StrList = Field(
        default_factory=list,
        description="fnmatch patterns of models clients may use; none means every installed one.",
    )
    allow_pull: _Bool = Field(False, description="Whether POST /models/pull is allowed.")
    allow_manage: _Bool = Field(
        False,
        description="Whether clients may manage models through Ollama's API (/api/delete, "
        "/api/copy, /api/create, /api/push, /api/blobs); implies allow_pull.",
    )
    cors_origins: _StrList = Field(
        default_factory=list,
        description="Web origins (https://app.example) whose pages may call the server "
        "(CORS); none means only the server's own page.",
    )
    allowed_hosts: _StrList = Field(
        default_factory=list,
        description="Host names the server answers to besides localhost, IP addresses, "
        "this machine's name and --host (DNS-rebinding protection); '*' means any.",
    )
    store_url: str | None = Field(
        None,
        description="Session store URL (ollang.memory.open_store) for the server; "
        "overrides $OLLANG_STORE_URL (core.store_url).",
    )
    ollama_url: str | None = Field(
        None,
        description="The one Ollama address, in any OLLAMA_HOST form; overrides $OLLAMA_HOST "
        "(core.ollama_url and core.hosts).",
    )
    ollama_hosts: _StrList = Field(
        default_factory=list,
        repr=False,  # an openai+ entry may hold its key=
        description="Model hosts (URL[?priority=N&weight=W&max=M], "
        "openai+http://host:port/v1[?key=K&ctx=N], or 'embedded'); "
        "overrides $OLLANG_OLLAMA_HOSTS and ollama_url (core.hosts).",
    )
    backend: str | None = Field(
        None,
        description="Where models run: auto (Ollama if reachable, else embedded), ollama, "
        "embedded; overrides $OLLANG_BACKEND (core.backend).",
    )
    default_model: str | None = Field(
        None,
        description="Model used when a request names none; overrides $OLLANG_MODEL (core.model).",
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body.")
    max_image_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Largest body of a model request, which may carry images "
        "(each image at most 10 MiB).",
    )
    max_message_chars: int = Field(
        100_000, ge=1, description="Longest message, prompt or system prompt, in characters."
    )
    public_docs: _Bool = Field(
        True,
        description="Serve /docs and /openapi.json without a key (they describe, not hold, data).",
    )
    access_log: _Bool = Field(True, description="uvicorn's per-request access log.")
    otel: _Bool = Field(
        False,
        description="FastAPI's OpenTelemetry instrumentation (needs configured providers).",
    )
    prefix_routing: _Bool = Field(
        True,
        description="Cache-aware routing of requests that name no session (the OpenAI and "
        "Ollama endpoints, /generate): to the host that served the longest prefix of their "
        "messages, while it is up and not full (digests shared by replicas through the store); "
        "false: to the least-loaded host.",
    )
    record_all: _Bool = Field(
        False,
        description="Record the conversations of the OpenAI and Ollama endpoints as sessions "
        "even when the client names none (X-Session-Id); see server/recording.py.",
    )

    queue_policy: Literal["fair", "fifo", "unordered"] = Field(
        "fair",
        description="Who gets a host's freed slot when every host that could serve is at "
        "its max: fair (the key with the least recent busy time over its weight; first "
        "come, first served within a key), fifo (arrival order), unordered (random: "
        "ollang before fair queueing, for comparison).",
    )
    max_queue: int | None = Field(
        1000, ge=0, description="Most requests waiting for a host at once (more: 429)."
    )
    max_queue_per_key: int | None = Field(
        None, ge=0, description="Most requests of one key waiting for a host (more: 429)."
    )

    #: The core settings as given (or read), before the override fields apply.
    _base: Settings | None = PrivateAttr(None)
    #: The core settings the server uses: :attr:`_base` with the overrides applied.
    _core: Settings | None = PrivateAttr(None)

    def __init__(self, core: Settings | None = None, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise _settings_error(err) from None
        self._base = core if core is not None else Settings.from_env()
        self._core = self._apply(self._base)

    @property
    def core(self) -> Settings:
        """The core settings the server runs on (Ollama hosts, backend, default model,
        store, timeouts): the given or environment's, with this object's overrides."""
        if self._core is None:  # built without __init__ (model_construct, model_validate)
            self._base = Settings.from_env()
            self._core = self._apply(self._base)
        return self._core

    def _apply(self, base: Settings) -> Settings:
        """``base`` with the override fields that are set (see :data:`CORE_OVERRIDES`)."""
        core = base
        if self.ollama_hosts:
            core = core.with_hosts(parse_hosts(",".join(self.ollama_hosts), "ollama_hosts"))
        elif self.ollama_url:
            core = core.with_hosts((HostSpec(self.ollama_url),))
        changes: dict[str, Any] = {}
        if self.backend:
            changes["backend"] = self.backend
        if self.default_model:
            changes["model"] = self.default_model
        if self.store_url:
            changes["store_url"] = self.store_url
        return dataclasses.replace(core, **changes) if changes else core

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Self:
        """A copy (pydantic's, unvalidated); an updated override applies to the copy's
        :attr:`core` as it would have at construction."""
        copied = super().model_copy(update=update, deep=deep)
        if update and set(update) & set(CORE_OVERRIDES):
            copied._core = copied._apply(self._base or self.core)
        return copied

    @model_validator(mode="after")
    def _manage_pulls(self) -> Self:
        # Managing models includes pulling them.
        if self.allow_manage:
            self.allow_pull = True
        return self

    @field_validator(
        "api_keys",
        "admin_keys",
        "allow_models",
        "cors_origins",
        "allowed_hosts",
        "ollama_hosts",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("store_url", "default_model")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        # As their core variables: surrounding blanks dropped, empty is unset.
        return (value or "").strip() or None

    @field_validator("ollama_url")
    @classmethod
    def _ollama_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return parse_ollama_host(value, _variable("ollama_url"))

    @field_validator("ollama_hosts")
    @classmethod
    def _ollama_hosts(cls, value: list[str]) -> list[str]:
        return [h.text for h in parse_hosts(",".join(value), _variable("ollama_hosts"))]

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return parse_backend(value, _variable("backend"))

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        from ollang.server.security import allowed_host_entry

        try:
            return [allowed_host_entry(text) for text in value]
        except ValueError as err:
            raise SettingsError(
                str(err),
                "give names as the address bar shows them, without scheme, port or path "
                "(chat.example.com), or * for any name",
            ) from None

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            secret = key.get_secret_value()
            if not secret or secret != secret.strip():
                raise ValueError("API keys must be non-empty and have no surrounding spaces")
            if not all(" " <= char <= "~" for char in secret):
                # HTTP headers carry ASCII only: such a key could never be sent.
                raise SettingsError(
                    "an API key holds a character that is not printable ASCII; "
                    "no client could send it in an HTTP header",
                    "use letters, digits and punctuation only, e.g. a key from "
                    "`openssl rand -hex 32`",
                )
        return value

    def key_values(self) -> list[str]:
        """The API keys in clear (only for comparing them)."""
        return [key.get_secret_value() for key in self.api_keys]

    def admin_key_values(self) -> list[str]:
        """The admin keys in clear (only for comparing them)."""
        return [key.get_secret_value() for key in self.admin_keys]
