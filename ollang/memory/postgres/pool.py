"""Connections to PostgreSQL for the store: the pool, retries, batches, and errors.

:class:`Database` is everything :class:`~memory.postgres.PostgresChatStore` knows about
the server, apart from SQL: where it is (shown without the password), one pool of
connections per process (a fresh one after ``fork()``), running an operation on a
connection (retried once when the connection died with a restart, inside a savepoint
in a batch), and the one translation of psycopg's errors into the store's.

Why a pool that is sometimes replaced: psycopg_pool retries failed connections with an
exponential backoff without a ceiling (1, 2, 4, ... 64 s), so after an outage of a
minute it could go on failing for another minute while PostgreSQL already answers.
When an operation times out waiting for a connection and none is in use, one direct
connection attempt decides: if it works, the pool is replaced (the new one connects
at once); if not, the server is still down (HTTP 503).

While the server is down, psycopg_pool logs a warning (two lines, the libpq error and
its hint) for every reconnection attempt. :class:`_OutageLog` makes that one line per
outage, naming host and port and never the password; the attempts after it go down to
DEBUG, and a line at INFO level says when the pool connects again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ollang.memory.errors import StoreError, StoreUnavailableError
from ollang.memory.url import redact_url

__all__ = ["Database"]

T = TypeVar("T")

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Query parameters of a store URL that ollang reads itself (libpq gets the others).
_OWN_PARAMS = ("schema", "pool_size", "pool_timeout")

# Pools inherited over fork() must never be used or closed in the child (closing
# would end the parent's server sessions): they are parked here.
_INHERITED: list[ConnectionPool] = []


_POOL_LOG = logging.getLogger("psycopg.pool")
_POOL_NUMBERS = itertools.count(1)


class _OutageLog(logging.Filter):
    """Turns psycopg_pool's warning per failed reconnection into one line per outage.

    Installed once on the ``psycopg.pool`` logger; it only touches the warnings about
    pools and connections of a :class:`Database`. The first failed attempt of an
    outage becomes one concise warning; the later ones, and the pool's "gave up" line,
    go down to DEBUG until a connection succeeds (:meth:`Database.connected`). A
    connection found dead (the server restarted) goes down to INFO: the pool replaces
    it, and the operation that found it is retried on another.
    """

    _ATTEMPT = "error connecting in %r: %s"
    _GAVE_UP = "reconnection attempt in pool %r failed after %s sec"
    _DISCARDED = ("discarding broken connection: %s", "discarding closed connection: %s")

    def __init__(self) -> None:
        super().__init__()
        self.databases: weakref.WeakValueDictionary[str, Database] = weakref.WeakValueDictionary()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not isinstance(record.args, tuple):
            return True
        args = record.args
        if record.msg in self._DISCARDED and args:
            db = next((d for d in list(self.databases.values()) if args[0] in d.conns), None)
            if db is None:
                return True
            record.msg, record.args = "PostgreSQL store at %s: a connection died", (db.where,)
            return _demote(record, logging.INFO)
        if record.msg not in (self._ATTEMPT, self._GAVE_UP) or not args:
            return True
        db = self.databases.get(str(args[0]))
        if db is None:
            return True
        if record.msg == self._GAVE_UP or not db.went_down():
            return _demote(record, logging.DEBUG)
        reason = db.reason(args[1]) if len(args) > 1 else "no connection"
        record.msg = "PostgreSQL store at %s unreachable (%s); reconnecting in the background"
        record.args = (db.where, reason)
        return True


def _demote(record: logging.LogRecord, level: int) -> bool:
    """Give a record a lower level; whether the logger still emits it at that level."""
    record.levelno, record.levelname = level, logging.getLevelName(level)
    return _POOL_LOG.isEnabledFor(level)


_OUTAGES = _OutageLog()
_POOL_LOG.addFilter(_OUTAGES)


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL without ollang's own query parameters, and those parameters."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN_PARAMS:
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class Database:
    """One PostgreSQL database as the store uses it (see the module docstring).

    Args:
        url: A libpq URL, possibly with ollang's ``schema``, ``pool_size`` and
            ``pool_timeout`` query parameters, which override the arguments.
        schema: The schema holding ollang's tables.
        pool_size: Most connections this process keeps open.
        pool_timeout: Seconds an operation waits for a connection.

    Raises:
        StoreError: the URL or the schema name is invalid.
    """

    def __init__(self, url: str, *, schema: str, pool_size: int, pool_timeout: float) -> None:
        self.url = redact_url(url)
        conninfo, params = _split_url(url)
        schema = params.get("schema", schema)
        try:
            self.pool_size = int(params.get("pool_size", pool_size))
            self.pool_timeout = float(params.get("pool_timeout", pool_timeout))
        except ValueError as err:
            raise StoreError(f"invalid store URL {self.url}: {err}") from err
        if not _SCHEMA.fullmatch(schema):
            raise StoreError(
                f"invalid schema name {schema!r} in {self.url}",
                "use lower-case letters, digits and _ (e.g. ?schema=ollang)",
            )
        self.schema = schema
        self._password = ""
        try:
            info = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as err:
            raise StoreError(f"invalid store URL {self.url}: {self._clean(err)}") from err
        self._conninfo = conninfo
        self._password = str(info.get("password") or "")
        host = str(info.get("host") or info.get("hostaddr") or "localhost")
        #: ``host:port``, for messages.
        self.where = f"{host}:{info.get('port') or 5432}"
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # .conn: this thread's batch connection
        self._in_use = 0  # connections lent to operations right now
        self._pid = os.getpid()
        self._closed = False
        #: The pools' name in psycopg_pool's log; how _OutageLog knows their warnings.
        self.pool_name = f"ollang-{next(_POOL_NUMBERS)}"
        self._down_since: float | None = None  # the outage being logged, if any
        #: The pools' connections (for _OutageLog, which gets only the connection).
        self.conns: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (migrations), in autocommit mode."""
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as err:
            raise self.error("connect to", err) from err

    def open(self) -> None:
        """Start the pool (it connects in the background)."""
        self._pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool:
        pool: ConnectionPool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max(1, self.pool_size),
            kwargs={"autocommit": True},
            timeout=self.pool_timeout,
            name=self.pool_name,
            configure=self.connected,
            open=False,
        )
        _OUTAGES.databases[self.pool_name] = self
        pool.open(wait=False)
        return pool

    def went_down(self) -> bool:
        """Note an outage (a failed reconnection); whether it is a new one."""
        with self._lock:
            if self._down_since is not None:
                return False
            self._down_since = time.monotonic()
            return True

    def connected(self, conn: psycopg.Connection[Any]) -> None:
        """The pool made a connection (its ``configure`` hook): any outage is over."""
        self.conns.add(conn)
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            _POOL_LOG.info(
                "PostgreSQL store at %s reachable again after %.0f s",
                self.where,
                time.monotonic() - since,
            )

    def reason(self, err: object) -> str:
        """The gist of a connection error (``Connection refused``), without the password."""
        text = self._clean(err) if isinstance(err, BaseException) else str(err)
        return text.rsplit("failed: ", 1)[-1]

    def _get_pool(self) -> ConnectionPool:
        if self._closed or self._pool is None:
            raise StoreError(f"the store {self.url} is closed")
        if os.getpid() != self._pid:  # forked: start afresh, leave the parent's alone
            _INHERITED.append(self._pool)
            self._pool, self._pid = self._new_pool(), os.getpid()
        return self._pool

    def close(self) -> None:
        """Close the pool's connections. Later operations raise :class:`StoreError`."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None and os.getpid() == self._pid:
            with contextlib.suppress(Exception):  # best effort, at shutdown
                pool.close(timeout=1.0)

    def _clean(self, err: BaseException) -> str:
        """An error's first line, with the password (if any) blanked out."""
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return text.replace(self._password, "***") if self._password else text

    def error(self, action: str, err: BaseException, *, busy: bool = False) -> StoreError:
        """The one translation of psycopg and pool errors into the store's errors.

        ``busy``: a pool timeout while every connection was in use (not an outage).
        """
        text = self._clean(err)
        reason = self.reason(err)
        low = text.lower()
        target = f"the PostgreSQL store at {self.where}"
        if "authentication failed" in low or "no password supplied" in low:
            return StoreError(
                f"cannot {action} {target}: {reason}",
                f"check the user and password in the store URL ({self.url})",
            )
        if "does not exist" in low and "database" in low:
            return StoreError(
                f"cannot {action} {target}: {reason}", "create the database (createdb NAME)"
            )
        if isinstance(err, PoolTimeout) and busy:
            return StoreUnavailableError(
                f"cannot {action} {target}: all {self.pool_size} connections stayed busy "
                f"for {self.pool_timeout:g} s",
                "try again; for more concurrent work raise ?pool_size= in the store URL",
            )
        if isinstance(err, PoolTimeout):
            return StoreUnavailableError(
                f"cannot {action} {target}: no connection within {self.pool_timeout:g} s",
                f"is PostgreSQL running at {self.where}? ollang reconnects by itself once it answers",
            )
        if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(
                f"cannot {action} {target}: {reason}",
                f"is PostgreSQL running at {self.where}? ollang reconnects by itself once it answers",
            )
        if isinstance(err, psycopg.errors.InsufficientPrivilege):
            return StoreError(
                f"cannot {action} {target}: {reason}",
                f"grant the store's user the rights to the schema {self.schema}",
            )
        if isinstance(err, psycopg.errors.ReadOnlySqlTransaction):
            return StoreError(
                f"cannot {action} {target}: {reason}",
                "the server is a read-only replica; point the store URL at the primary",
            )
        return StoreError(f"cannot {action} {target}: {reason}")

    def run(
        self,
        action: str,
        fn: Callable[[psycopg.Connection[Any]], T],
        *,
        retry: bool = True,
        atomic: bool = False,
    ) -> T:
        """Run ``fn`` on a pooled connection (in a transaction if ``atomic``), translating errors.

        When the connection turns out to be dead (the server restarted since it was
        opened), the pool is checked (dropping its other dead connections) and ``fn``
        runs once more on a fresh one, if ``retry``: only for operations that are
        safe to repeat, since a transaction cut by a dead connection did not commit,
        but one cut while committing may have. Inside :meth:`batch`, ``fn`` runs on
        the batch's connection in a savepoint of its own, and is never repeated.
        """
        pinned: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if pinned is not None:
            try:
                with pinned.transaction():  # a savepoint: only this call is undone on failure
                    return fn(pinned)
            except psycopg.Error as err:
                raise self.error(action, err) from err
        for attempt in (1, 2):
            pool = self._get_pool()
            used: psycopg.Connection[Any] | None = None
            try:
                with pool.connection() as conn, self._lent():
                    used = conn
                    if atomic:
                        with conn.transaction():
                            return fn(conn)
                    return fn(conn)
            except PoolTimeout as err:
                # Nothing was sent: trying again is always safe.
                if attempt == 1 and self._replace_stuck_pool(pool):
                    continue
                raise self.error(action, err, busy=self._in_use > 0) from err
            except PoolClosed as err:
                # Nothing was sent: another thread replaced the pool after we took it.
                if attempt == 1 and self._replaced(pool):
                    continue
                raise self.error(action, err) from err
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                if attempt == 1 and retry and used is not None and used.broken:
                    with contextlib.suppress(Exception):
                        pool.check()
                    continue
                raise self.error(action, err) from err
            except psycopg.Error as err:
                raise self.error(action, err) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def run_on_snapshot(self, action: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn``'s statements on one snapshot: a ``REPEATABLE READ READ ONLY``
        transaction (in a batch: the batch's transaction, in a savepoint). For reads."""
        if getattr(self._local, "conn", None) is not None:
            return self.run(action, fn)

        def on_snapshot(conn: psycopg.Connection[Any]) -> T:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                result = fn(conn)
            except BaseException:
                if not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self.run(action, on_snapshot)

    @contextlib.contextmanager
    def _lent(self) -> Iterator[None]:
        """Counts connections in use (a pool timeout then means "busy", not "down")."""
        with self._lock:
            self._in_use += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_use -= 1

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """:meth:`ChatStore.batch` on PostgreSQL: this thread's calls share one connection
        and one transaction, each call in a savepoint; one commit (one WAL flush) for all."""
        if getattr(self._local, "conn", None) is not None:  # nested: the outer one commits
            yield
            return
        pool, conn = self._begin()
        self._local.conn = conn
        try:
            yield
            conn.execute("COMMIT")
        except BaseException as err:
            if not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            if isinstance(err, psycopg.Error):  # the COMMIT: calls translate their own
                raise self.error("write to", err) from err
            raise
        finally:
            self._local.conn = None
            with self._lock:
                self._in_use -= 1
            pool.putconn(conn)

    def _begin(self) -> tuple[ConnectionPool, psycopg.Connection[Any]]:
        """A pooled connection with a transaction begun (for :meth:`batch`)."""
        for attempt in (1, 2):
            pool = self._get_pool()
            try:
                conn = pool.getconn()
            except PoolTimeout as err:
                if attempt == 1 and self._replace_stuck_pool(pool):
                    continue
                raise self.error("write to", err, busy=self._in_use > 0) from err
            except PoolClosed as err:  # replaced by another thread after we took it
                if attempt == 1 and self._replaced(pool):
                    continue
                raise self.error("write to", err) from err
            try:
                conn.execute("BEGIN")
            except psycopg.Error as err:
                pool.putconn(conn)
                if attempt == 1 and conn.broken:  # stale since a restart: a fresh one
                    with contextlib.suppress(Exception):
                        pool.check()
                    continue
                raise self.error("write to", err) from err
            with self._lock:
                self._in_use += 1
            return pool, conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _replaced(self, pool: ConnectionPool) -> bool:
        """Whether ``pool`` is no longer this store's pool (another thread replaced it,
        :meth:`_replace_stuck_pool`), while the store itself is open: then an
        operation that found it closed runs on the new one."""
        with self._lock:
            return not self._closed and self._pool is not None and self._pool is not pool

    def _replace_stuck_pool(self, pool: ConnectionPool) -> bool:
        """After a pool timeout with no connection in use: a new pool if the server is back.

        psycopg_pool retries failed connections with an exponential backoff without a
        ceiling (1, 2, 4, ... 64 s): after an outage of a minute it could leave the
        store failing for another minute while PostgreSQL already answers. So when
        no connection is in use, one direct attempt decides: if it connects, the
        pool is replaced by a fresh one (which connects at once); if not, the server
        is still down. A pool whose connections are merely all busy is left alone.
        """
        if self._in_use > 0:
            return False
        try:
            psycopg.connect(self._conninfo, connect_timeout=2).close()
        except psycopg.Error:
            return False
        with self._lock:
            if self._pool is pool and not self._closed:
                self._pool = self._new_pool()
                # Closing joins the old pool's workers (asleep in their backoff): not here.
                threading.Thread(target=pool.close, kwargs={"timeout": 1.0}, daemon=True).start()
        return True
