"""The SQLite store's prefix routes (table ``prefix_routes``, migration ``m008``).

See :meth:`ollang.memory.base.ChatStore.find_prefix_routes`: a digest of a conversation's
messages and the host that served it, for the server's cache-aware routing. Functions of
a connection, run by :class:`~ollang.memory.sqlite.store.SQLiteChatStore` in its read and
write transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

__all__ = ["find", "prune", "record"]

# Well under SQLite's historical limit of 999 bound parameters.
_CHUNK = 500


def find(
    conn: sqlite3.Connection, model: str, digests: Sequence[bytes], oldest: float
) -> dict[bytes, str]:
    """The hosts of ``digests`` recorded for ``model`` since ``oldest`` (primary-key seeks)."""
    found: dict[bytes, str] = {}
    unique = list(dict.fromkeys(digests))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT digest, host FROM prefix_routes WHERE digest IN ({marks}) "
            "AND model = ? AND seen >= ?",
            (*chunk, model, oldest),
        )
        found.update((bytes(digest), host) for digest, host in rows)
    return found


def record(
    conn: sqlite3.Connection, model: str, digests: Sequence[bytes], host: str, now: float
) -> None:
    """Upsert ``digests`` -> ``host`` as seen ``now``."""
    conn.executemany(
        "INSERT INTO prefix_routes(digest, model, host, seen) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(digest) DO UPDATE SET model = excluded.model, host = excluded.host, "
        "seen = excluded.seen",
        [(digest, model, host, now) for digest in dict.fromkeys(digests)],
    )


def prune(conn: sqlite3.Connection, oldest: float, limit: int) -> int:
    """Delete the routes seen before ``oldest``, then all but the ``limit`` newest; returns
    how many went."""
    dropped = conn.execute("DELETE FROM prefix_routes WHERE seen < ?", (oldest,)).rowcount
    # A walk down the index on seen: the rows after the newest ``limit``.
    dropped += conn.execute(
        "DELETE FROM prefix_routes WHERE digest IN (SELECT digest FROM prefix_routes "
        "ORDER BY seen DESC LIMIT -1 OFFSET ?)",
        (max(0, limit),),
    ).rowcount
    return dropped
