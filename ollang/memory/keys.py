"""Managed API keys and usage records, as the session stores keep them.

A managed key (``ollang keys create``, ``POST /admin/keys``) is stored by the SHA-256 of its
secret, never the secret; its ``owner`` is a random id made once at creation, so sessions
stay with the key when its secret is rotated. Usage is one row per key x model x UTC day,
its counters added to as turns finish (:meth:`ChatStore.add_usage
<ollang.memory.base.ChatStore.add_usage>`). The stores implement the storage; this module
holds the shared types, errors and the in-memory version.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from ollang.errors import InvalidInputError
from ollang.memory.errors import StoreError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ollang.memory.base import ChatStore

__all__ = [
    "SECRET_PREFIX",
    "USAGE_COLUMNS",
    "KeyExistsError",
    "KeyLimits",
    "KeyRevokedError",
    "MemoryKeys",
    "NoSuchKeyError",
    "StoredKey",
    "UsageRow",
    "check_key_name",
    "hash_secret",
    "issue_key",
    "models_from_json",
    "models_to_json",
    "new_owner",
    "new_secret",
    "rotate_secret",
    "utc_day",
]

#: How every managed key's secret starts (so scanners and people can tell one).
SECRET_PREFIX = "ollang_"


class KeyLimits(TypedDict, total=False):
    """The optional policy fields of a managed key (see :class:`StoredKey`)."""

    models: Sequence[str]
    rpm: int | None
    tpm: int | None
    daily_tokens: int | None
    max_concurrent: int | None
    weight: float


@dataclass(frozen=True)
class StoredKey:
    """A managed key as stored: its name, the SHA-256 hex of its secret, its owner id and
    its policy. ``revoked`` is when it was revoked (epoch seconds), or ``None``."""

    name: str
    secret_hash: str
    owner: str
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    daily_tokens: int | None = None
    max_concurrent: int | None = None
    weight: float = 1.0
    created: float = 0.0
    updated: float = 0.0
    revoked: float | None = None

    @classmethod
    def new(
        cls, name: str, secret_hash: str, owner: str, limits: KeyLimits, now: float
    ) -> StoredKey:
        """A key as created at ``now`` with ``limits`` (what every store writes)."""
        return cls(
            name,
            secret_hash,
            owner,
            models=tuple(limits.get("models") or ()),
            rpm=limits.get("rpm"),
            tpm=limits.get("tpm"),
            daily_tokens=limits.get("daily_tokens"),
            max_concurrent=limits.get("max_concurrent"),
            weight=float(limits.get("weight", 1.0)),
            created=now,
            updated=now,
        )

    def to_dict(self) -> dict[str, Any]:
        """The key as shown by ``keys list --json`` and ``GET /admin/keys``: everything but
        the hash of its secret."""
        return {
            "name": self.name,
            "models": list(self.models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "daily_tokens": self.daily_tokens,
            "max_concurrent": self.max_concurrent,
            "weight": self.weight,
            "created": self.created,
            "updated": self.updated,
            "revoked": self.revoked,
        }


#: The columns of a usage row as shown, in order.
USAGE_COLUMNS = (
    "day",
    "key",
    "model",
    "requests",
    "input_tokens",
    "output_tokens",
    "errors",
    "busy_s",
    "queue_s",
)


@dataclass(frozen=True)
class UsageRow:
    """What one key used of one model on one UTC day (``YYYY-MM-DD``); rows with the same
    ``(key, model, day)`` add up."""

    key: str
    model: str
    day: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0
    busy_s: float = 0.0
    queue_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """The row as ``ollang usage --json`` and ``GET /usage`` show it, columns in
        :data:`USAGE_COLUMNS` order (seconds rounded to milliseconds)."""
        return {
            column: round(value, 3) if isinstance(value, float) else value
            for column in USAGE_COLUMNS
            for value in [getattr(self, column)]
        }

    def plus(self, other: UsageRow) -> UsageRow:
        """This row with ``other``'s counters added (the same key, model and day)."""
        return replace(
            self,
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            errors=self.errors + other.errors,
            busy_s=self.busy_s + other.busy_s,
            queue_s=self.queue_s + other.queue_s,
        )


class KeyExistsError(StoreError):
    """A managed key of that name exists already (revoked ones included)."""

    exit_code = 2
    http_status = 409

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a key named {name!r} exists already",
            "choose another name, or `ollang keys rotate` it for a new secret",
        )


class NoSuchKeyError(StoreError, LookupError):
    """No managed key has that name."""

    exit_code = 2
    http_status = 404

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no key named {name!r}", "list the keys with `ollang keys list`")


