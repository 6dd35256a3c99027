"""API-key authentication and session ownership.

A request's key is read by :func:`bearer_token` on every route (one rule: the scheme in any
case, then one or more spaces, then the key; RFC 6750 and 7235) and resolved to a
:class:`~ollang.server.keys.KeyPolicy`, left on ``request.state`` (read it with
:func:`~ollang.server.keys.request_key`). A key is one of:

* a ``--api-key`` key (``api-key-1``, ``api-key-2``... by position) or a ``--admin-key``
  key (``admin-1``...; it may also manage keys and read all usage). Its *owner* is the
  SHA-256 hex digest of the key: what the store records for the sessions it creates, so
  the database never holds a key;
* a managed key (``ollang keys create``), found by the SHA-256 of its secret among the
  store's keys, which this process caches and re-reads when the store's keys version
  changes (checked every :data:`REFRESH_S` seconds in the background: every replica
  honours a new, rotated or revoked key within 5 s). Its owner is the id it was created
  with, so a rotated key keeps its sessions.

With no key of any kind (none configured, none in the store) the owner is ``None``: one
local user who sees every session. Once the store holds a managed key, every endpoint but
``/health`` requires a key. Configured keys are compared in constant time
(``hmac.compare_digest`` on their digests, against every one) and no key is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ollang.server.errors import ForbiddenError, UnauthorizedError
from ollang.server.keys import LOCAL, KeyPolicy, set_current_key
from ollang.server.periodic import Periodic

if TYPE_CHECKING:
    from ollang.memory import ChatStore
    from ollang.memory.keys import StoredKey

__all__ = [
    "BEARER_DOC",
    "REFRESH_S",
    "Authenticator",
    "authenticate",
    "bearer",
    "bearer_token",
    "owner_now",
    "owner_of_key",
    "request_admin",
    "request_owner",
]

log = logging.getLogger("ollang.server")

#: Seconds between two looks at the store's keys version.
REFRESH_S = 2.0

#: Declares the scheme in OpenAPI (the "Authorize" button of /docs); never rejects by itself,
#: and its reading of the header is not used: :func:`bearer_token` is the one parser.
bearer = HTTPBearer(
    auto_error=False, description="A key given with --api-key, or made by `ollang keys create`."
)

_REVOKED_HINT = "this key was revoked; ask for a new one"


def bearer_token(header: str | None) -> str | None:
    """The key in an ``Authorization`` header, or ``None``: the one parser of every route.

    ``Bearer`` in any case (``bearer``, ``BEARER``), then one or more spaces, then the key;
    blanks after the key are ignored (keys have none: the settings refuse them). Another
    scheme (``Basic ...``), no space after the scheme, or nothing after it: no key.
    """
    if not header:
        return None
    scheme, space, rest = header.partition(" ")
    if not space or scheme.lower() != "bearer":
        return None
    return rest.strip(" \t") or None


def owner_of_key(key: str) -> str:
    """The owner id recorded for sessions created with a configured ``key``: its SHA-256
    hex digest."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _policy(key: StoredKey) -> KeyPolicy:
    return KeyPolicy(
        name=key.name,
        owner=key.owner,
        models=key.models,
        rpm=key.rpm,
        tpm=key.tpm,
        daily_tokens=key.daily_tokens,
        max_concurrent=key.max_concurrent,
        weight=key.weight,
    )


