"""API-key authentication and session ownership.

With keys configured, a request must carry ``Authorization: Bearer KEY`` with one
of them, read by :func:`bearer_token` on every route (one rule: the scheme in any case,
then one or more spaces, then the key; RFC 6750 and 7235). The request's *owner* is then the SHA-256 hex digest of its key: that
is what the store records for the sessions the key creates, so the database
never holds a key, and another key's sessions are simply not found. Without
keys the owner is ``None``: one local user who sees every session.

Keys are compared in constant time (``hmac.compare_digest`` on their digests,
against every configured key) and are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ollang.server.errors import UnauthorizedError

__all__ = [
    "BEARER_DOC",
    "Authenticator",
    "bearer",
    "bearer_token",
    "owner_now",
    "owner_of_key",
    "request_owner",
]

#: Declares the scheme in OpenAPI (the "Authorize" button of /docs); never rejects by itself,
#: and its reading of the header is not used: :func:`bearer_token` is the one parser.
bearer = HTTPBearer(auto_error=False, description="One of the keys given with --api-key.")


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
    """The owner id recorded for sessions created with ``key``: its SHA-256 hex digest."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Authenticator:
    """Checks bearer keys; holds only their digests."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [hashlib.sha256(key.encode("utf-8")).digest() for key in keys]

    def __repr__(self) -> str:
        return f"Authenticator({len(self._digests)} keys)"

    def owner(self, token: str | None) -> str | None:
        """The owner for a presented key; ``None`` when auth is off.

        Raises:
            UnauthorizedError: auth is on and the key is missing or unknown.
        """
        if not self._digests:
            return None
        if not token:
            raise UnauthorizedError()
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        matched = False
        for digest in self._digests:  # no early exit: time does not depend on which key
            matched |= hmac.compare_digest(digest, presented)
        if not matched:
            raise UnauthorizedError()
        return presented.hex()


def owner_now(request: Request) -> str | None:
    """:func:`request_owner` without FastAPI's dependency machinery, for the hot routes
    (which document the scheme with :data:`BEARER_DOC`)."""
    auth: Authenticator = request.app.state.ctx.auth
    return auth.owner(bearer_token(request.headers.get("authorization")))


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
    auth: Authenticator = request.app.state.ctx.auth  # the context imports this module
    return auth.owner(bearer_token(request.headers.get("authorization")))
