"""The PostgreSQL store's prefix routes (table ``prefix_routes``, migration ``m006``).

See :meth:`ollang.memory.base.ChatStore.find_prefix_routes`: a digest of a conversation's
messages and the host that served it, shared by every replica for the server's
cache-aware routing. Statements built once per store with the (validated) schema name;
times are the database clock's, as every time the PostgreSQL store keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

__all__ = ["PrefixRouteStatements"]

_NOW = "extract(epoch FROM clock_timestamp())::float8"


class PrefixRouteStatements:
    """The prefix routes' SQL for one schema, and the functions that run it."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        # One statement for every prefix of a request: primary-key lookups.
        self._find = (
            f"SELECT digest, host FROM {s}.prefix_routes WHERE digest = ANY(%s) "
            f"AND model = %s AND seen >= {_NOW} - %s"
        )
        # Sorted digests: two replicas recording the same ones lock them in one order.
        self._record = (
            f"INSERT INTO {s}.prefix_routes AS r (digest, model, host, seen) "
            f"SELECT d, %s, %s, {_NOW} FROM unnest(%s::bytea[]) AS d ORDER BY d "
            "ON CONFLICT (digest) DO UPDATE SET model = excluded.model, host = excluded.host, "
            "seen = excluded.seen"
        )
        self._expire = f"DELETE FROM {s}.prefix_routes WHERE seen < {_NOW} - %s"
        self._bound = (
            f"DELETE FROM {s}.prefix_routes WHERE digest IN (SELECT digest FROM "
            f"{s}.prefix_routes ORDER BY seen DESC OFFSET %s)"
        )

    def find(
        self, conn: psycopg.Connection[Any], model: str, digests: Sequence[bytes], max_age: float
    ) -> dict[bytes, str]:
        """The hosts of ``digests`` recorded for ``model`` in the last ``max_age`` seconds."""
        rows = conn.execute(self._find, (list(digests), model, max_age)).fetchall()
        return {bytes(digest): host for digest, host in rows}

    def record(
        self, conn: psycopg.Connection[Any], model: str, digests: Sequence[bytes], host: str
    ) -> None:
        """Upsert ``digests`` -> ``host``, seen now."""
        conn.execute(self._record, (model, host, sorted(set(digests))))

    def prune(self, conn: psycopg.Connection[Any], max_age: float, limit: int) -> int:
        """Delete the routes older than ``max_age``, then all but the ``limit`` newest."""
        dropped = conn.execute(self._expire, (max_age,)).rowcount
        dropped += conn.execute(self._bound, (max(0, limit),)).rowcount
        return max(0, dropped)