class Authenticator:
    """Resolves bearer keys to policies; holds only digests (and the store's hashes).

    Args:
        keys: The ``--api-key`` keys.
        admin_keys: The ``--admin-key`` keys.
        store: Where managed keys live (``None``: configured keys only).
    """

    def __init__(
        self,
        keys: Sequence[str],
        admin_keys: Sequence[str] = (),
        store: ChatStore | None = None,
    ) -> None:
        self._configured: list[tuple[bytes, KeyPolicy, bool]] = []
        for prefix, values, admin in (("api-key", keys, False), ("admin", admin_keys, True)):
            for number, key in enumerate(values, start=1):
                digest = hashlib.sha256(key.encode("utf-8")).digest()
                policy = KeyPolicy(name=f"{prefix}-{number}", owner=digest.hex())
                self._configured.append((digest, policy, admin))
        self._store = store
        self._managed: dict[str, StoredKey] = {}
        self._version: object = object()  # equal to no version: the first look loads
        self._refresher = Periodic(self._refresh_off_loop, REFRESH_S, "re-read the managed keys")
        if store is not None:
            self.refresh()

    def __repr__(self) -> str:
        return f"Authenticator({len(self._configured)} keys, {len(self._managed)} managed)"

    @property
    def required(self) -> bool:
        """Whether requests need a key: one is configured, or the store holds one."""
        return bool(self._configured or self._managed)

    def refresh(self) -> bool:
        """Re-read the managed keys if the store's keys version changed; whether it did."""
        if self._store is None:
            return False
        version = self._store.keys_version()
        if version == self._version:
            return False
        keys = self._store.list_keys()
        self._managed = {k.secret_hash: k for k in keys}
        self._version = version
        return True

    async def _refresh_off_loop(self) -> None:
        await asyncio.to_thread(self.refresh)

    def start(self) -> None:
        """Re-read the store's keys version every :data:`REFRESH_S` seconds from now on
        (with a store; a failed look is logged and the keys known so far stay in force)."""
        if self._store is not None:
            self._refresher.start()

    async def stop(self) -> None:
        """Stop re-reading the keys."""
        await self._refresher.stop()

    def resolve(self, token: str | None) -> tuple[KeyPolicy, bool]:
        """The policy of a presented key, and whether it is an admin key.

        Raises:
            UnauthorizedError: keys are required and this one is missing, unknown or revoked.
        """
        if not self.required:
            return LOCAL, False
        if not token:
            raise UnauthorizedError()
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: tuple[KeyPolicy, bool] | None = None
        for digest, policy, admin in self._configured:  # no early exit: constant time
            if hmac.compare_digest(digest, presented):
                found = (policy, admin)
        if found is not None:
            return found
        managed = self._managed.get(presented.hex())
        if managed is None:
            raise UnauthorizedError()
        if managed.revoked is not None:
            raise UnauthorizedError(f"the key {managed.name!r} was revoked", _REVOKED_HINT)
        return _policy(managed), False

    def owner(self, token: str | None) -> str | None:
        """The owner for a presented key; ``None`` when auth is off.

        Raises:
            UnauthorizedError: see :meth:`resolve`.
        """
        return self.resolve(token)[0].owner


def authenticate(request: Request) -> KeyPolicy:
    """Resolve the request's key and record its policy on the request (see
    :func:`~ollang.server.keys.request_key`); 401 as :meth:`Authenticator.resolve`."""
    auth: Authenticator = request.app.state.ctx.auth  # the context imports this module
    policy, admin = auth.resolve(bearer_token(request.headers.get("authorization")))
    request.state.admin = admin
    set_current_key(request, policy)
    return policy


def owner_now(request: Request) -> str | None:
    """:func:`request_owner` without FastAPI's dependency machinery, for the hot routes
    (which document the scheme with :data:`BEARER_DOC`)."""
    return authenticate(request).owner


#: ``openapi_extra`` of a route that checks the key with :func:`owner_now`.
BEARER_DOC: dict[str, list[dict[str, list[str]]]] = {"security": [{"HTTPBearer": []}]}


async def request_owner(
    request: Request,
    _scheme: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
) -> str | None:
    """FastAPI dependency: the request's owner, or 401 (see :class:`Authenticator`).

    ``_scheme`` only declares the scheme in OpenAPI; the key is read as every route reads
    it, by :func:`bearer_token`.
    """
    return authenticate(request).owner


async def request_admin(
    request: Request,
    _scheme: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
) -> KeyPolicy:
    """FastAPI dependency of the admin routes: 401 without a valid key, 403 unless it is
    an admin key (``--admin-key``; a server with none has no admin)."""
    policy = authenticate(request)
    if not getattr(request.state, "admin", False):
        raise ForbiddenError(
            "this key may not manage keys",
            "use a key given to the server with --admin-key (OLLANG_SERVER_ADMIN_KEYS)",
        )
    return policy
