"""The SQLite schema of the session store, as an append-only list of migrations.

In the manner of simonw/llm: each migration is a named function, applied once,
in its own transaction, and recorded in ``_ollang_migrations``. To change the
schema, *append* a function decorated with :func:`migration`; never edit or
reorder released ones, because databases in the wild have already run them.

The database is marked as ollang's with ``PRAGMA application_id`` (so other
programs, and ollang itself, can tell it apart from other SQLite files) and
``PRAGMA user_version`` counts the migrations applied.

Schema notes:

* ``sessions.key`` is an integer surrogate key. Messages refer to it rather
  than to the text id, which keeps every message row and index entry a few
  bytes instead of a repeated session name, and makes renaming a session a
  one-row update.
* ``messages.rowid`` (AUTOINCREMENT: never reused) is the global append order;
  the index on ``(session_key, rowid)`` makes "last N messages of a session" an
  index range scan whose cost does not grow with the session.
* Message ids are unique per session (``UNIQUE(session_key, id)``), the upsert
  key. Per session rather than global so that an exported session can be
  imported next to its original. Ids that are uuid4 hex strings (all of
  ollang's) are stored as their 16 bytes, other ids as text (the column has no
  type affinity, so neither is converted): the id is in the row *and* in the
  unique index, and at 32 characters it was a tenth of a typical message.
* ``status`` is NULL for ``complete`` (the common case costs nothing).
* ``content`` holds the message's plain text (what search indexes);
  ``content_blocks`` holds the JSON list when the content is a list of blocks,
  else NULL. ``extra`` is compact JSON for everything else (usage, tool calls,
  response metadata, ...), NULL when there is nothing.
* ``messages_fts`` is an FTS5 index with external content: it stores only the
  index, reading text from ``messages`` for snippets, so text is not stored twice.
  ``columnsize=0`` drops the per-row token counts, which only bm25 ranking
  needs; search orders by recency.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from ollang.memory.migrating import MigrationError, unapplied

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "MigrationError",
    "apply_migrations",
    "migration",
    "pending_migrations",
]

#: ``PRAGMA application_id`` of ollang databases: "OLLG" in ASCII.
APPLICATION_ID = 0x4F4C4C47

Migration = Callable[[sqlite3.Connection], None]

#: Every migration in order, as ``(name, function)``. Append only.
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, named after the function."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def _run(db: sqlite3.Connection, *statements: str) -> None:
    # One execute() per statement: executescript() would COMMIT the migration's
    # transaction half-way.
    for statement in statements:
        db.execute(statement)


#: The triggers that keep ``messages_fts`` in step with ``messages``, then its
#: first fill: what each migration that (re)creates the index runs after it.
#: Released migrations run these statements: never edit them.
_SEARCH_SYNC = (
    """
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END
        """,
    """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
        END
        """,
    # Only when the text really changed: a status-only upsert skips the index.
    """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
        WHEN old.content IS NOT new.content BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END
        """,
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)
#: What a migration that rebuilds the index drops first (never edit, as above).
_DROP_SEARCH = (
    "DROP TRIGGER messages_fts_insert",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_update",
    "DROP TABLE messages_fts",
)


@migration
def m001_sessions_and_messages(db: sqlite3.Connection) -> None:
    """Sessions, messages and the indexes the hot path needs."""
    _run(
        db,
        """
        CREATE TABLE sessions (
            key INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            title TEXT,
            model TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            message_count INTEGER NOT NULL DEFAULT 0,
            owner TEXT
        )
        """,
        "CREATE INDEX sessions_by_updated ON sessions(updated)",
        """
        CREATE TABLE messages (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            session_key INTEGER NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
            id NOT NULL,  -- no affinity: 16-byte BLOB for uuid hex ids, else TEXT
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            content_blocks TEXT,
            reasoning TEXT,
            status TEXT,
            created REAL NOT NULL,
            extra TEXT,
            UNIQUE (session_key, id)
        )
        """,
        "CREATE INDEX messages_by_session ON messages(session_key, rowid)",
    )


@migration
def m002_message_search(db: sqlite3.Connection) -> None:
    """Full-text search over message text, kept in sync by triggers."""
    _run(
        db,
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='rowid', columnsize=0
        )
        """,
        *_SEARCH_SYNC,
    )


