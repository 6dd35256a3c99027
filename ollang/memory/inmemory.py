"""A session store that lives in this process only: for tests and throwaway chats.

Same behaviour as the SQLite store (upsert by id, derived titles, ordering,
search by words) so that code and tests can swap one for the other.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from ollang.memory.base import ChatStore, SearchHit, SessionInfo
from ollang.memory.errors import SessionExistsError, SessionNotFoundError
from ollang.memory.keys import MemoryKeys
from ollang.memory.messages import (
    content_text,
    message_from_dict,
    message_model,
    message_to_dict,
    title_from_text,
)
from ollang.memory.search import matches, query_terms, snippet

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ollang.memory.base import SessionChanges
    from ollang.memory.keys import KeyLimits, StoredKey, UsageRow

__all__ = ["InMemoryChatStore"]


@dataclass
class _Session:
    id: str
    created: float
    updated: float
    title: str | None = None
    model: str | None = None
    owner: str | None = None
    system: str | None = None
    options: dict[str, Any] | None = None
    # Message dicts (never objects callers hold), in order.
    messages: list[dict[str, Any]] = field(default_factory=list)
    # Message id -> position in `messages`, for O(1) upserts.
    positions: dict[str, int] = field(default_factory=dict)
    # Message id -> store-wide append number (the SQLite store's rowid), for search order.
    appended: dict[str, int] = field(default_factory=dict)

    def info(self) -> SessionInfo:
        return SessionInfo(
            self.id,
            self.title,
            self.model,
            self.created,
            self.updated,
            len(self.messages),
            self.owner,
            system=self.system,
            options=dict(self.options) if self.options else None,
        )


class InMemoryChatStore(ChatStore):
    """Chat sessions in a dict, guarded by one lock (safe from several threads).

    Messages are kept as :func:`~memory.messages.message_to_dict` dicts, so what
    callers do to their message objects afterwards never changes what is stored,
    and every read returns new objects.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sessions: dict[str, _Session] = {}
        self._last_update = 0.0
        self._appends = 0
        # digest -> (model, host, seen), least recently recorded first.
        self._routes: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()
        self._keys = MemoryKeys()

    def __repr__(self) -> str:
        return f"InMemoryChatStore({len(self._sessions)} sessions)"

    def _now(self) -> float:
        # Strictly increasing, like the SQLite store's, so session order is exact.
        now = time.time()
        self._last_update = now if now > self._last_update else self._last_update + 1e-6
        return self._last_update

    def _session(self, session_id: str, now: float) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(session_id, now, now)
        return session

    # -- messages -----------------------------------------------------------------
    def get_messages(self, session_id: str, limit: int | None = None) -> list[BaseMessage]:
        """See :meth:`ChatStore.get_messages`; O(limit)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or limit == 0:
                return []
            stored = session.messages if limit is None else session.messages[-limit:]
        return [message_from_dict(data) for data in stored]

    def add_messages(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """See :meth:`ChatStore.add_messages`."""
        if not messages:
            return
        prepared: list[dict[str, Any]] = []
        models: list[str | None] = []
        for message in messages:
            if message.id is None:
                message.id = uuid.uuid4().hex  # on the caller's object: it may upsert later
            prepared.append(message_to_dict(message))  # validates before anything changes
            models.append(message_model(message))
        with self._lock:
            now = self._now()
            session = self._session(session_id, now)
            for data, model in zip(prepared, models, strict=True):
                position = session.positions.get(data["id"])
                if position is None:
                    if data["created"] is None:
                        data["created"] = now
                    session.positions[data["id"]] = len(session.messages)
                    self._appends += 1
                    session.appended[data["id"]] = self._appends
                    session.messages.append(data)
                else:
                    data["created"] = session.messages[position]["created"]
                    session.messages[position] = data
                if session.title is None and data["role"] == "human":
                    session.title = title_from_text(content_text(data["content"]))
                if model:
                    session.model = model
            session.updated = now

    def delete_messages(self, session_id: str, message_ids: Sequence[str]) -> int:
        """See :meth:`ChatStore.delete_messages`."""
        doomed = set(message_ids)
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return 0
            kept = [data for data in session.messages if data["id"] not in doomed]
            deleted = len(session.messages) - len(kept)
            if deleted:
                session.messages = kept
                session.positions = {data["id"]: i for i, data in enumerate(kept)}
                for message_id in doomed:
                    session.appended.pop(message_id, None)
                session.updated = self._now()
            return deleted

    # -- sessions -----------------------------------------------------------------
    def get_session(self, session_id: str) -> SessionInfo | None:
        """See :meth:`ChatStore.get_session`."""
        with self._lock:
            session = self._sessions.get(session_id)
            return session.info() if session else None

    def list_sessions(self, *, owner: str | None = None) -> list[SessionInfo]:
        """See :meth:`ChatStore.list_sessions`."""
        with self._lock:
            infos = [
                session.info()
                for session in self._sessions.values()
                if owner is None or session.owner == owner
            ]
        return sorted(infos, key=lambda info: info.updated, reverse=True)

    def claim_session(self, session_id: str, owner: str | None) -> bool:
        """See :meth:`ChatStore.claim_session`."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                now = self._now()
                session = self._sessions[session_id] = _Session(session_id, now, now, owner=owner)
            return owner is None or session.owner == owner

    def update_session(self, session_id: str, **changes: Unpack[SessionChanges]) -> None:
        """See :meth:`ChatStore.update_session`."""
        title, model, system, options = self._session_changes(changes)
        with self._lock:
            now = self._now()
            session = self._session(session_id, now)
            if title is not None:
                session.title = title
            if model is not None:
                session.model = model
            if system is not None:
                session.system = system or None
            if options is not None:
                session.options = copy.deepcopy(dict(options)) or None
            session.updated = now

    def delete_session(self, session_id: str) -> bool:
        """See :meth:`ChatStore.delete_session`."""
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def rename_session(self, old: str, new: str) -> None:
        """See :meth:`ChatStore.rename_session`."""
        with self._lock:
            session = self._sessions.get(old)
            if session is None:
                raise SessionNotFoundError(old)
            if old == new:
                return
            if new in self._sessions:
                raise SessionExistsError(new)
            del self._sessions[old]
            session.id = new
            session.updated = self._now()
            self._sessions[new] = session

    def fork_session(self, source: str, target: str, *, owner: str | None = None) -> int:
        """See :meth:`ChatStore.fork_session`: all of it under the store's lock, so no
        claim of ``target`` can land between the check and the copy."""
        with self._lock:
            return super().fork_session(source, target, owner=owner)

    # -- search -------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 50) -> list[SearchHit]:
        """See :meth:`ChatStore.search` (word stems and prefixes, newest first)."""
        words = query_terms(text)
        if not words or limit <= 0:
            return []
        with self._lock:
            candidates = [
                (session.appended[data["id"]], session.id, data)
                for session in self._sessions.values()
                for data in session.messages
            ]
        candidates.sort(key=lambda item: item[0], reverse=True)  # newest first, as in SQLite
        hits: list[SearchHit] = []
        for _, session_id, data in candidates:
            text_of = content_text(data["content"])
            if matches(words, text_of):
                hits.append(
                    SearchHit(
                        session_id,
                        data["id"],
                        data["role"],
                        snippet(words, text_of),
                        data["created"],
                    )
                )
                if len(hits) == limit:
                    break
        return hits

    # -- prefix routes ------------------------------------------------------------
    def find_prefix_routes(self, model: str, digests: Sequence[bytes]) -> dict[bytes, str]:
        """See :meth:`ChatStore.find_prefix_routes`."""
        oldest = time.time() - self.prefix_route_max_age
        with self._lock:
            found = {d: self._routes.get(d) for d in digests}
        return {
            d: route[1]
            for d, route in found.items()
            if route is not None and route[0] == model and route[2] >= oldest
        }

    def record_prefix_routes(self, model: str, digests: Sequence[bytes], host: str) -> None:
        """See :meth:`ChatStore.record_prefix_routes`."""
        now = time.time()
        with self._lock:
            for digest in digests:
                self._routes[digest] = (model, host, now)
                self._routes.move_to_end(digest)
        if self._prefix_prune_due():
            self.prune_prefix_routes()

    def prune_prefix_routes(self) -> int:
        """See :meth:`ChatStore.prune_prefix_routes`."""
        oldest = time.time() - self.prefix_route_max_age
        dropped = 0
        with self._lock:
            while self._routes:
                digest, (_, _, seen) = next(iter(self._routes.items()))
                if seen >= oldest and len(self._routes) <= self.prefix_route_limit:
                    break
                del self._routes[digest]
                dropped += 1
        return dropped

    # -- managed keys and usage -------------------------------------------------------
    def create_key(
        self, name: str, secret_hash: str, *, owner: str, **limits: Unpack[KeyLimits]
    ) -> StoredKey:
        """See :meth:`ChatStore.create_key`."""
        return self._keys.create(name, secret_hash, owner, limits)

    def list_keys(self) -> list[StoredKey]:
        """See :meth:`ChatStore.list_keys`."""
        with self._keys.lock:
            return sorted(self._keys.keys.values(), key=lambda k: k.name)

    def revoke_key(self, name: str) -> StoredKey:
        """See :meth:`ChatStore.revoke_key`."""
        return self._keys.change(name, revoked=time.time())

    def rotate_key(self, name: str, secret_hash: str) -> StoredKey:
        """See :meth:`ChatStore.rotate_key`."""
        return self._keys.change(name, secret_hash=secret_hash)

    def keys_version(self) -> object:
        """See :meth:`ChatStore.keys_version`."""
        return self._keys.version

    def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """See :meth:`ChatStore.add_usage`."""
        self._keys.add_usage(rows)

    def usage(self, *, since: str | None = None, key: str | None = None) -> list[UsageRow]:
        """See :meth:`ChatStore.usage`."""
        return self._keys.read_usage(since, key)
