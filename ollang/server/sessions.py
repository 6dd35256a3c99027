"""Session access for the routes: ownership, claims, reading and deleting — the only way
routes reach the store.

With API keys, a request's *owner* is the digest of its key (:mod:`ollang.server.auth`):
it sees, continues and deletes only the sessions that key created, and another key's
session answers 404 exactly as a missing one does. Without keys the owner is ``None``:
one local user who sees every session. Store calls run in worker threads, off the loop.
"""

from __future__ import annotations

import asyncio

from langchain_core.messages import BaseMessage

from ollang.memory import ChatStore, SessionInfo
from ollang.server.errors import session_not_found

__all__ = ["SessionAccess"]


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
        if not await asyncio.to_thread(self.store.claim_session, session_id, owner):
            raise session_not_found(session_id)

    async def settings(self, session_id: str, owner: str | None) -> SessionInfo | None:
        """The session's stored settings (``None`` for a new id); 404 for another key's."""
        info = await asyncio.to_thread(self.store.get_session, session_id)
        if info is not None and owner is not None and info.owner != owner:
            raise session_not_found(session_id)
        return info

    async def rename(
        self, session_id: str, owner: str | None, *, new_id: str | None, title: str | None
    ) -> SessionInfo:
        """Rename and/or retitle a visible session; 404 for another key's, 409 if taken."""
        await self.visible(session_id, owner)
        if title is not None:
            await asyncio.to_thread(self.store.update_session, session_id, title=title)
        if new_id is not None and new_id != session_id:
            await asyncio.to_thread(self.store.rename_session, session_id, new_id)
            session_id = new_id
        return await self.visible(session_id, owner)

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

    async def delete(self, session_id: str, owner: str | None) -> None:
        """Delete a visible session and its messages; else 404."""
        await self.visible(session_id, owner)
        await asyncio.to_thread(self.store.delete_session, session_id)
