"""The shared session store: PostgreSQL, through psycopg 3 and a psycopg_pool pool.

For a team: any number of ``ollang serve`` replicas (on any number of machines)
keep their sessions, their owners and their search in one PostgreSQL database.

Why it is shaped this way:

* **Per-turn cost stays flat.** As in the SQLite store, a turn reads the last N
  messages (a backward range scan of the primary key ``(session_key, seq)``) and
  upserts one or two rows; nothing reads or rewrites the whole session.
* **A write is one short transaction of two statements**: the session row's upsert,
  then one statement that upserts every message of the call and adds the new ones
  to the session's count (``INSERT ... ON CONFLICT ... RETURNING xmax = 0``). A
  streaming reply flushed once a second is an update in place that skips unchanged
  rows. (psycopg's pipeline mode, which would send both in one round trip, measured
  slower on loopback: its Python-side bookkeeping costs more than the round trips
  it saves.) Reads are single statements on autocommit connections: no
  ``BEGIN``/``COMMIT`` round trips. :meth:`batch` (the server's store writer) runs
  many calls in one transaction, a savepoint each, with one commit for all.
* **Replicas are stateless.** Everything lives in the database: message order is
  a database sequence, timestamps come from the database clock, claims are one
  ``INSERT ... ON CONFLICT DO NOTHING`` (two replicas racing for an id: one wins),
  and writers of one session queue on its row lock. Nothing per process breaks a
  session that moves between replicas mid-conversation.
* **The database may go away** (:mod:`memory.pg_pool`). A down or restarting server is
  :class:`~memory.errors.StoreUnavailableError` (HTTP 503), naming host and port and
  never the password. The pool drops broken connections and makes new ones by
  itself; an operation whose connection died before it could have committed is
  retried once on a fresh connection, so the first request after a restart works.
* **Other people's schemas are left alone.** Tables live in one schema (``ollang``,
  or ``?schema=NAME`` in the URL); a schema holding anything else is refused, and
  so is one written by a newer ollang (:mod:`memory.pg_migrations`).
* **Everything a user can type is stored exactly.** PostgreSQL's ``text`` cannot
  hold NUL; text with NUL (a message's, a system prompt's) is kept as JSON beside a
  searchable or readable copy.
* **Images are stored once** (:mod:`memory.images`): a message's image blocks become
  references, each image's bytes one ``bytea`` row, linked to the messages using it
  and deleted with the last of them (in the delete's transaction, after locking it,
  so a writer linking it at the same moment keeps it). A read looks images up with a
  second statement only when a message of the window refers to one: a window of
  text costs the one statement it did.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from langchain_core.messages import BaseMessage
from psycopg import sql

from ollang.errors import InvalidInputError
from ollang.memory.base import SNIPPET_ELLIPSIS, SNIPPET_MARK, ChatStore, SearchHit, SessionInfo
from ollang.memory.errors import (
    NotAnOllangDatabaseError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
)
from ollang.memory.images import StoredImage
from ollang.memory.keys_sql import KeySQL, SQLKeysMixin
from ollang.memory.messages import (
    PARTIAL_STATUS,
    message_for_row,
    message_from_row,
    message_row,
)
from ollang.memory.postgres.migrations import MigrationError, apply_migrations, foreign_tables
from ollang.memory.postgres.pool import Database
from ollang.memory.postgres.prefix_routes import PrefixRouteStatements
from ollang.memory.postgres.sql import (
    HEADLINE_START,
    HEADLINE_STOP,
    Statements,
    columns_by_name,
    decode_id,
    encode_id,
    image_params,
    no_nul,
    row_image_refs,
    session_from_row,
    settings_values,
)
from ollang.memory.search import Term, query_terms, query_words, snippet

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ollang.memory.base import SessionChanges

__all__ = ["PostgresChatStore"]

T = TypeVar("T")

# Outside any transaction (an autocommit connection between statements).
_IDLE = psycopg.pq.TransactionStatus.IDLE
# Most words a search uses (each is one tsquery term).
_MAX_QUERY_WORDS = 32


class PostgresChatStore(SQLKeysMixin, ChatStore):
    """Chat sessions in a PostgreSQL database, shared by any number of processes.

    Example::

        url = "postgresql://ollang:secret@db.internal:5432/ollang"
        with PostgresChatStore(url) as store:          # or open_store(url)
            store.add_messages("s1", [HumanMessage("Hi")])
            store.get_messages("s1", limit=20)

    Args:
        url: A libpq URL (``postgresql://`` or ``postgres://``). Besides libpq's own
            query parameters (``sslmode``, ``connect_timeout``, ...) it may carry
            ``schema`` (default ``ollang``), ``pool_size`` and ``pool_timeout``,
            which override the arguments below.
        schema: The PostgreSQL schema holding ollang's tables (created if missing).
        pool_size: Most connections this process keeps open.
        pool_timeout: Seconds an operation waits for a connection (while the server
            is down or restarting) before it fails with ``StoreUnavailableError``.

    Raises:
        StoreUnavailableError: the server does not answer.
        NotAnOllangDatabaseError: the schema holds another application's tables.
        StoreError: anything else (bad credentials, no such database, a database
            written by a newer ollang, missing privileges).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "ollang",
        pool_size: int = 10,
        pool_timeout: float = 5.0,
    ) -> None:
        self._db = Database(url, schema=schema, pool_size=pool_size, pool_timeout=pool_timeout)
        self.url, self.schema, self.where = self._db.url, self._db.schema, self._db.where
        self._sql = Statements(self.schema)
        self._routes = PrefixRouteStatements(self.schema)
        self._key_sql = KeySQL("%s", f'"{self.schema}".')
        self._migrate()
        self._db.open()

    def __repr__(self) -> str:
        return f"PostgresChatStore({self.url!r}, schema={self.schema!r})"

    # -- opening ------------------------------------------------------------------
    def _migrate(self) -> None:
        """Check the schema and apply pending migrations on a connection of its own."""
        conn = self._db.connect()
        try:
            with conn:
                foreign = foreign_tables(conn, self.schema)
                if foreign:
                    shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                    raise NotAnOllangDatabaseError(
                        f"{self.url} (schema {self.schema})", f"it holds the tables {shown}"
                    )
                apply_migrations(conn, self.schema)
                self._recover_snapshots(conn)
        except MigrationError as err:
            raise StoreError(f"cannot open {self.url}: {err}", "upgrade ollang") from err
        except psycopg.Error as err:
            raise self._db.error("open", err) from err

    def _recover_snapshots(self, conn: psycopg.Connection[Any]) -> None:
        """Mark the snapshots a crashed replica left (status ``partial``) as cut short, so
        search finds them. One still streaming on another replica is only indexed
        early: its next write makes it a snapshot again (a new row version, which the
        partial index leaves out)."""
        table = sql.SQL("{s}.messages").format(s=sql.Identifier(self.schema))
        found = conn.execute(
            sql.SQL("SELECT 1 FROM {t} WHERE status = 'partial' LIMIT 1").format(t=table)
        ).fetchone()
        if found:
            conn.execute(
                sql.SQL("UPDATE {t} SET status = 'interrupted' WHERE status = 'partial'").format(
                    t=table
                )
            )

    def close(self) -> None:
        """Close the pool's connections. Later calls raise :class:`StoreError`."""
        self._db.close()

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """See :meth:`ChatStore.batch`: one transaction, a savepoint per call."""
        return self._db.batch()

    # -- messages -----------------------------------------------------------------
    def get_messages(self, session_id: str, limit: int | None = None) -> list[BaseMessage]:
        """See :meth:`ChatStore.get_messages`."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []

        def read(conn: psycopg.Connection[Any]) -> list[BaseMessage] | None:
            rows = conn.execute(self._sql.last_messages, (session_id, limit)).fetchall()
            rows.reverse()
            images, complete = self._row_images(conn, rows)
            if not complete and conn.info.transaction_status == _IDLE:
                return None  # deleted between the two statements: read again, see below
            return [message_from_row(row, decode_id, lambda refs: images) for row in rows]

        messages = self._db.run("read", read)
        if messages is None:
            # The last messages linking an image went (and it with them) between the two
            # statements: both again on one snapshot, which has the messages and their
            # images or neither. (An image still missing is left as its reference.)
            messages = self._db.run_on_snapshot("read", read)
        return messages or []

    def _row_images(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]
    ) -> tuple[dict[str, bytes], bool]:
        """The images message ``rows`` refer to, by hash, and whether every one was found."""
        # Column 3 is content_json: NULL for plain text, so most rows stop there.
        refs = {ref for row in rows if row[3] is not None for ref in row_image_refs(row)}
        if not refs:
            return {}, True
        found = conn.execute(
            self._sql.fetch_images, ([bytes.fromhex(ref) for ref in refs],)
        ).fetchall()
        images = {bytes(digest).hex(): bytes(data) for digest, data in found}
        return images, len(images) == len(refs)

    def get_messages_before(self, session_id: str, before: str, limit: int) -> list[BaseMessage]:
        """See :meth:`ChatStore.get_messages_before` (on one snapshot; O(limit))."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        _check_text(session_id)

        def read(conn: psycopg.Connection[Any]) -> list[BaseMessage] | None:
            at = conn.execute(self._sql.message_position, (session_id, encode_id(before)))
            row = at.fetchone()
            if row is None:
                return None
            rows = conn.execute(self._sql.messages_before, (row[0], row[1], limit)).fetchall()
            rows.reverse()
            images, _ = self._row_images(conn, rows)
            return [message_from_row(row, decode_id, lambda refs: images) for row in rows]

        messages = self._db.run_on_snapshot("read", read)
        if messages is None:
            raise LookupError(f"no message {before!r} in session {session_id!r}")
        return messages

    def add_messages(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """See :meth:`ChatStore.add_messages` (one transaction of two statements)."""
        self._upsert(session_id, messages, partial=False)

    def add_snapshot(self, session_id: str, message: BaseMessage) -> None:
        """See :meth:`ChatStore.add_snapshot`: stored with status ``partial``, outside the
        search index (migration ``m005``)."""
        self._upsert(session_id, [message], partial=True)

    def _upsert(self, session_id: str, messages: Sequence[BaseMessage], *, partial: bool) -> None:
        if not messages:
            return
        _check_text(session_id)
        # Everything that can fail on the input fails here, before the transaction.
        order: dict[bytes, int] = {}
        columns: list[list[Any]] = [[] for _ in range(8)]
        images: dict[bytes, list[StoredImage]] = {}
        title: str | None = None
        model: str | None = None
        for message in messages:
            data, found, derived, used = message_for_row(message)
            if title is None:
                title = no_nul(derived)
            model = no_nul(used) or model
            values = message_row(data, encode_id, nul_free=True)
            if partial:
                values = (*values[:5], PARTIAL_STATUS, *values[6:])
            if found:
                images[values[0]] = found
            else:  # the same id twice: the later version's images
                images.pop(values[0], None)
            at = order.get(values[0])
            if at is None:  # the same id twice in one call: one row, the later text
                order[values[0]] = len(columns[0])
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
            else:
                for column, value in zip(columns[1:6], values[1:6], strict=True):
                    column[at] = value
                columns[7][at] = values[7]

        params = {"sid": session_id, **columns_by_name(columns)}
        upsert = self._sql.upsert_messages
        if images:
            upsert = self._sql.upsert_messages_with_images
            params.update(image_params(images))

        def write(conn: psycopg.Connection[Any]) -> None:
            conn.execute(self._sql.touch_session, (session_id, title, model))
            conn.execute(upsert, params)

        self._db.run("write to", write, atomic=True)  # idempotent: the ids are fixed by now

    def delete_messages(self, session_id: str, message_ids: Sequence[str]) -> int:
        """See :meth:`ChatStore.delete_messages` (one statement, images included)."""
        ids = [encode_id(m) for m in dict.fromkeys(message_ids)]
        if not ids:
            return 0
        params = {"sid": session_id, "ids": ids}

        def delete(statement: str) -> Callable[[psycopg.Connection[Any]], int]:
            def run(conn: psycopg.Connection[Any]) -> int:
                row = conn.execute(statement, params).fetchone()
                if row is None:
                    return 0
                self._forget_images(conn, row[1])
                return int(row[0])

            return run

        return self._delete(
            delete(self._sql.delete_messages), delete(self._sql.delete_messages_keeping_images)
        )

    def _delete(
        self,
        fast: Callable[[psycopg.Connection[Any]], T],
        careful: Callable[[psycopg.Connection[Any]], T],
    ) -> T:
        """Run a delete as one statement; if it raced with a writer linking one of its
        images (see :class:`~memory.pg_sql.Statements`), the careful way."""
        try:
            return self._db.run("write to", fast, retry=False)  # a repeat would count 0
        except StoreError as err:
            if not isinstance(err.__cause__, psycopg.errors.ForeignKeyViolation):
                raise
        return self._db.run("write to", careful, retry=False, atomic=True)

    def _forget_images(self, conn: psycopg.Connection[Any], hashes: list[bytes] | None) -> None:
        """Delete the images of ``hashes`` no message links to any more (in the delete's
        transaction, after locking them: a writer linking one of them right now commits
        first, and the second statement's snapshot sees its link)."""
        if hashes:
            conn.execute(self._sql.lock_images, (hashes,))
            conn.execute(self._sql.forget_images, (hashes,))

    # -- sessions -----------------------------------------------------------------
    def get_session(self, session_id: str) -> SessionInfo | None:
        """See :meth:`ChatStore.get_session`."""
        row = self._db.run(
            "read",
            lambda conn: conn.execute(self._sql.get_session, (session_id,)).fetchone(),
        )
        return session_from_row(row) if row else None

    def list_sessions(self, *, owner: str | None = None) -> list[SessionInfo]:
        """See :meth:`ChatStore.list_sessions`."""
        if owner is None:
            rows = self._db.run("read", lambda conn: conn.execute(self._sql.list_all).fetchall())
        else:
            rows = self._db.run(
                "read", lambda conn: conn.execute(self._sql.list_owned, (owner,)).fetchall()
            )
        return [session_from_row(row) for row in rows]

    def claim_session(self, session_id: str, owner: str | None) -> bool:
        """See :meth:`ChatStore.claim_session`.

        An existing session is checked with a plain read (owners never change);
        creating one is ``INSERT ... ON CONFLICT DO NOTHING``, which waits for a
        concurrent claimant's transaction, so exactly one of them inserts the row.
        """
        _check_text(session_id)

        def claim(conn: psycopg.Connection[Any]) -> tuple[bool, str | None]:
            for _ in range(3):  # a claimed session deleted in between: claim again
                row = conn.execute(self._sql.owner_of, (session_id,)).fetchone()
                if row is None:
                    row = conn.execute(self._sql.claim, (session_id, owner)).fetchone()
                if row is not None:
                    return True, row[0]
            return False, None

        found, stored = self._db.run("write to", claim)
        return owner is None or (found and stored == owner)

    def update_session(self, session_id: str, **changes: Unpack[SessionChanges]) -> None:
        """See :meth:`ChatStore.update_session` (one statement: an upsert of the row)."""
        _check_text(session_id)
        values = settings_values(session_id, *self._session_changes(changes))
        self._db.run("write to", lambda conn: conn.execute(self._sql.update_session, values))

    def delete_session(self, session_id: str) -> bool:
        """See :meth:`ChatStore.delete_session` (messages go by ``ON DELETE CASCADE``)."""

        def delete(statement: str) -> Callable[[psycopg.Connection[Any]], bool]:
            def run(conn: psycopg.Connection[Any]) -> bool:
                row = conn.execute(statement, (session_id,)).fetchone()
                if row is None:
                    return False
                self._forget_images(conn, row[1])
                return True

            return run

        return self._delete(
            delete(self._sql.delete_session), delete(self._sql.delete_session_keeping_images)
        )

    def rename_session(self, old: str, new: str) -> None:
        """See :meth:`ChatStore.rename_session`."""
        _check_text(new)
        if old == new:
            if self.get_session(old) is None:
                raise SessionNotFoundError(old)
            return

        def rename(conn: psycopg.Connection[Any]) -> bool:
            try:
                return conn.execute(self._sql.rename, (new, old)).fetchone() is not None
            except psycopg.errors.UniqueViolation as err:
                raise SessionExistsError(new) from err

        if not self._db.run("write to", rename, retry=False):
            raise SessionNotFoundError(old)

    def fork_session(self, source: str, target: str, *, owner: str | None = None) -> int:
        """See :meth:`ChatStore.fork_session`: one transaction that locks the source,
        creates ``target`` only if the id is free (``ON CONFLICT DO NOTHING``: a claimant
        racing for it either got it first, and the fork fails, or waits and gets none),
        and copies the messages and their image links in SQL."""
        _check_text(target)

        def fork(conn: psycopg.Connection[Any]) -> int:
            src = conn.execute(self._sql.fork_source, (source,)).fetchone()
            if src is None or (owner is not None and src[1] != owner):
                raise SessionNotFoundError(source)
            made = conn.execute(self._sql.fork_target, (target, src[0])).fetchone()
            if made is None:
                raise SessionExistsError(target)
            seqs = [row[0] for row in conn.execute(self._sql.fork_seqs, (src[0],))]
            params = {
                "seq": seqs,
                "id": [uuid.uuid4().bytes for _ in seqs],
                "key": made[0],
                "src": src[0],
            }
            conn.execute(self._sql.fork_messages, params)
            return len(seqs)

        return self._db.run("write to", fork, retry=False, atomic=True)

    # -- search -------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 50) -> list[SearchHit]:
        """See :meth:`ChatStore.search`.

        PostgreSQL full-text search with English stemming ("penguin" finds
        "penguins"); every term must match; a term ending in ``*`` is a prefix
        ("fizz*" finds "fizzbuzz"); see :func:`_tsquery`. Nothing typed is syntax.
        Newest first.
        """
        clean = "".join(ch for ch in text if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)
        words = query_words(clean)[:_MAX_QUERY_WORDS]
        if not words or limit <= 0:
            return []
        parts: list[str] = []
        params: list[str] = []
        for word in words:
            _tsquery(word, parts, params)
        query = self._sql.search.replace("{query}", " && ".join(parts))
        rows = self._db.run("search", lambda conn: conn.execute(query, (*params, limit)).fetchall())
        terms = query_terms(" ".join(words))
        return [
            SearchHit(
                session, decode_id(message), role, _snippet(headline, content, terms), created
            )
            for session, message, role, content, headline, created in rows
        ]

    def _keys_read(self, fn: Callable[[Any], T]) -> T:
        return self._db.run("read", fn)

    def _keys_write(self, fn: Callable[[Any], T]) -> T:
        return self._db.run("write to", fn, atomic=True)

    # -- prefix routes ------------------------------------------------------------
    def find_prefix_routes(self, model: str, digests: Sequence[bytes]) -> dict[bytes, str]:
        """See :meth:`ChatStore.find_prefix_routes` (one statement, primary-key lookups)."""
        if not digests:
            return {}
        age = self.prefix_route_max_age
        return self._db.run("read", lambda conn: self._routes.find(conn, model, digests, age))

    def record_prefix_routes(self, model: str, digests: Sequence[bytes], host: str) -> None:
        """See :meth:`ChatStore.record_prefix_routes` (one upsert; pruning now and then)."""
        if not digests:
            return
        prune = self._prefix_prune_due()

        def write(conn: psycopg.Connection[Any]) -> None:
            self._routes.record(conn, model, digests, host)
            if prune:
                self._routes.prune(conn, self.prefix_route_max_age, self.prefix_route_limit)

        self._db.run("write to", write, atomic=prune)

    def prune_prefix_routes(self) -> int:
        """See :meth:`ChatStore.prune_prefix_routes`."""
        age, limit = self.prefix_route_max_age, self.prefix_route_limit
        return self._db.run(
            "write to", lambda conn: self._routes.prune(conn, age, limit), atomic=True
        )


def _tsquery(word: str, parts: list[str], params: list[str]) -> None:
    """Add the tsquery of one whitespace-separated query word to ``parts``/``params``.

    A word without a prefix term goes whole to ``plainto_tsquery``, which splits it as
    ``to_tsvector`` split the messages (so "foo.example.com" or "e-mail" are found as
    written). A word with prefix terms (:func:`~memory.search.query_terms`) is the AND
    of its terms: ``to_tsquery(cfg, 'token:*')`` for a prefix (a letter-and-digit run,
    so never tsquery syntax) and ``plainto_tsquery`` for the others.
    """
    terms = query_terms(word)
    if not any(term.prefix for term in terms):
        parts.append("plainto_tsquery(cfg, %s)")
        params.append(word)
        return
    for term in terms:
        if term.prefix:
            parts.append("to_tsquery(cfg, %s)")
            params.append(term.token + ":*")
        else:
            parts.append("plainto_tsquery(cfg, %s)")
            params.append(term.token)


def _check_text(session_id: str) -> None:
    if "\x00" in session_id:
        raise InvalidInputError("a session id cannot contain NUL")


def _snippet(headline: str, content: str, terms: list[Term]) -> str:
    """``ts_headline``'s extract with ollang's marks, and ``…`` where it cuts the text."""
    if HEADLINE_START in content or HEADLINE_STOP in content:  # the marks would be ambiguous
        return snippet(terms, content)
    plain = headline.replace(HEADLINE_START, "").replace(HEADLINE_STOP, "")
    head = "" if content.startswith(plain) else SNIPPET_ELLIPSIS
    tail = "" if content.endswith(plain) else SNIPPET_ELLIPSIS
    marked = headline.replace(HEADLINE_START, SNIPPET_MARK).replace(HEADLINE_STOP, SNIPPET_MARK)
    return head + marked + tail
