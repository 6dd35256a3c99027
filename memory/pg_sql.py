"""The PostgreSQL store's SQL statements, and how a message maps to a row and back.

Kept apart from :mod:`memory.postgres` (connections, errors, the store's methods) so
that each stays readable. Statements are plain strings built once per store with
the schema name filled in (validated there: lower-case letters, digits and ``_``);
every value goes in as a query parameter.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import BaseMessage

from ollang.errors import InvalidInputError
from ollang.memory.messages import content_text, message_from_dict
from ollang.memory.pg_migrations import search_vector

__all__ = [
    "HEADLINE_START",
    "HEADLINE_STOP",
    "Statements",
    "columns_by_name",
    "decode_id",
    "encode_id",
    "message_from_row",
    "no_nul",
    "row_values",
]

_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_SESSION_COLUMNS = "id, title, model, created, updated, message_count, owner"
_MESSAGE_COLUMNS = "id, role, content, content_json, reasoning, status, created, extra"
_MESSAGE_NAMES = tuple(_MESSAGE_COLUMNS.split(", "))
# Keys of a message dict that have their own column; the rest goes to `extra`.
_COLUMN_KEYS = ("id", "role", "content", "reasoning", "status", "created")
#: ts_headline marks: control characters, so that "**" already in a message is not
#: mistaken for a mark when the snippet is cut and marked in Python.
HEADLINE_START, HEADLINE_STOP = "\x01", "\x02"
_HEADLINE = (
    f"StartSel={HEADLINE_START}, StopSel={HEADLINE_STOP}, MaxWords=30, MinWords=12, ShortWord=0"
)


def encode_id(message_id: str) -> bytes:
    """How a message id is stored: uuid hex as its 16 bytes, anything else as UTF-8.

    One-to-one: only uuid hex ids are 16 bytes long; a UTF-8 id that happens to be
    16 bytes gets a trailing ``0xff``, a byte UTF-8 never contains.
    """
    if _UUID_HEX.fullmatch(message_id):
        return bytes.fromhex(message_id)
    raw = message_id.encode("utf-8")
    return raw + b"\xff" if len(raw) == 16 else raw


def decode_id(stored: bytes) -> str:
    """The message id a stored value stands for (inverse of :func:`encode_id`)."""
    if len(stored) == 16:
        return stored.hex()
    return stored.removesuffix(b"\xff").decode("utf-8")


def _compact(value: Any) -> str:
    # Compact separators and real UTF-8: every byte counts on disk. NUL comes out
    # as \u0000, which a text column holds.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Statements:
    """The store's SQL, with the (validated) schema name filled in once."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        # The database clock, and strictly after every stored `updated` (as SQLite's
        # store does), so "most recently updated" stays well defined.
        now = (
            "greatest(extract(epoch FROM clock_timestamp())::float8, "
            f"coalesce((SELECT max(updated) FROM {s}.sessions), 0) + 1e-6)"
        )
        self.last_messages = (
            f"SELECT {_MESSAGE_COLUMNS} FROM {s}.messages "
            f"WHERE session_key = (SELECT key FROM {s}.sessions WHERE id = %s) "
            "ORDER BY seq DESC LIMIT %s"
        )
        self.touch_session = (
            f"INSERT INTO {s}.sessions AS s (id, created, updated, title, model) "
            f"SELECT %s, n.t, n.t, %s, %s FROM (SELECT {now} AS t) AS n "
            "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, "
            "title = coalesce(s.title, excluded.title), model = coalesce(excluded.model, s.model)"
        )
        # Upsert every message of a call and add the new ones to the count, in one
        # statement. An unchanged message is not rewritten (no dead row version).
        self.upsert_messages = (
            f"WITH m AS (INSERT INTO {s}.messages AS m (session_key, {_MESSAGE_COLUMNS}) "
            "SELECT k.key, v.id, v.role, v.content, v.content_json, v.reasoning, v.status, "
            "coalesce(v.created, k.updated), v.extra "
            f"FROM (SELECT key, updated FROM {s}.sessions WHERE id = %(sid)s) AS k, "
            "unnest(%(id)s::bytea[], %(role)s::text[], %(content)s::text[], "
            "%(content_json)s::text[], %(reasoning)s::text[], %(status)s::text[], "
            "%(created)s::float8[], %(extra)s::text[]) WITH ORDINALITY "
            "AS v(id, role, content, content_json, reasoning, status, created, extra, ord) "
            "ORDER BY v.ord "
            "ON CONFLICT (session_key, id) DO UPDATE SET role = excluded.role, "
            "content = excluded.content, content_json = excluded.content_json, "
            "reasoning = excluded.reasoning, status = excluded.status, extra = excluded.extra "
            "WHERE (m.role, m.content, m.content_json, m.reasoning, m.status, m.extra) "
            "IS DISTINCT FROM (excluded.role, excluded.content, excluded.content_json, "
            "excluded.reasoning, excluded.status, excluded.extra) "
            "RETURNING xmax = 0 AS added), "
            "c AS (SELECT count(*) FILTER (WHERE added) AS n FROM m) "
            f"UPDATE {s}.sessions SET message_count = message_count + c.n FROM c "
            "WHERE id = %(sid)s AND c.n > 0"
        )
        self.delete_messages = (
            f"WITH d AS (DELETE FROM {s}.messages WHERE id = ANY(%(ids)s::bytea[]) AND "
            f"session_key = (SELECT key FROM {s}.sessions WHERE id = %(sid)s) RETURNING 1), "
            "c AS (SELECT count(*) AS n FROM d) "
            f"UPDATE {s}.sessions SET message_count = message_count - c.n, updated = {now} "
            "FROM c WHERE id = %(sid)s AND c.n > 0 RETURNING c.n"
        )
        self.get_session = f"SELECT {_SESSION_COLUMNS} FROM {s}.sessions WHERE id = %s"
        self.list_all = (
            f"SELECT {_SESSION_COLUMNS} FROM {s}.sessions ORDER BY updated DESC, key DESC"
        )
        self.list_owned = (
            f"SELECT {_SESSION_COLUMNS} FROM {s}.sessions WHERE owner = %s "
            "ORDER BY updated DESC, key DESC"
        )
        self.owner_of = f"SELECT owner FROM {s}.sessions WHERE id = %s"
        self.claim = (
            f"INSERT INTO {s}.sessions (id, created, updated, owner) "
            f"SELECT %s, n.t, n.t, %s FROM (SELECT {now} AS t) AS n "
            "ON CONFLICT (id) DO NOTHING RETURNING owner"
        )
        self.update_session = (
            f"INSERT INTO {s}.sessions AS s (id, created, updated, title, model) "
            f"SELECT %s, n.t, n.t, %s, %s FROM (SELECT {now} AS t) AS n "
            "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, "
            "title = coalesce(excluded.title, s.title), model = coalesce(excluded.model, s.model)"
        )
        self.delete_session = f"DELETE FROM {s}.sessions WHERE id = %s RETURNING key"
        self.rename = (
            f"UPDATE {s}.sessions SET id = %s, updated = {now} WHERE id = %s RETURNING key"
        )
        # {query} is an AND (&&) of tsquery terms built by search(). The inner query
        # finds the newest hits by the GIN index; ts_headline runs on those only.
        self.search = (
            f"SELECT s.id, h.id, h.role, h.content, ts_headline(h.cfg, h.content, h.q, "
            f"'{_HEADLINE}'), h.created FROM ("
            "SELECT m.session_key, m.id, m.role, m.content, m.created, q.q, q.cfg, m.seq "
            f"FROM (SELECT c.cfg, {{query}} AS q FROM (SELECT '{s}.english'::regconfig AS cfg) "
            f"AS c) AS q, {s}.messages AS m WHERE {search_vector(schema)} @@ q.q "
            f"ORDER BY m.seq DESC LIMIT %s) AS h JOIN {s}.sessions AS s ON s.key = h.session_key "
            "ORDER BY h.seq DESC"
        )


