"""The server's configuration: one pydantic-settings object, read from ``OLLANG_SERVER_*``.

What the server shares with the rest of ollang (Ollama's address, the backend, the
default model, the store) is left ``None`` here unless ``OLLANG_SERVER_*`` (or
``ollang serve``'s options) set it, and then comes from :class:`ollang.settings.Settings`
(``OLLAMA_HOST``, ``OLLANG_BACKEND``, ``OLLANG_MODEL``, ``OLLANG_STORE_URL``), so each
variable has one meaning and one parsing rule everywhere.

Lists may be given in the environment as JSON (``["a", "b"]``) or comma-separated
(``a,b``). Booleans take the spellings of :func:`ollang.settings.parse_bool`. API keys
are held as secrets, so printing or logging the settings never shows them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ollang.settings import BACKENDS, parse_bool

__all__ = ["ServerSettings"]

_StrList = Annotated[list[str], NoDecode]
#: A boolean read with the same rule as every other ollang boolean.
_Bool = Annotated[bool, BeforeValidator(lambda value: parse_bool(value, "a boolean setting"))]


def _split(value: Any) -> Any:
    """``a,b`` or ``["a","b"]`` from the environment as a list; lists pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ServerSettings(BaseSettings):
    """Everything ``ollang serve`` can be told, with safe defaults.

    Build it with keyword arguments (tests, :func:`server.serve`) or let it read
    ``OLLANG_SERVER_HOST``, ``OLLANG_SERVER_API_KEYS``... from the environment.
    """

    model_config = SettingsConfigDict(env_prefix="OLLANG_SERVER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; loopback unless told.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer keys; none means no auth (single local user).",
    )
    allow_models: _StrList = Field(
        default_factory=list,
        description="fnmatch patterns of models clients may use; none means every installed one.",
    )
    allow_pull: _Bool = Field(False, description="Whether POST /models/pull is allowed.")
    cors_origins: _StrList = Field(
        default_factory=list, description="Origins allowed by CORS; none means CORS off."
    )
    store_url: str | None = Field(
        None,
        description="Session store URL (ollang.memory.open_store); default: $OLLANG_STORE_URL.",
    )
    ollama_url: str | None = Field(
        None, description="Ollama address in any OLLAMA_HOST form; default: $OLLAMA_HOST."
    )
    ollama_hosts: _StrList = Field(
        default_factory=list,
        description="Ollama hosts (URL[?priority=N&weight=W&max=M], or 'embedded'); "
        "default: $OLLANG_OLLAMA_HOSTS, else ollama_url / $OLLAMA_HOST.",
    )
    backend: str | None = Field(
        None,
        description="Where models run: auto (Ollama if reachable, else embedded), ollama, "
        "embedded; default: $OLLANG_BACKEND.",
    )
    default_model: str | None = Field(
        None, description="Model used when a request names none; default: $OLLANG_MODEL."
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
    models_cache_seconds: float = Field(
        5.0, ge=0, description="How long the installed-model list is reused."
    )
    chain_cache_size: int = Field(
        32, ge=1, description="Chat models (per model and options) kept with their HTTP clients."
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
    record_all: _Bool = Field(
        False,
        description="Record the conversations of the OpenAI and Ollama endpoints as sessions "
        "even when the client names none (X-Session-Id); see server/recording.py.",
    )

    @field_validator("api_keys", "allow_models", "cors_origins", "ollama_hosts", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().lower()
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {value!r}")
        return name

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            secret = key.get_secret_value()
            if not secret or secret != secret.strip():
                raise ValueError("API keys must be non-empty and have no surrounding spaces")
        return value

    def key_values(self) -> list[str]:
        """The API keys in clear (only for comparing them)."""
        return [key.get_secret_value() for key in self.api_keys]
