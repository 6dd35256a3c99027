"""The shared session store: PostgreSQL through psycopg 3 (the ``postgres`` extra).

* :mod:`~ollang.memory.postgres.store` — :class:`PostgresChatStore`;
* :mod:`~ollang.memory.postgres.sql` — its statements, and how a message maps to a row;
* :mod:`~ollang.memory.postgres.pool` — the pool, retries, batches and errors;
* :mod:`~ollang.memory.postgres.migrations` — the schema as an append-only list.

Imported on first use: psycopg is optional, and costs start-up time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

_WHERE = {"PostgresChatStore": "ollang.memory.postgres.store"}
__all__ = ["PostgresChatStore"]

if TYPE_CHECKING:
    from ollang.memory.postgres.store import PostgresChatStore

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
