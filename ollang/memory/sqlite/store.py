"""The durable session store: one SQLite file, standard library only.

Why it is shaped this way:

* **Per-turn cost stays flat.** A turn reads the last N messages (an index range
  scan on ``(session_key, rowid)``) and upserts one or two rows. Nothing reads
  or rewrites the whole session, unlike checkpointers that store a snapshot of
  the full conversation per step.
* **Several processes at once.** WAL journal mode lets readers run while one
  writer writes; every write is one ``BEGIN IMMEDIATE`` transaction, which takes
  the write lock up front so concurrent writers queue (``busy_timeout``) instead
  of failing half-way, and nothing is ever half-written.
* **Several threads at once.** Each thread gets its own connection
  (``threading.local``). SQLite releases the GIL while it works, so reads in
  different threads run in parallel, and a writer waiting for another
  process's lock does not stall this process's readers, which a single shared
  connection behind a lock would.
* **Other people's files are left alone.** Before anything is written (even
  ``PRAGMA journal_mode=WAL`` writes to the file) the file is inspected
  read-only; anything that is not an ollang database raises
  :class:`~chains.errors.NotAnOllangDatabaseError`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.messages import BaseMessage

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
    compact_json,
    message_for_row,
    message_from_row,
    message_row,
)
from ollang.memory.search import fts_query
from ollang.memory.sqlite import prefix_routes
from ollang.memory.sqlite.migrations import (
    APPLICATION_ID,
    MigrationError,
    apply_migrations,
    pending_migrations,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ollang.memory.base import SessionChanges

__all__ = ["SQLiteChatStore"]

T = TypeVar("T")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SESSION_COLUMNS = "id, title, model, created, updated, message_count, owner, system, options"
_MESSAGE_COLUMNS = "id, role, content, content_blocks, reasoning, status, created, extra"
# SQLite's historical limit on bound parameters is 999; stay well below it.
_CHUNK = 500
# Words of context on each side of a match in search snippets.
_SNIPPET_TOKENS = 16
_UUID_HEX = re.compile(r"[0-9a-f]{32}")


def _db_id(message_id: str) -> str | bytes:
    """How a message id is stored: uuid hex as its 16 bytes, anything else as text.

    The mapping is one-to-one (a BLOB never equals a TEXT in SQLite), so lookups
    by id stay exact; see :mod:`memory.migrations` for why.
    """
    return bytes.fromhex(message_id) if _UUID_HEX.fullmatch(message_id) else message_id


def _message_id(stored: str | bytes) -> str:
    """The message id a stored value stands for (inverse of :func:`_db_id`)."""
    return stored.hex() if isinstance(stored, bytes) else stored


class _Connection:
    """Holds one thread's connection; weakly tracked so close() can reach it.

    When the thread ends, its ``threading.local`` slot (and so this holder and
    its connection) is freed, which closes the connection.
    """

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


# Connections inherited over fork() must never be used or closed in the child
# (closing could checkpoint and delete the parent's WAL): they are parked here.
_INHERITED: list[_Connection] = []


class SQLiteChatStore(SQLKeysMixin, ChatStore):
    """Chat sessions in an SQLite database file.

    Example::

        with SQLiteChatStore("~/.local/share/ollang/sessions.db") as store:
            store.add_messages("s1", [HumanMessage("Hi")])
            store.get_messages("s1", limit=20)

    Args:
        path: The database file. Parent directories are created; a missing or
            empty file is initialised; an existing ollang database is upgraded
            by applying pending migrations.
        read_only: Open without ever writing (``mode=ro``): reads work, every
            write raises :class:`StoreError`. The database must already exist
            and be up to date.
        timeout: Seconds to wait for another process's write lock before a
            write fails with :class:`StoreError`.

    Raises:
        NotAnOllangDatabaseError: ``path`` holds something else (another
            program's SQLite database, or not SQLite at all). It is not modified.
        StoreError: the file or its directory cannot be created, opened or read.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, timeout: float = 10.0
    ) -> None:
        self.path = Path(path).expanduser()
        self.read_only = read_only
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        # Writers of this process take turns here rather than in SQLite's busy handler,
        # which polls with sleeps of up to 100 ms: under many concurrent turns (the
        # server) that made each write wait far longer than the lock was held.
        self._write_lock = threading.Lock()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._pid = os.getpid()
        self._closed = False
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"SQLiteChatStore({str(self.path)!r}{mode})"

    # -- opening ------------------------------------------------------------------
    def _open(self) -> None:
        self._forced_read_only = False
        if not self.read_only and self.path.exists() and self._disk_state() == "read-only":
            # Reads still work on a read-only disk; writes say why they cannot.
            self.read_only = self._forced_read_only = True
        if not self.read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(
                    f"cannot create the directory {self.path.parent}: {err.strerror or err}",
                    "choose another location with OLLANG_HOME or --db",
                ) from err
        elif not self.path.exists():
            raise StoreError(f"cannot open {self.path} read-only: no such file")
        self._inspect()
        conn = self._conn()
        try:
            if self.read_only:
                missing = pending_migrations(conn)
                if missing:
                    raise StoreError(
                        f"cannot open {self.path} read-only: it needs upgrading "
                        f"({len(missing)} pending migrations)",
                        "open it once read-write to upgrade it",
                    )
                return
            # journal_mode is persistent in the file; only switch (a write) when needed.
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            apply_migrations(conn)
            self._recover_snapshots(conn)
        except MigrationError as err:
            raise StoreError(f"cannot open {self.path}: {err}", "upgrade ollang") from err
        except sqlite3.Error as err:
            raise self._error("open", err) from err

    @staticmethod
    def _recover_snapshots(conn: sqlite3.Connection) -> None:
        """Mark the snapshots a crashed process left (status ``partial``) as cut short, so
        search finds them. One still streaming in another process is only indexed early:
        its next write makes it a snapshot again, and the index follows the row."""
        if conn.execute("SELECT 1 FROM messages WHERE status = 'partial' LIMIT 1").fetchone():
            conn.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'partial'")

    def _inspect(self) -> None:
        """Refuse files that are not ours, reading only (never writing) them."""
        path = self.path
        try:
            if not path.exists():
                return
            if path.is_dir():
                raise StoreError(f"cannot open {path}: it is a directory")
            with path.open("rb") as f:
                header = f.read(len(_SQLITE_MAGIC))
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror or err}") from err
        if not header:
            return  # an empty file: fine to initialise
        if header != _SQLITE_MAGIC:
            raise NotAnOllangDatabaseError(str(path), "not an SQLite database")
        # A read-only connection: sees committed data still in the WAL, and
        # closing it never checkpoints or otherwise writes to the file.
        probe = self._connect(read_only=True)
        try:
            app_id = probe.execute("PRAGMA application_id").fetchone()[0]
            names = [
                row[0]
                for row in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise self._error("open", err) from err
            raise NotAnOllangDatabaseError(str(path), str(err)) from err
        finally:
            probe.close()
        if app_id not in (0, APPLICATION_ID):
            raise NotAnOllangDatabaseError(
                str(path), f"an SQLite database of another application (application_id {app_id:#x})"
            )
        if names and "_ollang_migrations" not in names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise NotAnOllangDatabaseError(str(path), f"an SQLite database with tables {shown}")

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        try:
            if read_only:
                target = self.path.absolute().as_uri() + "?mode=ro"
                if self._disk_state() == "read-only":
                    # Nothing can change the file, and SQLite cannot create the WAL index
                    # (-shm) it needs to read a WAL database otherwise.
                    target += "&immutable=1"
                conn = sqlite3.connect(
                    target,
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
        except sqlite3.Error as err:
            raise self._error("open", err) from err
        try:
            # isolation_level=None: autocommit, so the explicit BEGIN IMMEDIATE
            # of _write is the only transaction control.
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            # NORMAL is durable against application crashes in WAL mode; a power
            # loss may drop the last transactions but never corrupts the file.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as err:
            conn.close()
            raise self._error("open", err) from err
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")
        if os.getpid() != self._pid:  # forked: start afresh, leave the parent's alone
            with self._lock:
                if os.getpid() != self._pid:
                    _INHERITED.extend(self._connections)
                    self._connections = weakref.WeakSet()
                    self._local = threading.local()
                    self._pid = os.getpid()
        holder: _Connection | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = _Connection(self._connect(read_only=self.read_only))
            self._local.holder = holder
            with self._lock:
                self._connections.add(holder)
        return holder.conn

    def close(self) -> None:
        """Close every thread's connection. Later calls raise :class:`StoreError`."""
        with self._lock:
            self._closed = True
            holders = list(self._connections)
            self._connections = weakref.WeakSet()
        for holder in holders:
            # Best effort: a connection busy in another thread may refuse.
            with contextlib.suppress(sqlite3.Error):
                holder.conn.close()

    # -- plumbing -----------------------------------------------------------------
    def _error(self, action: str, err: sqlite3.Error) -> StoreError:
        """A :class:`StoreError` naming the file, with a hint for the usual causes."""
        text = str(err)
        low = text.lower()
        hint = ""
        # SQLite reports a full or read-only disk as a plain "disk I/O error" when it
        # happens on its -wal/-shm files: ask the file system which it is.
        io_kind = ("disk i/o", "unable to open", "full", "readonly", "read-only")
        disk = self._disk_state() if any(kind in low for kind in io_kind) else None
        if disk == "full":
            text = f"the disk is full ({text})"
        elif disk == "read-only":
            text = f"the file system is read-only ({text})"
        low = text.lower()
        if "readonly" in low or "read-only" in low or "read only" in low:
            hint = "the database file or its directory is read-only; check their permissions"
        elif "locked" in low or "busy" in low:
            hint = f"another process kept the database busy for over {self.timeout:g} s; try again"
        elif "full" in low:
            hint = "the disk is full; free some space"
        elif "unable to open" in low:
            hint = "check that the directory exists and that you may write to it"
        elif "malformed" in low or "not a database" in low:
            hint = "the file is damaged; restore it from a backup or move it away"
        return StoreError(f"cannot {action} {self.path}: {text}", hint)

    def _disk_state(self) -> str | None:
        """``"full"``, ``"read-only"`` or ``None`` for the file system holding the store."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        if st.f_flag & os.ST_RDONLY:
            return "read-only"
        if st.f_bavail * st.f_frsize < 256 * 1024:
            return "full"
        return None

    _key_sql = KeySQL("?")

    def _keys_read(self, fn: Callable[[Any], T]) -> T:
        return self._read(fn)

    def _keys_write(self, fn: Callable[[Any], T]) -> T:
        return self._write(fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn()
        try:
            return fn(conn)
        except sqlite3.Error as err:
            raise self._error("read", err) from err

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction: all of it or nothing."""
        if self._forced_read_only:
            raise StoreError(
                f"cannot write to {self.path}: the file system is read-only",
                "nothing was saved; make the data directory writable (or set OLLANG_HOME)",
            )
        if self.read_only:
            raise StoreError(
                f"cannot write to {self.path}: it was opened read-only",
                "open it without read_only to change it",
            )
        conn = self._conn()
        if getattr(self._local, "batch", False):
            return self._write_in_batch(conn, fn)
        try:
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as err:
            raise self._error("write to", err) from err
        return result

    def _write_in_batch(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` inside this thread's batch transaction, in a savepoint of its own."""
        try:
            conn.execute("SAVEPOINT ollang_call")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK TO ollang_call")
                conn.execute("RELEASE ollang_call")
                self._forget_session_keys()
                raise
            conn.execute("RELEASE ollang_call")
        except sqlite3.Error as err:
            raise self._error("write to", err) from err
        return result

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """See :meth:`ChatStore.batch`: one ``BEGIN IMMEDIATE`` transaction for this
        thread's calls, a savepoint for each."""
        if getattr(self._local, "batch", False):  # nested: the outer batch commits
            yield
            return
        if self.read_only or self._forced_read_only:
            yield  # every write inside raises its own clear error
            return
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._error("write to", err) from err
            self._local.batch = True
            self._local.latest = None
            self._local.keys = {}
            try:
                yield
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as err:
                    raise self._error("write to", err) from err
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.batch = False
                self._local.latest = None
                self._local.keys = None

    def _now(self, conn: sqlite3.Connection) -> float:
        # Strictly after every stored `updated`, even when the clock is coarse or
        # steps back, so "most recently updated" is always well defined. Inside a batch
        # the write lock is held throughout: the newest value is read once, then kept.
        latest = getattr(self._local, "latest", None) if self._in_batch() else None
        if latest is None:
            latest = conn.execute("SELECT max(updated) FROM sessions").fetchone()[0]
        now = time.time()
        now = now if latest is None or now > latest else latest + 1e-6
        if self._in_batch():
            self._local.latest = now
        return now

    def _in_batch(self) -> bool:
        return bool(getattr(self._local, "batch", False))

    def _ensure_session(self, conn: sqlite3.Connection, session_id: str, now: float) -> int:
        # Inside a batch the write lock is held throughout, so a session's key, once read,
        # stands until this thread deletes or renames a session or rolls a call back
        # (each clears the map): a turn's several writes look it up once.
        keys: dict[str, int] | None = getattr(self._local, "keys", None)
        if keys is not None and session_id in keys:
            return keys[session_id]
        row = conn.execute("SELECT key FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:  # one statement for the usual case, a session that exists
            row = conn.execute(
                "INSERT INTO sessions(id, created, updated) VALUES (?, ?, ?) RETURNING key",
                (session_id, now, now),
            ).fetchone()
        if keys is not None:
            keys[session_id] = int(row[0])
        return int(row[0])

    def _forget_session_keys(self) -> None:
        """Sessions were deleted, renamed or rolled back: keys read in this batch may be stale."""
        if getattr(self._local, "keys", None) is not None:
            self._local.keys = {}

    # -- messages -----------------------------------------------------------------
    def get_messages(self, session_id: str, limit: int | None = None) -> list[BaseMessage]:
        """See :meth:`ChatStore.get_messages`."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        sql, params = self._messages_query(session_id, limit)

        def read(conn: sqlite3.Connection) -> list[BaseMessage]:
            rows = conn.execute(sql, params).fetchall()
            rows.reverse()
            fetch = functools.partial(_fetch_images, conn)
            return [message_from_row(row, _message_id, fetch) for row in rows]

        return self._read(read)

    def get_messages_before(self, session_id: str, before: str, limit: int) -> list[BaseMessage]:
        """See :meth:`ChatStore.get_messages_before` (an index range scan: O(limit))."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")

        def read(conn: sqlite3.Connection) -> list[BaseMessage]:
            row = conn.execute(
                "SELECT m.session_key, m.rowid FROM messages AS m "
                "WHERE m.session_key = (SELECT key FROM sessions WHERE id = ?) AND m.id = ?",
                (session_id, _db_id(before)),
            ).fetchone()
            if row is None:
                raise LookupError(f"no message {before!r} in session {session_id!r}")
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_key = ? AND rowid < ? "
                "ORDER BY rowid DESC LIMIT ?",
                (row[0], row[1], limit),
            ).fetchall()
            rows.reverse()
            fetch = functools.partial(_fetch_images, conn)
            return [message_from_row(row, _message_id, fetch) for row in rows]

        return self._read(read)

    @staticmethod
    def _link_images(
        conn: sqlite3.Connection, key: int, message_id: Any, images: list[StoredImage]
    ) -> None:
        """Store each image once and record which message refers to it."""
        rowid = conn.execute(
            "SELECT rowid FROM messages WHERE session_key = ? AND id = ?", (key, message_id)
        ).fetchone()[0]
        for image in images:
            digest = bytes.fromhex(image.hash)
            conn.execute(
                "INSERT OR IGNORE INTO images(hash, mime, data) VALUES (?, ?, ?)",
                (digest, image.mime, image.data),
            )
            conn.execute(
                "INSERT OR IGNORE INTO message_images(message_rowid, hash) VALUES (?, ?)",
                (rowid, digest),
            )

    @staticmethod
    def _linked_hashes(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> set[bytes]:
        """The image hashes the messages matching ``where`` refer to (read before deleting)."""
        rows = conn.execute(
            "SELECT DISTINCT l.hash FROM message_images AS l "
            f"WHERE l.message_rowid IN (SELECT rowid FROM messages WHERE {where})",
            params,
        ).fetchall()
        return {row[0] for row in rows}

    @staticmethod
    def _forget_images(conn: sqlite3.Connection, hashes: set[bytes]) -> None:
        """Drop the links of deleted messages and those of ``hashes`` no message uses now.

        Scoped to what was deleted (by primary key and the hash index), so a delete costs
        the same with 20 images stored or 20,000.
        """
        if not hashes:
            return
        # ON DELETE CASCADE removed the links when foreign_keys is on; explicit anyway.
        conn.executemany(
            "DELETE FROM message_images WHERE hash = ? AND NOT EXISTS "
            "(SELECT 1 FROM messages WHERE messages.rowid = message_images.message_rowid)",
            [(h,) for h in hashes],
        )
        conn.executemany(
            "DELETE FROM images WHERE hash = ? AND NOT EXISTS "
            "(SELECT 1 FROM message_images WHERE message_images.hash = images.hash)",
            [(h,) for h in hashes],
        )

    @staticmethod
    def _messages_query(session_id: str, limit: int | None) -> tuple[str, tuple[Any, ...]]:
        """The SQL of :meth:`get_messages`: newest first, by index range scan."""
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages "
            "WHERE session_key = (SELECT key FROM sessions WHERE id = ?) "
            "ORDER BY rowid DESC"
        )
        if limit is None:
            return sql, (session_id,)
        return sql + " LIMIT ?", (session_id, limit)

    def add_messages(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """See :meth:`ChatStore.add_messages`."""
        self._upsert(session_id, messages, partial=False)

    def add_snapshot(self, session_id: str, message: BaseMessage) -> None:
        """See :meth:`ChatStore.add_snapshot`: stored with status ``partial``, which the
        search index skips (migration ``m007``)."""
        self._upsert(session_id, [message], partial=True)

    def _upsert(self, session_id: str, messages: Sequence[BaseMessage], *, partial: bool) -> None:
        if not messages:
            return
        # Everything that can fail on the input fails here, before the transaction.
        rows: list[tuple[tuple[Any, ...], str | None, str | None, list[StoredImage]]] = []
        for message in messages:
            data, images, title, model = message_for_row(message)
            row = message_row(data, _db_id)
            if partial:
                row = (*row[:5], PARTIAL_STATUS, *row[6:])
            rows.append((row, title, model, images))

        def write(conn: sqlite3.Connection) -> None:
            now = self._now(conn)
            key = self._ensure_session(conn, session_id, now)
            added = 0
            title: str | None = None
            model: str | None = None
            for p, derived, used, images in rows:
                updated = conn.execute(
                    "UPDATE messages SET role = ?, content = ?, content_blocks = ?, "
                    "reasoning = ?, status = ?, extra = ? WHERE session_key = ? AND id = ?",
                    (p[1], p[2], p[3], p[4], p[5], p[7], key, p[0]),
                ).rowcount
                if not updated:
                    conn.execute(
                        f"INSERT INTO messages(session_key, {_MESSAGE_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, *p[:6], p[6] if p[6] is not None else now, p[7]),
                    )
                    added += 1
                if images:
                    self._link_images(conn, key, p[0], images)
                title = title or derived
                model = used or model
            if partial and not added:
                return  # a later snapshot: the session's count, title and model stand
            conn.execute(
                "UPDATE sessions SET updated = ?, message_count = message_count + ?, "
                "title = coalesce(title, ?), model = coalesce(?, model) WHERE key = ?",
                (now, added, title, model, key),
            )

        self._write(write)

    def delete_messages(self, session_id: str, message_ids: Sequence[str]) -> int:
        """See :meth:`ChatStore.delete_messages`."""
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT key FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                return 0
            deleted = 0
            hashes: set[bytes] = set()
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                params = (row[0], *map(_db_id, chunk))
                hashes |= self._linked_hashes(conn, f"session_key = ? AND id IN ({marks})", params)
                deleted += conn.execute(
                    f"DELETE FROM messages WHERE session_key = ? AND id IN ({marks})", params
                ).rowcount
            if deleted:
                conn.execute(
                    "UPDATE sessions SET message_count = message_count - ?, updated = ? "
                    "WHERE key = ?",
                    (deleted, self._now(conn), row[0]),
                )
                self._forget_images(conn, hashes)
            return deleted

        return self._write(write)

    # -- sessions -----------------------------------------------------------------
    def get_session(self, session_id: str) -> SessionInfo | None:
        """See :meth:`ChatStore.get_session`."""
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        )
        return _session_info(row) if row else None

    def list_sessions(self, *, owner: str | None = None) -> list[SessionInfo]:
        """See :meth:`ChatStore.list_sessions`."""
        where, params = ("", ()) if owner is None else ("WHERE owner = ? ", (owner,))
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions {where}ORDER BY updated DESC, key DESC",
                params,
            ).fetchall()
        )
        return [_session_info(row) for row in rows]

    def claim_session(self, session_id: str, owner: str | None) -> bool:
        """See :meth:`ChatStore.claim_session`.

        An existing session is checked with a plain read (owners never change);
        creating one is a single write transaction that re-checks, so two
        claimants racing on a new id cannot both get it.
        """

        def owner_of(conn: sqlite3.Connection) -> tuple[str | None] | None:
            row: tuple[str | None] | None = conn.execute(
                "SELECT owner FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return row

        def write(conn: sqlite3.Connection) -> tuple[str | None]:
            row = owner_of(conn)
            if row is None:
                now = self._now(conn)
                conn.execute(
                    "INSERT INTO sessions(id, created, updated, owner) VALUES (?, ?, ?, ?)",
                    (session_id, now, now, owner),
                )
                return (owner,)
            return row

        row = self._read(owner_of) or self._write(write)
        return owner is None or row[0] == owner

    def update_session(self, session_id: str, **changes: Unpack[SessionChanges]) -> None:
        """See :meth:`ChatStore.update_session`."""
        title, model, system, options = self._session_changes(changes)
        encoded = None if options is None else compact_json(dict(options)) if options else ""

        def write(conn: sqlite3.Connection) -> None:
            now = self._now(conn)
            key = self._ensure_session(conn, session_id, now)
            conn.execute(
                "UPDATE sessions SET title = coalesce(?, title), model = coalesce(?, model), "
                "system = CASE WHEN ? IS NULL THEN system ELSE nullif(?, '') END, "
                "options = CASE WHEN ? IS NULL THEN options ELSE nullif(?, '') END, "
                "updated = ? WHERE key = ?",
                (title, model, system, system, encoded, encoded, now, key),
            )

        self._write(write)

    def delete_session(self, session_id: str) -> bool:
        """See :meth:`ChatStore.delete_session`."""

        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT key FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                return False
            # Explicit, though ON DELETE CASCADE would do it: it does not depend on
            # the connection having foreign_keys on.
            hashes = self._linked_hashes(conn, "session_key = ?", (row[0],))
            conn.execute("DELETE FROM messages WHERE session_key = ?", (row[0],))
            conn.execute("DELETE FROM sessions WHERE key = ?", (row[0],))
            self._forget_session_keys()
            self._forget_images(conn, hashes)
            return True

        return self._write(write)

    def rename_session(self, old: str, new: str) -> None:
        """See :meth:`ChatStore.rename_session`."""

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT key FROM sessions WHERE id = ?", (old,)).fetchone()
            if row is None:
                raise SessionNotFoundError(old)
            if old == new:
                return
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (new,)).fetchone():
                raise SessionExistsError(new)
            conn.execute(
                "UPDATE sessions SET id = ?, updated = ? WHERE key = ?",
                (new, self._now(conn), row[0]),
            )
            self._forget_session_keys()

        self._write(write)

    def fork_session(self, source: str, target: str, *, owner: str | None = None) -> int:
        """See :meth:`ChatStore.fork_session`: one write transaction that creates
        ``target`` (with the source's owner and settings) only if no session has that id,
        and copies the messages and their image links row by row in SQL."""

        def write(conn: sqlite3.Connection) -> int:
            src = conn.execute(
                "SELECT key, owner, title, model, system, options FROM sessions WHERE id = ?",
                (source,),
            ).fetchone()
            if src is None or (owner is not None and src[1] != owner):
                raise SessionNotFoundError(source)
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (target,)).fetchone():
                raise SessionExistsError(target)
            now = self._now(conn)
            key = conn.execute(
                "INSERT INTO sessions(id, created, updated, owner, title, model, system, options) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (target, now, now, *src[1:]),
            ).lastrowid
            rowids = [
                row[0]
                for row in conn.execute(
                    "SELECT rowid FROM messages WHERE session_key = ? ORDER BY rowid", (src[0],)
                )
            ]
            linked = {
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT l.message_rowid FROM message_images AS l "
                    "JOIN messages AS m ON m.rowid = l.message_rowid WHERE m.session_key = ?",
                    (src[0],),
                )
            }
            for old in rowids:
                new = conn.execute(
                    f"INSERT INTO messages(session_key, {_MESSAGE_COLUMNS}) "
                    "SELECT ?, ?, role, content, content_blocks, reasoning, "
                    "CASE status WHEN 'partial' THEN 'interrupted' ELSE status END, created, "
                    "extra FROM messages WHERE rowid = ?",
                    (key, uuid.uuid4().bytes, old),
                ).lastrowid
                if old in linked:
                    conn.execute(
                        "INSERT INTO message_images(message_rowid, hash) "
                        "SELECT ?, hash FROM message_images WHERE message_rowid = ?",
                        (new, old),
                    )
            conn.execute("UPDATE sessions SET message_count = ? WHERE key = ?", (len(rowids), key))
            return len(rowids)

        return self._write(write)

    # -- search -------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 50) -> list[SearchHit]:
        """See :meth:`ChatStore.search` (FTS5 word match, newest first)."""
        query = fts_query(text, prefix=True)
        if not query or limit <= 0:
            return []
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT s.id, m.id, m.role, "
                "snippet(messages_fts, 0, ?, ?, ?, ?), m.created "
                "FROM messages_fts JOIN messages AS m ON m.rowid = messages_fts.rowid "
                "JOIN sessions AS s ON s.key = m.session_key "
                "WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT ?",
                (SNIPPET_MARK, SNIPPET_MARK, SNIPPET_ELLIPSIS, _SNIPPET_TOKENS, query, limit),
            ).fetchall()
        )
        return [
            SearchHit(session, _message_id(message), role, text, created)
            for session, message, role, text, created in rows
        ]

    # -- prefix routes ------------------------------------------------------------
    def find_prefix_routes(self, model: str, digests: Sequence[bytes]) -> dict[bytes, str]:
        """See :meth:`ChatStore.find_prefix_routes` (primary-key seeks)."""
        if not digests:
            return {}
        oldest = time.time() - self.prefix_route_max_age
        return self._read(lambda conn: prefix_routes.find(conn, model, digests, oldest))

    def record_prefix_routes(self, model: str, digests: Sequence[bytes], host: str) -> None:
        """See :meth:`ChatStore.record_prefix_routes`."""
        if not digests:
            return
        prune = self._prefix_prune_due()

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            prefix_routes.record(conn, model, digests, host, now)
            if prune:
                prefix_routes.prune(conn, now - self.prefix_route_max_age, self.prefix_route_limit)

        self._write(write)

    def prune_prefix_routes(self) -> int:
        """See :meth:`ChatStore.prune_prefix_routes`."""
        return self._write(
            lambda conn: prefix_routes.prune(
                conn, time.time() - self.prefix_route_max_age, self.prefix_route_limit
            )
        )


def _session_info(row: tuple[Any, ...]) -> SessionInfo:
    key, title, model, created, updated, count, owner, system, options = row
    return SessionInfo(
        key,
        title,
        model,
        created,
        updated,
        count,
        owner,
        system=system,
        options=json.loads(options) if options else None,
    )


def _fetch_images(conn: sqlite3.Connection, refs: list[str]) -> dict[str, bytes]:
    marks = ", ".join("?" * len(refs))
    rows = conn.execute(
        f"SELECT hash, data FROM images WHERE hash IN ({marks})",
        [bytes.fromhex(ref) for ref in refs],
    ).fetchall()
    return {bytes(digest).hex(): bytes(data) for digest, data in rows}
