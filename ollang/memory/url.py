"""Choosing a session store from a URL (``OLLANG_STORE_URL``, ``OLLANG_SERVER_STORE_URL``)."""

from __future__ import annotations

import re
from pathlib import Path

from ollang.memory.base import ChatStore
from ollang.memory.errors import StoreError, UnknownStoreURLError
from ollang.memory.inmemory import InMemoryChatStore
from ollang.memory.sqlite.store import SQLiteChatStore
from ollang.settings import Settings

__all__ = ["SCHEMES", "open_store", "redact_url"]

#: The URL forms open_store accepts, as named in its error message.
SCHEMES = ["sqlite:///PATH", "memory://", "postgresql://USER:PASSWORD@HOST:PORT/DB"]

# Stores people may reasonably expect; named in the error so it says "not yet"
# rather than just "unknown".
_PLANNED = {"redis", "rediss"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _unknown(url: str, scheme: str | None = None) -> UnknownStoreURLError:
    err = UnknownStoreURLError(redact_url(url), SCHEMES)
    family = scheme.split("+")[0].lower() if scheme is not None else None
    if family in _PLANNED:
        err.hint += "; redis:// stores are not supported yet"
    elif family in _POSTGRES:
        err.hint += "; for PostgreSQL write postgresql:// (psycopg 3 is the driver)"
    return err


# -- PostgreSQL (issue 15) ---------------------------------------------------------
_POSTGRES = {"postgres", "postgresql"}
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL as it may be shown or logged: its password replaced by ``***``.

    Covers ``scheme://user:PASSWORD@host`` and a ``password=`` query parameter;
    anything else (paths, ``memory://``) comes back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, qmark, query = rest.partition("?")
    # The last "@" before the query ends the user info (a raw "@" or "/" may be in
    # the password; a database name has neither).
    at = head.rfind("@")
    if at >= 0 and ":" in head[:at]:
        head = head[: head.index(":")] + ":***" + head[at:]
    return _PASSWORD_PARAM.sub(r"\1***", f"{scheme}://{head}{qmark}{query}")


def _open_postgres(url: str) -> ChatStore:
    try:
        from ollang.memory.postgres.store import PostgresChatStore  # psycopg: an optional extra
    except ImportError as err:
        raise StoreError(
            f"cannot open {redact_url(url)}: PostgreSQL support is not installed ({err.name})",
            'pip install "ollang[postgres]"',
        ) from err
    return PostgresChatStore(url)


# -- end PostgreSQL ------------------------------------------------------------------


def open_store(url: str | None = None, *, settings: Settings | None = None) -> ChatStore:
    """Open the session store a URL names.

    Forms:
        * ``None``: ``$OLLANG_STORE_URL`` if set, else the default SQLite database
          (``<data dir>/sessions.db``); ``settings`` stands in for the environment.
        * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (as in
          SQLAlchemy); ``~`` is expanded; ``?mode=ro`` opens read-only.
        * ``memory://``: an :class:`InMemoryChatStore`, gone when the process ends.
        * a plain filesystem path (no scheme): an SQLite database there.
        * ``postgresql://user:password@host:port/db`` (or ``postgres://``): a
          :class:`~memory.postgres.PostgresChatStore` (the ``postgres`` extra);
          ``?schema=NAME`` picks the schema (default ``ollang``).

    Raises:
        UnknownStoreURLError: any other URL (``redis://``, ``ftp://``...).
        NotAnOllangDatabaseError, StoreError: see :class:`SQLiteChatStore` and
            :class:`~memory.postgres.PostgresChatStore` (``StoreUnavailableError``
            when PostgreSQL does not answer).
    """
    if url is None:
        settings = settings or Settings.from_env()
        if settings.store_url is None:
            return SQLiteChatStore(settings.store_path)
        url = settings.store_url
    if url == "memory://":
        return InMemoryChatStore()
    if url.startswith(("postgresql://", "postgres://")):
        return _open_postgres(url)
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :]
        path, _, query = rest.partition("?")
        if not path or path == ":memory:" or query not in ("", "mode=ro", "mode=rw"):
            raise _unknown(url)
        return SQLiteChatStore(Path(path).expanduser(), read_only=query == "mode=ro")
    match = _SCHEME.match(url)
    if match or url.startswith(("sqlite:", "memory:")) or not url.strip():
        raise _unknown(url, match.group(1) if match else None)
    return SQLiteChatStore(Path(url).expanduser())
