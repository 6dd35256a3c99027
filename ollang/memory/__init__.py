"""Durable chat memory for ollang: sessions of LangChain messages in a store.

Our own small store instead of LangChain's deprecated ``BaseChatMessageHistory``
(removed in langchain-core 2.0) or LangGraph's checkpointers (which store a
snapshot of the whole conversation per step). A turn costs the same whether
the session holds ten messages or ten thousand.

Typical use::

    from ollang.memory import open_store
    with open_store() as store:              # ~/.local/share/ollang/sessions.db
        store.add_messages("s1", [HumanMessage("Hi")])
        history = store.get_messages("s1", limit=50)

Modules: :mod:`memory.base` (the interface), :mod:`memory.messages` (message
conventions and the dict/JSON form), :mod:`memory.sqlite`, :mod:`memory.inmemory`,
:mod:`memory.url` (``open_store``), :mod:`memory.migrations` (the SQLite schema),
:mod:`memory.search` (query quoting), :mod:`memory.postgres` and
:mod:`memory.pg_migrations` (the PostgreSQL store, with the ``postgres`` extra).
"""

from typing import TYPE_CHECKING

from ollang.memory.base import ChatStore, MessageStatus, SearchHit, SessionInfo
from ollang.memory.inmemory import InMemoryChatStore
from ollang.memory.messages import (
    message_created,
    message_from_dict,
    message_status,
    message_to_dict,
    set_message_status,
)
from ollang.memory.sqlite.store import SQLiteChatStore
from ollang.memory.url import open_store, redact_url

__all__ = [
    "ChatStore",
    "InMemoryChatStore",
    "MessageStatus",
    "PostgresChatStore",
    "SQLiteChatStore",
    "SearchHit",
    "SessionInfo",
    "message_created",
    "message_from_dict",
    "message_status",
    "message_to_dict",
    "open_store",
    "redact_url",
    "set_message_status",
]


# -- PostgreSQL (issue 15): imported on first use, since psycopg is an optional extra
# and importing it costs start-up time of commands that never use it.
if TYPE_CHECKING:
    from ollang.memory.postgres.store import PostgresChatStore


def __getattr__(name: str) -> object:
    if name == "PostgresChatStore":
        from ollang.memory.postgres.store import PostgresChatStore

        return PostgresChatStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