def no_nul(value: str | None) -> str | None:
    # Titles and model names are for display: a NUL (which text cannot hold) is dropped.
    return value.replace("\x00", "") if value is not None else None


def row_values(data: dict[str, Any]) -> tuple[Any, ...]:
    """A message dict as column values, in ``_MESSAGE_COLUMNS`` order."""
    content = data["content"]
    extra = {key: value for key, value in data.items() if key not in _COLUMN_KEYS}
    reasoning = data.get("reasoning")
    if reasoning is not None and "\x00" in reasoning:
        extra["reasoning"] = reasoning  # JSON keeps NUL; a text column cannot
        reasoning = None
    if isinstance(content, str) and "\x00" not in content:
        text, exact = content, None
    else:
        text = (content if isinstance(content, str) else content_text(content)).replace("\x00", " ")
        exact = _compact(content)
    try:
        values = (
            encode_id(data["id"]),
            data["role"],
            text,
            exact,
            reasoning,
            None if data["status"] == "complete" else data["status"],
            data["created"],
            _compact(extra) if extra else None,
        )
        for value in values:  # fail before the transaction, not inside it
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInputError(f"a message is not valid Unicode ({err.reason})") from err
    except (TypeError, ValueError) as err:  # e.g. a tool artifact that is not JSON
        raise InvalidInputError(f"a message cannot be stored as JSON ({err})") from err
    return values


def columns_by_name(columns: list[list[Any]]) -> dict[str, list[Any]]:
    """Column value lists (in ``_MESSAGE_COLUMNS`` order) as the upsert's named parameters."""
    return dict(zip(_MESSAGE_NAMES, columns, strict=True))


def message_from_row(row: tuple[Any, ...]) -> BaseMessage:
    msg_id, role, text, exact, reasoning, status, created, extra = row
    data: dict[str, Any] = json.loads(extra) if extra else {}
    data.update(
        id=decode_id(msg_id),
        role=role,
        content=json.loads(exact) if exact is not None else text,
        status=status or "complete",
        created=created,
    )
    if reasoning is not None:
        data["reasoning"] = reasoning
    return message_from_dict(data, copy_values=False)  # everything here was just decoded
