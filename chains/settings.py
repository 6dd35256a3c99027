"""Configuration from the environment, parsed in one place.

Variables:
    OLLAMA_HOST: where Ollama listens, in any form Ollama itself accepts
        (``host``, ``host:port``, ``:port``, ``http://host:port``, ``https://host``).
    OLLANG_MODEL: default model name (``llama3``, as in Ollama's tutorials).
    OLLANG_HOME: data directory (``sessions.db`` lives there); else the XDG data dir.
    OLLANG_CONNECT_TIMEOUT / OLLANG_READ_TIMEOUT: seconds. Connecting must fail
        fast; reading must allow a model to load for a minute before its first token.
    OLLANG_DEBUG: ``1`` shows tracebacks in the CLI.

This module uses only the standard library so that ``ollang --help`` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_OLLAMA_URL",
    "Settings",
    "data_dir",
    "default_store_path",
    "parse_ollama_host",
]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3"
DEFAULT_PORT = 11434


def parse_ollama_host(value: str | None) -> str:
    """Normalise an ``OLLAMA_HOST`` value to a base URL such as ``http://host:port``.

    Mirrors Ollama's own parsing (``ollama._client._parse_host``): the scheme
    defaults to ``http`` and the port to 11434; an explicit ``http://`` or
    ``https://`` without a port means 80 or 443; an empty host means
    127.0.0.1; ``0.0.0.0`` (a bind address) is reached via 127.0.0.1.

    Raises:
        ValueError: if the value cannot be read as a host.
    """
    raw = (value or "").strip()
    if not raw:
        return DEFAULT_OLLAMA_URL
    explicit_scheme = "://" in raw
    if not explicit_scheme:
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"OLLAMA_HOST has an unsupported scheme: {value!r}")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"OLLAMA_HOST has an invalid port: {value!r}") from err
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if port is None:
        port = {"https": 443}.get(scheme, 80 if explicit_scheme else DEFAULT_PORT)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from err
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def data_dir() -> Path:
    """Where ollang keeps its data: ``$OLLANG_HOME``, else ``$XDG_DATA_HOME/ollang``."""
    home = os.environ.get("OLLANG_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "ollang"


def default_store_path() -> Path:
    """The default SQLite session database: ``<data dir>/sessions.db``."""
    return data_dir() / "sessions.db"


@dataclass(frozen=True)
class Settings:
    """Everything ollang reads from the environment, resolved once.

    Use :meth:`from_env`; tests construct it directly.
    """

    ollama_url: str = DEFAULT_OLLAMA_URL
    model: str = DEFAULT_MODEL
    home: Path = field(default_factory=data_dir)
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    debug: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from ``os.environ``."""
        return cls(
            ollama_url=parse_ollama_host(os.environ.get("OLLAMA_HOST")),
            model=os.environ.get("OLLANG_MODEL", "").strip() or DEFAULT_MODEL,
            home=data_dir(),
            connect_timeout=_float_env("OLLANG_CONNECT_TIMEOUT", 5.0),
            read_timeout=_float_env("OLLANG_READ_TIMEOUT", 120.0),
            debug=os.environ.get("OLLANG_DEBUG", "") not in ("", "0", "false"),
        )

    @property
    def store_path(self) -> Path:
        """The SQLite session database under :attr:`home`."""
        return self.home / "sessions.db"
