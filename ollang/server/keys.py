"""Who a request is: the policy of its key (a ``--api-key`` key, a managed key, or none).

The authentication step (:mod:`ollang.server.auth`) resolves a request's bearer key to a
:class:`KeyPolicy` and leaves it on ``request.state.key``; everything that rations the hosts
(fair queueing, limits, usage) reads it back with :func:`request_key`.
"""

from __future__ import annotations

import fnmatch
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.requests import HTTPConnection

__all__ = ["LOCAL", "KeyPolicy", "current_key", "request_key", "set_current_key"]


@dataclass(frozen=True)
class KeyPolicy:
    """What one key may do, and whose sessions it sees.

    ``name`` is ``"local"`` on a server without keys, ``"api-key-1"``, ``"api-key-2"``... for
    the ``--api-key`` keys (by position), and the managed key's name otherwise: it labels usage
    and metrics (never the secret). ``owner`` is what sessions are owned by (``None``: the one
    local user, who sees every session); a rotated managed key keeps its owner. ``models`` are
    fnmatch patterns of the models the key may use (empty: all the server allows). The limits
    are ``None`` when unset; ``weight`` is the key's share in fair queueing.
    """

    name: str
    owner: str | None
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    daily_tokens: int | None = None
    max_concurrent: int | None = None
    weight: float = 1.0

    def allows_model(self, model: str) -> bool:
        """Whether this key may use ``model`` (always, when it has no patterns)."""
        return not self.models or any(fnmatch.fnmatchcase(model, p) for p in self.models)


#: The policy of a request on a server without keys: one local user, no limits.
LOCAL = KeyPolicy(name="local", owner=None)


def request_key(request: HTTPConnection) -> KeyPolicy:
    """The policy of the request's key, as the auth step left it on ``request.state``;
    :data:`LOCAL` when the request was not authenticated (no keys configured)."""
    policy = getattr(request.state, "key", None)
    return policy if isinstance(policy, KeyPolicy) else LOCAL


#: The policy of the request being served, for code that has no request at hand (the
#: model gate, the turn engine's usage record); set by the auth step with ``request.state``.
_current: ContextVar[KeyPolicy] = ContextVar("ollang_key", default=LOCAL)


def current_key() -> KeyPolicy:
    """The policy of the request this code serves (:data:`LOCAL` outside of one)."""
    return _current.get()


def set_current_key(request: HTTPConnection, policy: KeyPolicy) -> None:
    """Record ``policy`` as the request's key (``request.state.key`` and :func:`current_key`)."""
    request.state.key = policy
    _current.set(policy)
