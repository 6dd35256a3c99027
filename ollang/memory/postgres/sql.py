"""The PostgreSQL store's SQL statements, and how a message maps to a row and back.

Kept apart from :mod:`memory.postgres` (connections, errors, the store's methods) so
that each stays readable. Statements are plain strings built once per store with
the schema name filled in (validated there: lower-case letters, digits and ``_``);
every value goes in as a query parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ollang.errors import InvalidInputError
from ollang.memory.base import SessionInfo
from ollang.memory.images import IMAGE_REF, StoredImage, image_refs
from ollang.memory.messages import compact_json
from ollang.memory.postgres.migrations import search_vector

__all__ = [
    "HEADLINE_START",
    "HEADLINE_STOP",
    "Statements",
    "columns_by_name",
    "decode_id",
    "encode_id",
    "image_params",
    "no_nul",
    "row_image_refs",
    "session_from_row",
    "settings_values",
]

_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_SESSION_COLUMNS = (
    "id, title, model, created, updated, message_count, owner, system, system_json, options"
)
_MESSAGE_COLUMNS = "id, role, content, content_json, reasoning, status, created, extra"
_MESSAGE_NAMES = tuple(_MESSAGE_COLUMNS.split(", "))
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
        self._message_statements(s, now)
        self._session_statements(s, now)
        self._fork_statements(s, now)
        self._image_statements(s)
        # {query} is an AND (&&) of tsquery terms built by search(). The inner query
        # finds the newest hits by the GIN index; ts_headline runs on those only.
        self.search = (
            f"SELECT s.id, h.id, h.role, h.content, ts_headline(h.cfg, h.content, h.q, "
            f"'{_HEADLINE}'), h.created FROM ("
            "SELECT m.session_key, m.id, m.role, m.content, m.created, q.q, q.cfg, m.seq "
            f"FROM (SELECT c.cfg, {{query}} AS q FROM (SELECT '{s}.english'::regconfig AS cfg) "
            f"AS c) AS q, {s}.messages AS m WHERE {search_vector(schema)} @@ q.q "
            # The index's own predicate (migration m005): snapshots are not searched.
            "AND m.status IS DISTINCT FROM 'partial' "
            f"ORDER BY m.seq DESC LIMIT %s) AS h JOIN {s}.sessions AS s ON s.key = h.session_key "
            "ORDER BY h.seq DESC"
        )

    def _message_statements(self, s: str, now: str) -> None:
        """Reading, upserting and deleting a session's messages."""
        self.last_messages = (
            f"SELECT {_MESSAGE_COLUMNS} FROM {s}.messages "
            f"WHERE session_key = (SELECT key FROM {s}.sessions WHERE id = %s) "
            "ORDER BY seq DESC LIMIT %s"
        )
        # A page further back: where message %s of the session is, then the messages
        # before it (the same backward range scan of the primary key).
        self.message_position = (
            f"SELECT session_key, seq FROM {s}.messages "
            f"WHERE session_key = (SELECT key FROM {s}.sessions WHERE id = %s) AND id = %s"
        )
        self.messages_before = (
            f"SELECT {_MESSAGE_COLUMNS} FROM {s}.messages WHERE session_key = %s AND seq < %s "
            "ORDER BY seq DESC LIMIT %s"
        )
        # Upsert every message of a call and add the new ones to the count, in one
        # statement. An unchanged message is not rewritten (no dead row version).
        self.upsert_messages = _upsert_messages(s, images=False)
        # The same when the call's messages hold images: each image stored once, and
        # each message linked to its images (a message left unchanged, not returned,
        # kept its links). An existing image is locked, not rewritten (DO UPDATE ...
        # WHERE false), from the start of the statement: a delete of its last message
        # waits for this transaction (see lock_images), as it would for the link's
        # foreign key check, which only comes at the end of the statement.
        self.upsert_messages_with_images = _upsert_messages(s, images=True)
        # Deletes: messages, their links to images, and the images left without links,
        # in one statement. It has a race: a writer linking one of those images at the
        # same moment commits a link the statement did not see, and the images' foreign
        # key then fails the delete (nothing is lost). The store then deletes again,
        # the careful way: the same without the images ("..._keeping_images", which
        # returns their hashes), then lock_images and forget_images in its transaction.
        self.delete_messages = _delete_messages(s, now, forget=True)
        self.delete_messages_keeping_images = _delete_messages(s, now, forget=False)

    def _session_statements(self, s: str, now: str) -> None:
        """Sessions: created on first use, listed, claimed, updated, renamed, deleted."""
        self.touch_session = (
            f"INSERT INTO {s}.sessions AS s (id, created, updated, title, model) "
            f"SELECT %s, n.t, n.t, %s, %s FROM (SELECT {now} AS t) AS n "
            "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, "
            "title = coalesce(s.title, excluded.title), model = coalesce(excluded.model, s.model)"
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
        # A NULL title or model leaves it as it is; system and options change only
        # when their flag says so (to a value, or to NULL: cleared).
        self.update_session = (
            f"INSERT INTO {s}.sessions AS s "
            "(id, created, updated, title, model, system, system_json, options) "
            "SELECT %(sid)s, n.t, n.t, %(title)s, %(model)s, %(system)s, %(system_json)s, "
            f"%(options)s FROM (SELECT {now} AS t) AS n "
            "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, "
            "title = coalesce(excluded.title, s.title), model = coalesce(excluded.model, s.model), "
            "system = CASE WHEN %(set_system)s THEN excluded.system ELSE s.system END, "
            "system_json = CASE WHEN %(set_system)s THEN excluded.system_json "
            "ELSE s.system_json END, "
            "options = CASE WHEN %(set_options)s THEN excluded.options ELSE s.options END"
        )
        self.delete_session = _delete_session(s, forget=True)
        self.delete_session_keeping_images = _delete_session(s, forget=False)
        self.rename = (
            f"UPDATE {s}.sessions SET id = %s, updated = {now} WHERE id = %s RETURNING key"
        )

    def _fork_statements(self, s: str, now: str) -> None:
        """Forking a session: its settings, messages and image links under a new id."""
        # A fork, in one transaction: the source locked (not deleted or renamed meanwhile),
        # the target created only if no session has its id (ON CONFLICT waits for a
        # claimant's transaction: exactly one of them gets the id), then the messages
        # (in order, new ids given as %(id)s) and their image links copied.
        self.fork_source = f"SELECT key, owner FROM {s}.sessions WHERE id = %s FOR SHARE"
        self.fork_target = (
            f"INSERT INTO {s}.sessions "
            "(id, created, updated, owner, title, model, system, system_json, options) "
            "SELECT %s, n.t, n.t, s.owner, s.title, s.model, s.system, s.system_json, s.options "
            f"FROM {s}.sessions AS s, (SELECT {now} AS t) AS n WHERE s.key = %s "
            "ON CONFLICT (id) DO NOTHING RETURNING key"
        )
        self.fork_seqs = f"SELECT seq FROM {s}.messages WHERE session_key = %s ORDER BY seq"
        self.fork_messages = (
            "WITH v AS (SELECT * FROM unnest(%(seq)s::bigint[], %(id)s::bytea[]) "
            "WITH ORDINALITY AS v(old, id, ord)), "
            f"m AS (INSERT INTO {s}.messages AS m (session_key, {_MESSAGE_COLUMNS}) "
            "SELECT %(key)s, v.id, o.role, o.content, o.content_json, o.reasoning, "
            "CASE o.status WHEN 'partial' THEN 'interrupted' ELSE o.status END, "
            f"o.created, o.extra FROM v JOIN {s}.messages AS o "
            "ON o.session_key = %(src)s AND o.seq = v.old ORDER BY v.ord "
            "RETURNING m.id, m.seq), "
            f"l AS (INSERT INTO {s}.message_images (session_key, seq, hash) "
            "SELECT %(key)s, m.seq, i.hash FROM m JOIN v ON v.id = m.id "
            f"JOIN {s}.message_images AS i ON i.session_key = %(src)s AND i.seq = v.old) "
            f"UPDATE {s}.sessions SET message_count = (SELECT count(*) FROM m) "
            "WHERE key = %(key)s"
        )

    def _image_statements(self, s: str) -> None:
        """Images: fetched for a read, and forgotten once no message links to them."""
        # The images a read's messages refer to: a second statement, only for reads
        # with image references (a subquery in last_messages, even one never
        # evaluated, opened and locked two more tables and indexes on every read).
        self.fetch_images = f"SELECT hash, data FROM {s}.images WHERE hash = ANY(%s::bytea[])"
        # After a delete, in its transaction: the images no message links to any more
        # go. Two statements: the first locks the images (waiting for a writer that is
        # linking one of them right now); the second, with a snapshot taken after the
        # lock, sees that writer's links and keeps what they use.
        self.lock_images = (
            f"SELECT 1 FROM {s}.images WHERE hash = ANY(%s::bytea[]) ORDER BY hash FOR UPDATE"
        )
        self.forget_images = (
            f"DELETE FROM {s}.images AS i WHERE hash = ANY(%s::bytea[]) AND NOT EXISTS "
            f"(SELECT 1 FROM {s}.message_images AS l WHERE l.hash = i.hash)"
        )


def _unused_images(s: str) -> str:
    """A CTE deleting the images a delete's links (CTE ``l``) used that no other link uses."""
    return (
        f"i AS (DELETE FROM {s}.images AS i WHERE hash IN (SELECT hash FROM l) AND NOT EXISTS "
        f"(SELECT 1 FROM {s}.message_images AS o WHERE o.hash = i.hash AND NOT EXISTS "
        "(SELECT 1 FROM l WHERE l.session_key = o.session_key AND l.seq = o.seq)))"
    )


def _delete_messages(s: str, now: str, *, forget: bool) -> str:
    """Deleting messages by id, returning how many went and (unless ``forget``, which
    deletes the images left unused in the same statement) their images' hashes."""
    ctes = [
        f"d AS (DELETE FROM {s}.messages WHERE id = ANY(%(ids)s::bytea[]) AND "
        f"session_key = (SELECT key FROM {s}.sessions WHERE id = %(sid)s) "
        "RETURNING session_key, seq)",
        f"l AS (DELETE FROM {s}.message_images AS l USING d "
        "WHERE l.session_key = d.session_key AND l.seq = d.seq "
        "RETURNING l.session_key, l.seq, l.hash)",
        *([_unused_images(s)] if forget else []),
        "c AS (SELECT count(*) AS n FROM d)",
    ]
    hashes = "NULL" if forget else "(SELECT array_agg(DISTINCT hash) FROM l)"
    return (
        f"WITH {', '.join(ctes)} "
        f"UPDATE {s}.sessions SET message_count = message_count - c.n, updated = {now} "
        f"FROM c WHERE id = %(sid)s AND c.n > 0 RETURNING c.n, {hashes}"
    )


def _delete_session(s: str, *, forget: bool) -> str:
    """Deleting a session (its messages go by cascade), returning its key and, as for
    :func:`_delete_messages`, its images' hashes."""
    ctes = [
        f"d AS (DELETE FROM {s}.sessions WHERE id = %s RETURNING key)",
        f"l AS (DELETE FROM {s}.message_images WHERE session_key IN (SELECT key FROM d) "
        "RETURNING session_key, seq, hash)",
        *([_unused_images(s)] if forget else []),
    ]
    hashes = "NULL" if forget else "(SELECT array_agg(DISTINCT hash) FROM l)"
    return f"WITH {', '.join(ctes)} SELECT d.key, {hashes} FROM d"


def _upsert_messages(s: str, *, images: bool) -> str:
    """The statement upserting a call's messages (``s``: the quoted schema)."""
    sql = ""
    if images:
        sql += (
            f"WITH i AS (INSERT INTO {s}.images AS i (hash, mime, data) "
            "SELECT * FROM unnest(%(image_hash)s::bytea[], %(image_mime)s::text[], "
            "%(image_data)s::bytea[]) AS v(hash, mime, data) ORDER BY hash "
            "ON CONFLICT (hash) DO UPDATE SET mime = i.mime WHERE false), "
        )
    sql += (
        ("" if images else "WITH ")
        + f"m AS (INSERT INTO {s}.messages AS m (session_key, {_MESSAGE_COLUMNS}) "
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
        + (
            "RETURNING xmax = 0 AS added, session_key, seq, id), "
            if images
            else "RETURNING xmax = 0 AS added), "
        )
    )
    if images:
        sql += (
            f"l AS (INSERT INTO {s}.message_images (session_key, seq, hash) "
            "SELECT m.session_key, m.seq, v.hash FROM m "
            "JOIN unnest(%(link_id)s::bytea[], %(link_hash)s::bytea[]) AS v(id, hash) "
            "ON v.id = m.id ON CONFLICT DO NOTHING), "
        )
    return sql + (
        "c AS (SELECT count(*) FILTER (WHERE added) AS n FROM m) "
        f"UPDATE {s}.sessions SET message_count = message_count + c.n FROM c "
        "WHERE id = %(sid)s AND c.n > 0"
    )


def image_params(images: dict[bytes, list[StoredImage]]) -> dict[str, list[Any]]:
    """The images of a call's messages (by encoded message id) as the upsert's parameters."""
    unique: dict[bytes, StoredImage] = {}
    link_id: list[bytes] = []
    link_hash: list[bytes] = []
    for message_id, stored in images.items():
        for image in stored:
            digest = bytes.fromhex(image.hash)
            unique.setdefault(digest, image)
            link_id.append(message_id)
            link_hash.append(digest)
    ordered = sorted(unique.items())  # locks taken in one order by every writer
    return {
        "image_hash": [digest for digest, _ in ordered],
        "image_mime": [image.mime for _, image in ordered],
        "image_data": [image.data for _, image in ordered],
        "link_id": link_id,
        "link_hash": link_hash,
    }


def settings_values(
    session_id: str,
    title: str | None,
    model: str | None,
    system: str | None,
    options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The parameters of ``update_session`` (see :meth:`ChatStore.update_session`).

    Raises:
        InvalidInputError: the options are not JSON, or a value is not valid Unicode.
    """
    values: dict[str, Any] = {
        "sid": session_id,
        "title": no_nul(title),
        "model": no_nul(model),
        "set_system": system is not None,
        "system": None,
        "system_json": None,
        "set_options": options is not None,
        "options": None,
    }
    if system and "\x00" in system:
        values["system"], values["system_json"] = system.replace("\x00", " "), compact_json(system)
    elif system:
        values["system"] = system
    try:
        if options:
            values["options"] = compact_json(dict(options))
        for value in values.values():  # fail before the statement, not inside it
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInputError(f"a session setting is not valid Unicode ({err.reason})") from err
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"session options must be JSON ({err})") from err
    return values


def session_from_row(row: tuple[Any, ...]) -> SessionInfo:
    """A ``sessions`` row (``_SESSION_COLUMNS``) as a :class:`SessionInfo`."""
    sid, title, model, created, updated, count, owner, system, system_json, options = row
    return SessionInfo(
        sid,
        title,
        model,
        created,
        updated,
        count,
        owner,
        system=json.loads(system_json) if system_json is not None else system,
        options=json.loads(options) if options else None,
    )


def no_nul(value: str | None) -> str | None:
    # Titles and model names are for display: a NUL (which text cannot hold) is dropped.
    return value.replace("\x00", "") if value is not None else None


def columns_by_name(columns: list[list[Any]]) -> dict[str, list[Any]]:
    """Column value lists (in ``_MESSAGE_COLUMNS`` order) as the upsert's named parameters."""
    return dict(zip(_MESSAGE_NAMES, columns, strict=True))


def row_image_refs(row: tuple[Any, ...]) -> list[str]:
    """The hashes of the images a ``last_messages`` row refers to (cheap for rows without)."""
    exact = row[3]
    if exact is None or IMAGE_REF not in exact:
        return []
    content = json.loads(exact)
    return image_refs(content) if isinstance(content, list) else []
