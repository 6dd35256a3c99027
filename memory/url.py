"""Choosing a session store from a URL (``OLLANG_STORE_URL``, ``OLLANG_SERVER_STORE_URL``)."""

from __future__ import annotations

import re
from pathlib import Path

from ollang.memory.base import ChatStore
from ollang.memory.errors import UnknownStoreURLError
from ollang.memory.inmemory import InMemoryChatStore
from ollang.memory.sqlite import SQLiteChatStore
from ollang.settings import Settings

__all__ = ["SCHEMES", "open_store"]

#: The URL forms open_store accepts, as named in its error message.
SCHEMES = ["sqlite:///PATH", "memory://"]

# Stores people may reasonably expect; named in the error so it says "not yet"
# rather than just "unknown".
_PLANNED = {"redis", "rediss", "postgres", "postgresql"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _unknown(url: str, scheme: str | None = None) -> UnknownStoreURLError:
    err = UnknownStoreURLError(url, SCHEMES)
    if scheme is not None and scheme.split("+")[0].lower() in _PLANNED:
        err.hint += "; redis:// and postgresql:// stores are not supported yet"
    return err


def open_store(url: str | None = None, *, settings: Settings | None = None) -> ChatStore:
    """Open the session store a URL names.

    Forms:
        * ``None``: ``$OLLANG_STORE_URL`` if set, else the default SQLite database
          (``<data dir>/sessions.db``); ``settings`` stands in for the environment.
        * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (as in
          SQLAlchemy); ``~`` is expanded; ``?mode=ro`` opens read-only.
        * ``memory://``: an :class:`InMemoryChatStore`, gone when the process ends.
        * a plain filesystem path (no scheme): an SQLite database there.

    Raises:
        UnknownStoreURLError: any other URL (``redis://``, ``postgresql://``...).
        NotAnOllangDatabaseError, StoreError: see :class:`SQLiteChatStore`.
    """
    if url is None:
        settings = settings or Settings.from_env()
        if settings.store_url is None:
            return SQLiteChatStore(settings.store_path)
        url = settings.store_url
    if url == "memory://":
        return InMemoryChatStore()
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
