"""The default session store: one SQLite file (standard library only).

:mod:`~ollang.memory.sqlite.store` is the store, :mod:`~ollang.memory.sqlite.migrations`
its schema as an append-only list of migrations.
"""

from ollang.memory.sqlite.store import SQLiteChatStore

__all__ = ["SQLiteChatStore"]
