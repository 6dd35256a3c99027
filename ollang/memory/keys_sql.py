"""The SQL of managed keys, usage and rate windows, shared by the SQLite and PostgreSQL stores.

Tables ``api_keys`` and ``usage`` (SQLite migration ``m009``, PostgreSQL ``m007``) and
``rate_windows`` (SQLite ``m010``, PostgreSQL ``m008``). The
statements differ between the two only in the parameter mark and the schema prefix, so
:class:`KeySQL` builds them once per store from those two; its functions take an open
connection (run by each store inside its own transactions and error translation).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ollang.memory.keys import (
    KeyExistsError,
    KeyLimits,
    KeyRevokedError,
    NoSuchKeyError,
    StoredKey,
    UsageRow,
    models_from_json,
    models_to_json,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["KeySQL", "SQLKeysMixin"]

T = TypeVar("T")

_KEY_COLUMNS = (
    "name, secret_hash, owner, models, rpm, tpm, daily_tokens, max_concurrent, weight, "
    "created, updated, revoked"
)
_USAGE_COUNTERS = ("requests", "input_tokens", "output_tokens", "errors", "busy_s", "queue_s")


class KeySQL:
    """Keys' and usage's statements for one store: ``mark`` is the parameter mark (``?``
    or ``%s``), ``prefix`` the quoted schema and a dot (``""`` for SQLite)."""

    def __init__(self, mark: str, prefix: str = "") -> None:
        m, keys, usage = mark, f"{prefix}api_keys", f"{prefix}usage"
        self._keys = keys
        self._select = f"SELECT {_KEY_COLUMNS} FROM {keys}"
        self._exists = f"SELECT revoked FROM {keys} WHERE name = {m}"
        self._insert = f"INSERT INTO {keys} ({_KEY_COLUMNS}) VALUES ({', '.join([m] * 12)})"
        self._revoke = f"UPDATE {keys} SET revoked = {m}, updated = {m} WHERE name = {m}"
        self._rotate = f"UPDATE {keys} SET secret_hash = {m}, updated = {m} WHERE name = {m}"
        self._version = f"SELECT count(*), max(updated) FROM {keys}"
        added = ", ".join(f"{c} = u.{c} + excluded.{c}" for c in _USAGE_COUNTERS)
        self._add_usage = (
            f"INSERT INTO {usage} AS u (key, model, day, {', '.join(_USAGE_COUNTERS)}) "
            f"VALUES ({', '.join([m] * 9)}) ON CONFLICT (key, model, day) DO UPDATE SET {added}"
        )
        self._usage = (
            f"SELECT key, model, day, {', '.join(_USAGE_COUNTERS)} FROM {usage} "
            f"WHERE day >= {m} AND (CAST({m} AS TEXT) IS NULL OR key = {m}) ORDER BY day, key, model"
        )
        rates = f"{prefix}rate_windows"
        added = "r.count + excluded.count"
        upsert = (
            f"INSERT INTO {rates} AS r (key, kind, window_start, count) VALUES ({m}, {m}, {m}, {m}) "
            f"ON CONFLICT (key, kind, window_start) DO UPDATE SET count = {added}"
        )
        self._take_rate = f"{upsert} WHERE {added} <= {m} RETURNING count"
        self._add_rate = f"{upsert} RETURNING count"
        self._rate = (
            f"SELECT count FROM {rates} WHERE key = {m} AND kind = {m} AND window_start = {m}"
        )
        self._prune_rates = f"DELETE FROM {rates} WHERE window_start < {m}"

    def create(
        self, conn: Any, name: str, secret_hash: str, owner: str, limits: KeyLimits, now: float
    ) -> StoredKey:
        """Insert a key (in the caller's transaction), or raise :class:`KeyExistsError`."""
        if conn.execute(self._exists, (name,)).fetchone() is not None:
            raise KeyExistsError(name)
        key = StoredKey.new(name, secret_hash, owner, limits, now)
        conn.execute(
            self._insert,
            (
                key.name,
                key.secret_hash,
                key.owner,
                models_to_json(key.models),
                key.rpm,
                key.tpm,
                key.daily_tokens,
                key.max_concurrent,
                key.weight,
                now,
                now,
                None,
            ),
        )
        return key

    def all(self, conn: Any) -> list[StoredKey]:
        """Every key, by name."""
        rows = conn.execute(self._select + " ORDER BY name").fetchall()
        return [_key(row) for row in rows]

    def by_hash(self, conn: Any, secret_hash: str) -> StoredKey | None:
        """The key of this secret hash, or ``None``."""
        mark = self._exists.rsplit(" ", 1)[1]
        row = conn.execute(f"{self._select} WHERE secret_hash = {mark}", (secret_hash,)).fetchone()
        return _key(row) if row else None

    def revoke(self, conn: Any, name: str, now: float) -> StoredKey:
        """Mark ``name`` revoked (in the caller's transaction)."""
        self._existing(conn, name)
        conn.execute(self._revoke, (now, now, name))
        return self._one(conn, name)

    def rotate(self, conn: Any, name: str, secret_hash: str, now: float) -> StoredKey:
        """Replace ``name``'s secret hash (in the caller's transaction)."""
        if self._existing(conn, name) is not None:
            raise KeyRevokedError(name)
        conn.execute(self._rotate, (secret_hash, now, name))
        return self._one(conn, name)

    def version(self, conn: Any) -> object:
        """How many keys, and the last change's time: changes with every change."""
        count, updated = conn.execute(self._version).fetchone()
        return (int(count), updated)

    def add_usage(self, conn: Any, rows: Sequence[UsageRow]) -> None:
        """Add ``rows`` to their counters (sorted: replicas lock rows in one order)."""
        ordered = sorted(rows, key=lambda r: (r.key, r.model, r.day))
        conn.cursor().executemany(
            self._add_usage,
            [
                (
                    r.key,
                    r.model,
                    r.day,
                    r.requests,
                    r.input_tokens,
                    r.output_tokens,
                    r.errors,
                    r.busy_s,
                    r.queue_s,
                )
                for r in ordered
            ],
        )

    def usage(self, conn: Any, since: str | None, key: str | None) -> list[UsageRow]:
        """The usage rows from ``since`` on, of ``key`` or every key."""
        rows = conn.execute(self._usage, (since or "", key, key)).fetchall()
        return [UsageRow(*row) for row in rows]

    def take_rate(
        self, conn: Any, key: str, kind: str, start: int, amount: int, limit: int
    ) -> tuple[bool, int]:
        """Add ``amount`` to a rate window if the sum stays within ``limit`` (one upsert,
        atomic: concurrent takers queue on the row); the outcome and the count after."""
        if amount > limit:  # a new row would be inserted whatever the limit
            return False, self.rate(conn, key, kind, start)
        row = conn.execute(self._take_rate, (key, kind, start, amount, limit)).fetchone()
        if row is None:  # refused: the row is as it was
            return False, self.rate(conn, key, kind, start)
        return True, int(row[0])

    def add_rate(self, conn: Any, key: str, kind: str, start: int, amount: int) -> int:
        """Add ``amount`` to a rate window, uncapped; the count after."""
        return int(conn.execute(self._add_rate, (key, kind, start, amount)).fetchone()[0])

    def rate(self, conn: Any, key: str, kind: str, start: int) -> int:
        """A rate window's count (0: none)."""
        row = conn.execute(self._rate, (key, kind, start)).fetchone()
        return 0 if row is None else int(row[0])

    def prune_rates(self, conn: Any, before: int) -> int:
        """Delete the rate windows that started before ``before``; how many went."""
        return int(conn.execute(self._prune_rates, (before,)).rowcount)

    def _existing(self, conn: Any, name: str) -> float | None:
        """``name``'s revocation time (``None``: live), or :class:`NoSuchKeyError`."""
        row = conn.execute(self._exists, (name,)).fetchone()
        if row is None:
            raise NoSuchKeyError(name)
        return row[0]  # type: ignore[no-any-return]

    def _one(self, conn: Any, name: str) -> StoredKey:
        mark = self._exists.rsplit(" ", 1)[1]
        return _key(conn.execute(f"{self._select} WHERE name = {mark}", (name,)).fetchone())


def _key(row: Sequence[Any]) -> StoredKey:
    name, secret_hash, owner, models, rpm, tpm, daily, concurrent, weight, created = row[:10]
    updated, revoked = row[10:]
    return StoredKey(
        name,
        secret_hash,
        owner,
        models_from_json(models),
        rpm,
        tpm,
        daily,
        concurrent,
        float(weight),
        float(created),
        float(updated),
        None if revoked is None else float(revoked),
    )


class SQLKeysMixin:
    """The :class:`~ollang.memory.base.ChatStore` key and usage methods of an SQL store:
    the store gives :attr:`_key_sql` and runs the functions in its transactions."""

    _key_sql: KeySQL
    # ChatStore's: prunes old rate windows now and then.
    _rate_prune_maybe: Callable[[], None]

    @abstractmethod
    def _keys_read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` on a connection, to read."""

    @abstractmethod
    def _keys_write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` on a connection in one transaction."""

    def create_key(
        self, name: str, secret_hash: str, *, owner: str, **limits: Unpack[KeyLimits]
    ) -> StoredKey:
        """See :meth:`ChatStore.create_key <ollang.memory.base.ChatStore.create_key>`."""
        now = time.time()
        return self._keys_write(
            lambda c: self._key_sql.create(c, name, secret_hash, owner, limits, now)
        )

    def list_keys(self) -> list[StoredKey]:
        """See :meth:`ChatStore.list_keys <ollang.memory.base.ChatStore.list_keys>`."""
        return self._keys_read(self._key_sql.all)

    def revoke_key(self, name: str) -> StoredKey:
        """See :meth:`ChatStore.revoke_key <ollang.memory.base.ChatStore.revoke_key>`."""
        now = time.time()
        return self._keys_write(lambda c: self._key_sql.revoke(c, name, now))

    def rotate_key(self, name: str, secret_hash: str) -> StoredKey:
        """See :meth:`ChatStore.rotate_key <ollang.memory.base.ChatStore.rotate_key>`."""
        now = time.time()
        return self._keys_write(lambda c: self._key_sql.rotate(c, name, secret_hash, now))

    def key_by_hash(self, secret_hash: str) -> StoredKey | None:
        """See :meth:`ChatStore.key_by_hash <ollang.memory.base.ChatStore.key_by_hash>`."""
        return self._keys_read(lambda c: self._key_sql.by_hash(c, secret_hash))

    def keys_version(self) -> object:
        """See :meth:`ChatStore.keys_version <ollang.memory.base.ChatStore.keys_version>`."""
        return self._keys_read(self._key_sql.version)

    def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """See :meth:`ChatStore.add_usage <ollang.memory.base.ChatStore.add_usage>`."""
        if rows:
            self._keys_write(lambda c: self._key_sql.add_usage(c, rows))

    def usage(self, *, since: str | None = None, key: str | None = None) -> list[UsageRow]:
        """See :meth:`ChatStore.usage <ollang.memory.base.ChatStore.usage>`."""
        return self._keys_read(lambda c: self._key_sql.usage(c, since, key))

    def take_rate(
        self, key: str, kind: str, window_start: int, amount: int, limit: int
    ) -> tuple[bool, int]:
        """See :meth:`ChatStore.take_rate <ollang.memory.base.ChatStore.take_rate>` (one
        upsert, counted by every process on the database)."""
        self._rate_prune_maybe()
        return self._keys_write(
            lambda c: self._key_sql.take_rate(c, key, kind, window_start, amount, limit)
        )

    def add_rate(self, key: str, kind: str, window_start: int, amount: int) -> int:
        """See :meth:`ChatStore.add_rate <ollang.memory.base.ChatStore.add_rate>`."""
        self._rate_prune_maybe()
        return self._keys_write(
            lambda c: self._key_sql.add_rate(c, key, kind, window_start, amount)
        )

    def rate(self, key: str, kind: str, window_start: int) -> int:
        """See :meth:`ChatStore.rate <ollang.memory.base.ChatStore.rate>`."""
        return self._keys_read(lambda c: self._key_sql.rate(c, key, kind, window_start))

    def prune_rates(self, before: int) -> int:
        """See :meth:`ChatStore.prune_rates <ollang.memory.base.ChatStore.prune_rates>`."""
        return self._keys_write(lambda c: self._key_sql.prune_rates(c, before))