@migration
def m003_search_index_without_positions(db: sqlite3.Connection) -> None:
    """Rebuild the search index without token positions (``detail=none``).

    Positions made the index about 0.54x the size of the text and pushed disk use
    past 2x the text; without them it is about 0.17x. The cost: no phrase queries,
    so a search finds messages containing every token typed, in any order.
    """
    _run(
        db,
        *_DROP_SEARCH,
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='rowid', columnsize=0, detail=none
        )
        """,
        *_SEARCH_SYNC,
    )


@migration
def m004_session_settings(db: sqlite3.Connection) -> None:
    """A session keeps how it was started: its system prompt and model options (JSON)."""
    _run(
        db,
        "ALTER TABLE sessions ADD COLUMN system TEXT",
        "ALTER TABLE sessions ADD COLUMN options TEXT",
    )


@migration
def m005_images(db: sqlite3.Connection) -> None:
    """Images once per content (SHA-256), referenced by the messages that carry them."""
    _run(
        db,
        """
        CREATE TABLE images (
            hash BLOB PRIMARY KEY,
            mime TEXT NOT NULL,
            data BLOB NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE message_images (
            message_rowid INTEGER NOT NULL REFERENCES messages(rowid) ON DELETE CASCADE,
            hash BLOB NOT NULL,
            PRIMARY KEY (message_rowid, hash)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX message_images_by_hash ON message_images(hash)",
    )


@migration
def m006_search_by_word_stems(db: sqlite3.Connection) -> None:
    """Search by word stems ("penguin" finds "penguins"): the index rebuilt with the
    porter tokenizer over unicode61 (still without positions, as since m003)."""
    _run(
        db,
        *_DROP_SEARCH,
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='rowid', columnsize=0, detail=none,
            tokenize='porter unicode61'
        )
        """,
        *_SEARCH_SYNC,
    )


@migration
def m007_snapshots_outside_search(db: sqlite3.Connection) -> None:
    """A streaming reply's once-a-second snapshots (status ``partial``) stay out of the
    search index; the reply is indexed when it is stored for good (complete, cut short
    or failed), or when a store opened after a crash marks it ``interrupted``.

    Re-indexing the whole answer at every flush was the largest part of what storing a
    turn cost per token (issue 24). The triggers test the status of the row on each side
    of a change, so the index holds exactly the rows that are not ``partial``, whoever
    changes them. ``messages_partial`` finds the snapshots left by a crash at once.
    """
    _run(
        db,
        "DROP TRIGGER messages_fts_insert",
        "DROP TRIGGER messages_fts_delete",
        "DROP TRIGGER messages_fts_update",
        """
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
        WHEN new.status IS NOT 'partial' BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
        WHEN old.status IS NOT 'partial' BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages
        WHEN old.content IS NOT new.content
            OR (old.status IS 'partial') IS NOT (new.status IS 'partial') BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                SELECT 'delete', old.rowid, old.content WHERE old.status IS NOT 'partial';
            INSERT INTO messages_fts(rowid, content)
                SELECT new.rowid, new.content WHERE new.status IS NOT 'partial';
        END
        """,
        "CREATE INDEX messages_partial ON messages(session_key) WHERE status = 'partial'",
    )


@migration
def m008_prefix_routes(db: sqlite3.Connection) -> None:
    """Where each conversation of a stateless client was last served: a digest of its
    messages (:mod:`ollang.routing.prefix`; nothing of the messages themselves) and the
    host, so the next turn goes back to that host's prompt cache. ``seen`` (epoch
    seconds) expires a route and orders the pruning of the oldest ones."""
    _run(
        db,
        """
        CREATE TABLE prefix_routes (
            digest BLOB PRIMARY KEY,
            model TEXT NOT NULL,
            host TEXT NOT NULL,
            seen REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX prefix_routes_by_seen ON prefix_routes(seen)",
    )


@migration
def m009_keys_and_usage(db: sqlite3.Connection) -> None:
    """Managed API keys (:mod:`ollang.memory.keys`: the SHA-256 hex of the secret, never
    the secret; ``owner`` outlives rotations; ``models`` a JSON list of patterns) and usage,
    one row per key name x model x UTC day whose counters turns add to."""
    _run(
        db,
        """
        CREATE TABLE api_keys (
            name TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            owner TEXT NOT NULL,
            models TEXT NOT NULL DEFAULT '[]',
            rpm INTEGER,
            tpm INTEGER,
            daily_tokens INTEGER,
            max_concurrent INTEGER,
            weight REAL NOT NULL DEFAULT 1.0,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            revoked REAL
        )
        """,
        """
        CREATE TABLE usage (
            key TEXT NOT NULL,
            model TEXT NOT NULL,
            day TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            busy_s REAL NOT NULL DEFAULT 0,
            queue_s REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (key, model, day)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX usage_by_day ON usage(day)",
    )


@migration
def m010_rate_windows(db: sqlite3.Connection) -> None:
    """The keys' rate limits (:mod:`ollang.server.limits`): one counter per key name x
    kind (requests, tokens a minute, tokens a day) x fixed window, by the window's start
    (epoch seconds), so that every process on the file counts against the same row."""
    _run(
        db,
        """
        CREATE TABLE rate_windows (
            key TEXT NOT NULL,
            kind TEXT NOT NULL,
            window_start INTEGER NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (key, kind, window_start)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX rate_windows_by_start ON rate_windows(window_start)",
    )


def _applied(db: sqlite3.Connection) -> list[str]:
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_ollang_migrations'"
    ).fetchone()
    if not exists:
        return []
    return [row[0] for row in db.execute("SELECT name FROM _ollang_migrations ORDER BY rowid")]


def pending_migrations(db: sqlite3.Connection) -> list[str]:
    """Names of migrations not yet applied to ``db`` (reads only).

    Raises:
        MigrationError: ``db`` has migrations this ollang does not know (it was
            written by a newer version).
    """
    return unapplied(_applied(db), [name for name, _ in MIGRATIONS])


def apply_migrations(db: sqlite3.Connection) -> list[str]:
    """Apply every pending migration, each in its own ``BEGIN IMMEDIATE`` transaction.

    Safe when several processes open a new database at once: the applied list is
    re-read inside each write transaction, so every migration runs exactly once.

    Args:
        db: A connection in autocommit mode (``isolation_level=None``).

    Returns:
        Names of the migrations applied by this call.
    """
    done: list[str] = []
    if not pending_migrations(db):
        return done
    for number, (name, fn) in enumerate(MIGRATIONS, start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS _ollang_migrations ("
                "name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            if name not in _applied(db):
                fn(db)
                db.execute(
                    "INSERT INTO _ollang_migrations(name, applied_at) VALUES (?, ?)",
                    (name, time.time()),
                )
                done.append(name)
            # Pragmas take no parameters; both values are integers we control.
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return done
