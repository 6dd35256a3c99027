"""The PostgreSQL schema of the session store, as an append-only list of migrations.

The same scheme as :mod:`memory.migrations` for SQLite: each migration is a named
function, applied once in its own transaction and recorded in the ``migrations``
table of the store's schema. To change the schema, *append* a function decorated
with :func:`migration`; never edit or reorder released ones. A database that has
migrations this ollang does not know was written by a newer ollang and is refused.

Everything lives in one PostgreSQL schema (``ollang`` unless the store URL says
``?schema=NAME``), so ollang can share a database with other applications (Open
WebUI, LiteLLM) without touching their tables, and tests can use a fresh schema each.

Schema notes (the reasons mirror SQLite's, see :mod:`memory.migrations`):

* ``sessions.key`` is a ``bigint`` surrogate key: messages refer to it, not to the
  text id, which keeps each message row and index entry small and makes a rename a
  one-row update.
* ``messages.seq`` (an identity column, never reused) is the global append order.
  The primary key is ``(session_key, seq)``: it makes "the last N messages of a
  session" a backward index range scan whose cost does not grow with the session,
  and there is deliberately no index on ``seq`` alone, which the planner would
  otherwise walk backwards filtering for the session (seen with few sessions: a
  scan of the whole table for an old session).
* ``UNIQUE (session_key, id)`` is the upsert key (``INSERT ... ON CONFLICT``). Ids
  are ``bytea``: uuid4 hex ids (all of ollang's) as their 16 bytes, others as UTF-8
  (see :func:`memory.pg_sql.encode_id`), half the bytes of the text in the row and
  in the index.
* ``content`` is the message's plain text, what search indexes; ``content_json``
  holds the exact content as JSON when that is not a NUL-free string (a list of
  blocks, or text with NUL, which PostgreSQL's ``text`` cannot hold). ``extra`` is
  compact JSON for everything else, stored as ``text``: ``jsonb`` would refuse
  ``\\u0000`` and costs more disk, and the store never queries inside it.
* Search is an expression GIN index on ``to_tsvector(<schema>.english, content)``:
  the tsvector is not stored in the row (text is not stored twice). The text search
  configuration ``<schema>.english`` is PostgreSQL's ``english`` (Snowball stemming:
  "penguin" finds "penguins") without its stop-word list, so that every word a user
  types is searchable ("a", "or", "not" included), as in the SQLite store.
* ``images`` holds each image once, keyed by the SHA-256 of its bytes (``bytea``,
  stored uncompressed: image formats are compressed already); ``message_images`` links
  a message (by its primary key) to the images its blocks refer to. Only a link's
  image has a foreign key (see :func:`m004_images`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from ollang.memory.migrating import MigrationError, unapplied

__all__ = [
    "MIGRATIONS",
    "MigrationError",
    "apply_migrations",
    "migration",
    "pending_migrations",
]

Migration = Callable[[psycopg.Connection, str], None]

#: Every migration in order, as ``(name, function)``. Append only.
MIGRATIONS: list[tuple[str, Migration]] = []

# One number for pg_advisory_xact_lock: serialises ollang processes migrating the
# same database at once (CREATE SCHEMA IF NOT EXISTS alone races).
_LOCK_KEY = 0x4F4C4C47  # "OLLG", as SQLite's application_id


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, named after the function."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def _run(db: psycopg.Connection, schema: str, *statements: str) -> None:
    # Statements are templates with {s} for the (validated, quoted) schema name.
    for statement in statements:
        db.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))


@migration
def m001_sessions_and_messages(db: psycopg.Connection, schema: str) -> None:
    """Sessions, messages and the indexes the hot path needs."""
    _run(
        db,
        schema,
        """
        CREATE TABLE {s}.sessions (
            key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            title text,
            model text,
            created double precision NOT NULL,
            updated double precision NOT NULL,
            message_count integer NOT NULL DEFAULT 0,
            owner text
        )
        """,
        "CREATE INDEX sessions_by_updated ON {s}.sessions (updated)",
        "CREATE INDEX sessions_by_owner ON {s}.sessions (owner, updated) WHERE owner IS NOT NULL",
        """
        CREATE TABLE {s}.messages (
            session_key bigint NOT NULL REFERENCES {s}.sessions (key) ON DELETE CASCADE,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            id bytea NOT NULL,
            role text NOT NULL,
            content text NOT NULL,
            content_json text,
            reasoning text,
            status text,
            created double precision NOT NULL,
            extra text,
            PRIMARY KEY (session_key, seq),
            UNIQUE (session_key, id)
        )
        """,
    )


@migration
def m002_message_search(db: psycopg.Connection, schema: str) -> None:
    """Full-text search: an English configuration without stop words, and a GIN index."""
    _run(
        db,
        schema,
        "CREATE TEXT SEARCH DICTIONARY {s}.english_stem (TEMPLATE = snowball, LANGUAGE = english)",
        "CREATE TEXT SEARCH CONFIGURATION {s}.english (COPY = pg_catalog.english)",
        """
        ALTER TEXT SEARCH CONFIGURATION {s}.english
            ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
            WITH {s}.english_stem
        """,
    )
    # The index expression must be the very one the search query uses. A small pending
    # list (256 kB, default 4 MB): GIN queues new entries there uncompressed and never
    # gives its pages back, which made the index larger than the text itself (5.0 MiB
    # at 10,000 messages); merged every 256 kB it was 1.3 MiB, filled as fast.
    db.execute(
        sql.SQL(
            "CREATE INDEX messages_search ON {s}.messages USING gin ({tsv}) "
            "WITH (gin_pending_list_limit = 256)"
        ).format(s=sql.Identifier(schema), tsv=sql.SQL(search_vector(schema)))
    )


@migration
def m003_session_settings(db: psycopg.Connection, schema: str) -> None:
    """A session's system prompt and model options (:attr:`SessionInfo.system`/``options``).

    Nullable columns without a default: adding them rewrites nothing, however many
    sessions there are. ``system`` holds the prompt; ``system_json`` holds it instead, as
    JSON, when it has NUL (which ``text`` cannot hold), as ``content``/``content_json``
    do for messages. ``options`` is compact JSON (an object), or NULL for none.
    """
    _run(
        db,
        schema,
        "ALTER TABLE {s}.sessions ADD COLUMN system text, ADD COLUMN system_json text, "
        "ADD COLUMN options text",
    )


@migration
def m004_images(db: psycopg.Connection, schema: str) -> None:
    """Images once per content (SHA-256, :mod:`memory.images`), linked to their messages.

    ``message_images`` says which message (by its primary key) refers to which image;
    the store deletes a message's links with the message and then the images left
    without links. Links have no foreign key to ``messages``: its cascade would run a
    trigger per deleted message, images or not, which a session's deletion would pay
    for every message. The key to ``images`` keeps every link's image present.
    """
    _run(
        db,
        schema,
        """
        CREATE TABLE {s}.images (
            hash bytea PRIMARY KEY,
            mime text NOT NULL,
            data bytea NOT NULL
        )
        """,
        """
        CREATE TABLE {s}.message_images (
            session_key bigint NOT NULL,
            seq bigint NOT NULL,
            hash bytea NOT NULL REFERENCES {s}.images (hash),
            PRIMARY KEY (session_key, seq, hash)
        )
        """,
        "CREATE INDEX message_images_by_hash ON {s}.message_images (hash)",
        # Image bytes are already compressed (PNG, JPEG): pglz would only spend time.
        "ALTER TABLE {s}.images ALTER COLUMN data SET STORAGE EXTERNAL",
    )


@migration
def m005_snapshots_outside_search(db: psycopg.Connection, schema: str) -> None:
    """A streaming reply's once-a-second snapshots (status ``partial``) stay out of the
    search index, as in SQLite's ``m007``: the index is partial, and the search query
    carries the same predicate. ``messages_partial`` finds the snapshots a crashed
    replica left, which the next store opened marks ``interrupted`` (then indexed)."""
    _run(db, schema, "DROP INDEX {s}.messages_search")
    db.execute(
        sql.SQL(
            "CREATE INDEX messages_search ON {s}.messages USING gin ({tsv}) "
            "WITH (gin_pending_list_limit = 256) WHERE status IS DISTINCT FROM 'partial'"
        ).format(s=sql.Identifier(schema), tsv=sql.SQL(search_vector(schema)))
    )
    _run(
        db,
        schema,
        "CREATE INDEX messages_partial ON {s}.messages (session_key) WHERE status = 'partial'",
    )


@migration
def m006_prefix_routes(db: psycopg.Connection, schema: str) -> None:
    """Where each conversation of a stateless client was last served (SQLite's ``m008``):
    a digest of its messages and the host, shared by every replica, so the next turn goes
    back to that host's prompt cache whichever replica takes it. ``seen`` is the database
    clock (epoch seconds); it expires a route and orders the pruning of the oldest."""
    _run(
        db,
        schema,
        """
        CREATE TABLE {s}.prefix_routes (
            digest bytea PRIMARY KEY,
            model text NOT NULL,
            host text NOT NULL,
            seen double precision NOT NULL
        )
        """,
        "CREATE INDEX prefix_routes_by_seen ON {s}.prefix_routes (seen)",
    )


@migration
def m007_keys_and_usage(db: psycopg.Connection, schema: str) -> None:
    """Managed API keys and usage (SQLite's ``m009``): keys by name, found by the SHA-256
    hex of their secret; usage one row per key name x model x UTC day, added to."""
    _run(
        db,
        schema,
        """
        CREATE TABLE {s}.api_keys (
            name text PRIMARY KEY,
            secret_hash text NOT NULL UNIQUE,
            owner text NOT NULL,
            models text NOT NULL DEFAULT '[]',
            rpm bigint,
            tpm bigint,
            daily_tokens bigint,
            max_concurrent bigint,
            weight double precision NOT NULL DEFAULT 1.0,
            created double precision NOT NULL,
            updated double precision NOT NULL,
            revoked double precision
        )
        """,
        """
        CREATE TABLE {s}.usage (
            key text NOT NULL,
            model text NOT NULL,
            day text NOT NULL,
            requests bigint NOT NULL DEFAULT 0,
            input_tokens bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            errors bigint NOT NULL DEFAULT 0,
            busy_s double precision NOT NULL DEFAULT 0,
            queue_s double precision NOT NULL DEFAULT 0,
            PRIMARY KEY (key, model, day)
        )
        """,
        "CREATE INDEX usage_by_day ON {s}.usage (day)",
    )


@migration
def m008_rate_windows(db: psycopg.Connection, schema: str) -> None:
    """The keys' rate limits (SQLite's ``m010``; :mod:`ollang.server.limits`): one counter
    per key name x kind x fixed window, by the window's start (epoch seconds), which every
    replica counts against atomically, so a limit holds across replicas."""
    _run(
        db,
        schema,
        """
        CREATE TABLE {s}.rate_windows (
            key text NOT NULL,
            kind text NOT NULL,
            window_start bigint NOT NULL,
            count bigint NOT NULL,
            PRIMARY KEY (key, kind, window_start)
        )
        """,
        "CREATE INDEX rate_windows_by_start ON {s}.rate_windows (window_start)",
    )


def search_vector(schema: str) -> str:
    """The SQL of the indexed search vector (``schema`` must be a validated identifier)."""
    return f"to_tsvector('\"{schema}\".english'::regconfig, content)"


def _applied(db: psycopg.Connection, schema: str) -> list[str]:
    exists = db.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'migrations'",
        (schema,),
    ).fetchone()
    if not exists:
        return []
    query = sql.SQL("SELECT name FROM {s}.migrations ORDER BY applied_at, name").format(
        s=sql.Identifier(schema)
    )
    return [row[0] for row in db.execute(query)]


def foreign_tables(db: psycopg.Connection, schema: str) -> list[str]:
    """Tables in ``schema`` when it is not an ollang schema (no ``migrations`` table)."""
    names = [
        row[0]
        for row in db.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s ORDER BY 1",
            (schema,),
        )
    ]
    return [] if "migrations" in names else names


def pending_migrations(db: psycopg.Connection, schema: str) -> list[str]:
    """Names of migrations not yet applied (reads only).

    Raises:
        MigrationError: the database has migrations this ollang does not know (it
            was written by a newer version).
    """
    return unapplied(_applied(db, schema), [name for name, _ in MIGRATIONS])


def apply_migrations(db: psycopg.Connection, schema: str, *, upto: int | None = None) -> list[str]:
    """Apply every pending migration, each in its own transaction.

    Safe when several processes (server replicas) open a new database at once: a
    transaction-level advisory lock is taken first and the applied list re-read
    under it, so every migration runs exactly once.

    Args:
        db: A connection in autocommit mode.
        schema: The store's schema (created if missing).
        upto: Apply only the first ``upto`` migrations (tests of upgrades).

    Returns:
        Names of the migrations applied by this call.

    Raises:
        MigrationError: see :func:`pending_migrations`.
    """
    done: list[str] = []
    if not pending_migrations(db, schema):
        return done
    for name, fn in MIGRATIONS[:upto]:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            pending = pending_migrations(db, schema)
            if name not in pending:
                continue
            _run(
                db,
                schema,
                "CREATE SCHEMA IF NOT EXISTS {s}",
                "CREATE TABLE IF NOT EXISTS {s}.migrations ("
                "name text PRIMARY KEY, applied_at double precision NOT NULL)",
            )
            fn(db, schema)
            db.execute(
                sql.SQL("INSERT INTO {s}.migrations (name, applied_at) VALUES (%s, %s)").format(
                    s=sql.Identifier(schema)
                ),
                (name, time.time()),
            )
            done.append(name)
    return done