class KeyRevokedError(StoreError):
    """The key was revoked: it cannot be rotated (create a new one)."""

    exit_code = 2
    http_status = 409

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"the key {name!r} was revoked", "create a new key with another name")


def utc_day(epoch: float | None = None) -> str:
    """The UTC day (``YYYY-MM-DD``) usage is counted in: now's, or ``epoch``'s."""
    moment = time.gmtime(epoch)
    return f"{moment.tm_year:04d}-{moment.tm_mon:02d}-{moment.tm_mday:02d}"


def new_secret() -> str:
    """A fresh secret: ``ollang_`` and 32 random bytes, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What a store keeps of a secret, and finds the key by: its SHA-256 hex digest."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


#: What a key's name may be: it labels usage rows and metrics, and goes in URLs.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The names the server gives keys that are not managed: no key ("local"), and the keys of
#: --api-key / --admin-key by position. A managed key named so would share their usage rows
#: and metrics.
RESERVED_KEY_NAME = re.compile(r"local|api-key-\d+|admin-\d+")


def check_key_name(name: str) -> str:
    """``name`` if it can name a key (letters, digits, ``.``, ``_``, ``-``; at most 64).

    Raises:
        InvalidInputError: it cannot.
    """
    if not KEY_NAME.fullmatch(name) or RESERVED_KEY_NAME.fullmatch(name):
        raise InvalidInputError(
            f"{name!r} cannot name a key",
            "use letters, digits, '.', '_' and '-' (at most 64; not 'local', 'api-key-N' "
            "or 'admin-N', the names of keys given on the command line), e.g. alice",
        )
    return name


def issue_key(store: ChatStore, name: str, **limits: Unpack[KeyLimits]) -> tuple[StoredKey, str]:
    """Create the managed key ``name`` in ``store``: the stored key and its secret, which
    nothing keeps (show it once).

    Raises:
        KeyExistsError: ``name`` is taken.
    """
    check_key_name(name)
    secret = new_secret()
    key = store.create_key(name, hash_secret(secret), owner=new_owner(), **limits)
    return key, secret


def rotate_secret(store: ChatStore, name: str) -> tuple[StoredKey, str]:
    """Give ``name`` a new secret (returned, once); its sessions stay with it.

    Raises:
        NoSuchKeyError, KeyRevokedError: see :meth:`ChatStore.rotate_key`.
    """
    secret = new_secret()
    return store.rotate_key(name, hash_secret(secret)), secret


def new_owner() -> str:
    """A fresh owner id for a managed key: what its sessions are owned by, for good."""
    return "key-" + uuid.uuid4().hex


def models_to_json(models: Iterable[str]) -> str:
    """Model patterns as stored (a JSON list)."""
    return json.dumps(list(models))


def models_from_json(text: str | None) -> tuple[str, ...]:
    """Model patterns as read back."""
    return tuple(json.loads(text)) if text else ()


@dataclass
class MemoryKeys:
    """Keys and usage held in dicts, for :class:`~ollang.memory.inmemory.InMemoryChatStore`."""

    keys: dict[str, StoredKey] = field(default_factory=dict)
    usage: dict[tuple[str, str, str], UsageRow] = field(default_factory=dict)
    version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, name: str, secret_hash: str, owner: str, limits: KeyLimits) -> StoredKey:
        """See :meth:`ChatStore.create_key <ollang.memory.base.ChatStore.create_key>`."""
        key = StoredKey.new(name, secret_hash, owner, limits, time.time())
        with self.lock:
            if name in self.keys:
                raise KeyExistsError(name)
            self.keys[name] = key
            self.version += 1
        return key

    def change(self, name: str, **changes: Any) -> StoredKey:
        """Revoke or rotate ``name`` (``changes`` are the new field values)."""
        with self.lock:
            key = self.keys.get(name)
            if key is None:
                raise NoSuchKeyError(name)
            if key.revoked is not None and "secret_hash" in changes:
                raise KeyRevokedError(name)
            key = self.keys[name] = replace(key, updated=time.time(), **changes)
            self.version += 1
        return key

    def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """See :meth:`ChatStore.add_usage <ollang.memory.base.ChatStore.add_usage>`."""
        with self.lock:
            for row in rows:
                at = (row.key, row.model, row.day)
                old = self.usage.get(at)
                self.usage[at] = row if old is None else old.plus(row)

    def read_usage(self, since: str | None, key: str | None) -> list[UsageRow]:
        """See :meth:`ChatStore.usage <ollang.memory.base.ChatStore.usage>`."""
        with self.lock:
            rows = list(self.usage.values())
        return sorted(
            (
                r
                for r in rows
                if (since is None or r.day >= since) and (key is None or r.key == key)
            ),
            key=lambda r: (r.day, r.key, r.model),
        )
