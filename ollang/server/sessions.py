"""Session access for the routes: ownership, claims, reading and deleting — the only way
routes reach the store.

With API keys, a request's *owner* is the digest of its key (:mod:`ollang.server.auth`):
it sees, continues and deletes only the sessions that key created, and another key's
session answers 404 exactly as a missing one does. Without keys the owner is ``None``:
one local user who sees every session. Store calls run in worker threads, off the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from ollang.memory import ChatStore, SessionInfo
from ollang.memory.errors import SessionExistsError
from ollang.memory.ids import fork_parent
from ollang.server.errors import ValidationFailedError, session_not_found

__all__ = ["DEFAULT_PAGE", "Page", "SessionAccess", "may_create"]

#: Messages ``GET /sessions/{id}`` returns when the request names no ``limit``.
DEFAULT_PAGE = 100


def may_create(store: ChatStore, session_id: str, owner: str | None) -> bool:
    """Whether ``owner`` may create ``session_id`` (it does not exist yet).

    ``<id>@<n>`` names are where the server keeps the forks of ``<id>`` (recorded
    stateless clients, :mod:`ollang.server.recording`): with API keys, only the owner
    of ``<id>`` may create one, so no key can take a name another key's forks will
    need (or land anything in a fork of someone else's session). Without keys
    (``owner`` ``None``, the one local user) every name may be created.
    """
    parent = fork_parent(session_id)
    if owner is None or parent is None:
        return True
    info = store.get_session(parent)
    return info is not None and info.owner == owner


@dataclass(frozen=True)
class Page:
    """One page of a session's messages (:meth:`SessionAccess.page`).

    Attributes:
        info: The session.
        messages: The page, oldest first, already converted (by ``convert``).
        has_more: Whether older messages exist before the page.
    """

    info: SessionInfo
    messages: list[Any]
    has_more: bool


class SessionAccess:
    """What a request may do with stored sessions."""

    def __init__(self, store: ChatStore) -> None:
        self.store = store

    async def claim(self, session_id: str, owner: str | None) -> None:
        """Make sure ``owner`` may write ``session_id`` (creating it as theirs if new).

        Raises:
            SessionNotFoundError: it belongs to another key (404, as if absent).
        """
        if owner is None:
            return

        def claim() -> bool:
            if self.store.get_session(session_id) is None and not may_create(
                self.store, session_id, owner
            ):
                return False
            return self.store.claim_session(session_id, owner)

        if not await asyncio.to_thread(claim):
            raise session_not_found(session_id)

    async def settings(self, session_id: str, owner: str | None) -> SessionInfo | None:
        """The session's stored settings (``None`` for a new id); 404 for another key's,
        and for a new ``<id>@<n>`` unless ``<id>`` is the key's (:func:`may_create`)."""

        def read() -> SessionInfo | None:
            info = self.store.get_session(session_id)
            if info is None and not may_create(self.store, session_id, owner):
                raise session_not_found(session_id)
            return info

        info = await asyncio.to_thread(read)
        if info is not None and owner is not None and info.owner != owner:
            raise session_not_found(session_id)
        return info

    async def rename(
        self, session_id: str, owner: str | None, *, new_id: str | None, title: str | None
    ) -> SessionInfo:
        """Rename and/or retitle a visible session; 404 for another key's; renaming onto
        an id taken by this key is 409, onto another key's the 404 of a missing session
        (nothing tells a key that an id it cannot see exists), as is onto ``<id>@<n>``
        when ``<id>`` is not this key's (:func:`may_create`)."""
        await self.visible(session_id, owner)
        if new_id is not None and new_id != session_id:
            await asyncio.to_thread(self._rename, session_id, new_id, owner)
            session_id = new_id
        if title is not None:
            await asyncio.to_thread(self.store.update_session, session_id, title=title)
        return await self.visible(session_id, owner)

    def _rename(self, session_id: str, new_id: str, owner: str | None) -> None:
        store = self.store
        if not may_create(store, new_id, owner):
            raise session_not_found(new_id)
        try:
            store.rename_session(session_id, new_id)
        except SessionExistsError:
            taken = store.get_session(new_id)
            if owner is not None and (taken is None or taken.owner != owner):
                raise session_not_found(new_id) from None
            raise

    async def visible(self, session_id: str, owner: str | None) -> SessionInfo:
        """The session's info if it exists and ``owner`` may see it; else 404."""
        info = await asyncio.to_thread(self.store.get_session, session_id)
        if info is None or (owner is not None and info.owner != owner):
            raise session_not_found(session_id)
        return info

    async def listing(self, owner: str | None, limit: int | None = None) -> list[SessionInfo]:
        """The sessions ``owner`` may see, most recently updated first."""
        infos = await asyncio.to_thread(self.store.list_sessions, owner=owner)
        return infos if limit is None else infos[:limit]

    async def read(
        self, session_id: str, owner: str | None, limit: int | None = None
    ) -> tuple[SessionInfo, list[BaseMessage]]:
        """A visible session and its newest ``limit`` messages (all when ``None``), oldest first."""
        info = await self.visible(session_id, owner)
        return info, await asyncio.to_thread(self.store.get_messages, session_id, limit)

    async def page(
        self,
        session_id: str,
        owner: str | None,
        *,
        limit: int,
        before: str | None,
        convert: Callable[[BaseMessage], Any],
    ) -> Page:
        """A visible session and a page of its messages: the newest ``limit`` of them, or
        the newest ``limit`` before message ``before``; read and converted (``convert``)
        in a worker thread, so a long session never holds up the event loop.

        Raises:
            SessionNotFoundError: the session is missing or another key's (404).
            ValidationFailedError: the session has no message ``before`` (422).
        """

        def read() -> Page:
            info = self.store.get_session(session_id)
            if info is None or (owner is not None and info.owner != owner):
                raise session_not_found(session_id)
            if before is None:
                messages = self.store.get_messages(session_id, limit + 1)
            else:
                try:
                    messages = self.store.get_messages_before(session_id, before, limit + 1)
                except LookupError:
                    raise ValidationFailedError(
                        f"session {session_id!r} has no message {before!r}",
                        "page back with ?before= set to the id of the first message of a page",
                    ) from None
            more = len(messages) > limit
            return Page(info, [convert(m) for m in messages[-limit:]], more)

        return await asyncio.to_thread(read)

    async def delete(self, session_id: str, owner: str | None) -> None:
        """Delete a visible session and its messages; else 404."""
        await self.visible(session_id, owner)
        await asyncio.to_thread(self.store.delete_session, session_id)
