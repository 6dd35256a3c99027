"""Choosing a session store from a URL (``--db``, ``OLLANG_STORE`` and the like)."""

from __future__ import annotations

import re
from pathlib import Path

from chains.errors import UnknownStoreURLError
from chains.settings import default_store_path
from memory.base import ChatStore
from memory.inmemory import InMemoryChatStore
from memory.sqlite import SQLiteChatStore

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


def open_store(url: str | None = None) -> ChatStore:
    """Open the session store a URL names.

    Forms:
        * ``None``: the default SQLite database (``<data dir>/sessions.db``).
        * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (as in
          SQLAlchemy); ``~`` is expanded; ``?mode=ro`` opens read-only.
        * ``memory://``: an :class:`InMemoryChatStore`, gone when the process ends.
        * a plain filesystem path (no scheme): an SQLite database there.

    Raises:
        UnknownStoreURLError: any other URL (``redis://``, ``postgresql://``...).
        NotAnOllangDatabaseError, StoreError: see :class:`SQLiteChatStore`.
    """
    if url is None:
        return SQLiteChatStore(default_store_path())
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
