"""The storage interface every chat store implements, and the records it returns.

A *session* is one conversation, named by a caller-chosen string id. A store
keeps each session's messages in append order and answers the one question a
chat turn asks on its hot path, "the last N messages of this session", without
reading the rest. Everything else (listing, renaming, search) is for the CLI,
the HTTP server and humans.

Implementations: :class:`memory.sqlite.SQLiteChatStore` (durable, the default)
and :class:`memory.inmemory.InMemoryChatStore` (tests, throwaway sessions).
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from langchain_core.messages import BaseMessage

from ollang.memory.errors import SessionExistsError, SessionNotFoundError, StoreError
from ollang.memory.keys import NoSuchKeyError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ollang.memory.keys import KeyLimits, StoredKey, UsageRow

__all__ = [
    "PREFIX_ROUTE_LIMIT",
    "PREFIX_ROUTE_MAX_AGE",
    "PREFIX_ROUTE_PRUNE_EVERY",
    "RATE_WINDOW_KEEP",
    "RATE_WINDOW_PRUNE_EVERY",
    "SNIPPET_ELLIPSIS",
    "SNIPPET_MARK",
    "TITLE_MAX_CHARS",
    "ChatStore",
    "Exchange",
    "MessageStatus",
    "SearchHit",
    "SessionChanges",
    "SessionInfo",
]

#: How a stored reply ended: ``complete``; ``interrupted`` (the user stopped it,
#: or it is a streaming reply flushed mid-way); ``error`` (the model server failed).
MessageStatus = Literal["complete", "interrupted", "error"]

#: Longest title derived from a session's first human message.
TITLE_MAX_CHARS = 60

#: Marks put around matched words in :attr:`SearchHit.snippet` (Markdown bold:
#: readable as plain text and in JSON, and safe to print with rich, unlike ``[...]``).
SNIPPET_MARK = "**"
#: Put where a snippet cuts the message text short.
SNIPPET_ELLIPSIS = "…"

#: Seconds a prefix route counts after it was last recorded (an engine's prompt cache
#: outlives neither its model's unloading nor an hour of other conversations).
PREFIX_ROUTE_MAX_AGE = 3600.0
#: Most prefix routes a store keeps (about 100 bytes each); the oldest go first.
PREFIX_ROUTE_LIMIT = 100_000
#: A store prunes its prefix routes once per this many records (the first one included).
PREFIX_ROUTE_PRUNE_EVERY = 256

#: Seconds a rate window is kept after it started (the longest window, a UTC day, and
#: a day's margin); older ones are pruned.
RATE_WINDOW_KEEP = 2 * 86400
#: A store prunes its old rate windows once per this many counts (the first included).
RATE_WINDOW_PRUNE_EVERY = 1000


@dataclass(frozen=True)
class SessionInfo:
    """What a store knows about a session, without its messages.

    Attributes:
        id: The session id callers use.
        title: Set by :meth:`ChatStore.update_session`, else derived from the
            first human message (first line, at most 60 characters); ``None``
            while there is neither.
        model: The model last used: set by ``update_session`` or taken from an
            added AI message's ``response_metadata["model_name"]`` (or ``"model"``).
        created: When the session was created (epoch seconds).
        updated: When the session last changed (epoch seconds); strictly
            increasing within a store, so it orders sessions reliably.
        message_count: Number of messages stored.
        owner: Who the session belongs to when a multi-user front end (the HTTP
            server with API keys) created it: an opaque string such as a hash of
            the key, never a secret. ``None`` for sessions of the single local
            user (the CLI, or the server without keys).
        system: The session's system prompt, as it was started (or last set); every
            way of resuming it uses it unless the caller gives another.
        options: The session's model options (``temperature``, ``num_ctx``, ...).
    """

    id: str
    title: str | None
    model: str | None
    created: float
    updated: float
    message_count: int
    owner: str | None = None
    system: str | None = None
    options: dict[str, Any] | None = None


class SessionChanges(TypedDict, total=False):
    """The keyword arguments of :meth:`ChatStore.update_session`: what to set.

    ``None`` (or leaving a key out) keeps that field as it is; ``system=""``
    removes the system prompt and ``options={}`` the options.
    """

    title: str | None
    model: str | None
    system: str | None
    options: Mapping[str, Any] | None


@dataclass(frozen=True)
class SearchHit:
    """One message matching a :meth:`ChatStore.search` query.

    Attributes:
        session_id: Session holding the message.
        message_id: The message's id.
        role: ``human``, ``ai``, ``system`` or ``tool``.
        snippet: A short extract of the message text around the match, matched
            words wrapped in ``**``, cuts marked with ``…``.
        created: When the message was first stored (epoch seconds).
    """

    session_id: str
    message_id: str
    role: str
    snippet: str
    created: float


@dataclass(frozen=True)
class Exchange:
    """The last turn of a session: the user's message and the reply to it.

    Attributes:
        human: The last human message, if the session ends with one or with its reply.
        reply: The message after it (usually the AI's answer), or ``None`` when the
            session ends on the human message (the answer failed before any text, or
            is still to come).
    """

    human: BaseMessage | None
    reply: BaseMessage | None

    @property
    def messages(self) -> list[BaseMessage]:
        """The exchange's messages, in order."""
        return [m for m in (self.human, self.reply) if m is not None]


class ChatStore(ABC):
    """Durable (or not) storage of chat sessions made of LangChain messages.

    Messages go in and come out as ``langchain_core`` :class:`BaseMessage`
    objects; ollang's own metadata (status, creation time) travels in
    ``response_metadata`` (see :mod:`memory.messages`). Stores never hand out
    objects they keep: every read builds new messages, so callers may mutate them.

    Stores are usable as context managers (``with open_store() as store:``),
    which closes them on exit.
    """

    @abstractmethod
    def get_messages(self, session_id: str, limit: int | None = None) -> list[BaseMessage]:
        """The session's most recent messages, oldest first.

        Args:
            session_id: The session to read.
            limit: At most this many of the newest messages; ``None`` for all.
                The cost depends on ``limit``, not on the session's length.

        Returns:
            New message objects, each with ``id``, ``ollang_status`` and
            ``ollang_created`` set; ``[]`` for an unknown session.

        Raises:
            ValueError: ``limit`` is negative.
            StoreError: the storage cannot be read.
        """

    def get_messages_before(self, session_id: str, before: str, limit: int) -> list[BaseMessage]:
        """The newest ``limit`` messages stored before message ``before``, oldest first
        (a page further back in a long session; the first page is :meth:`get_messages`).

        This default reads the whole session; the durable stores read the page only.

        Raises:
            ValueError: ``limit`` is negative.
            LookupError: the session has no message ``before``.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        messages = self.get_messages(session_id)
        at = next((i for i, m in enumerate(messages) if m.id == before), None)
        if at is None:
            raise LookupError(f"no message {before!r} in session {session_id!r}")
        return messages[max(0, at - limit) : at] if limit else []

    @abstractmethod
    def add_messages(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """Append messages to a session, or replace ones already stored (upsert by id).

        Creates the session if needed. A message whose ``id`` is ``None`` gets a
        fresh uuid4 hex id assigned *on the object passed in*, so the caller can
        later store a newer version of it. A message whose id is already in the
        session replaces the stored one in place: same position, same creation
        time. That is how a streaming reply is flushed repeatedly and then
        finalised without ever being stored twice.

        All messages of one call are written atomically.

        Args:
            session_id: The session to write.
            messages: Messages in the order they happened.

        Raises:
            ValueError: a message has an unknown type or an invalid ollang status.
            StoreError: the storage cannot be written (nothing was written).
        """

    def add_snapshot(self, session_id: str, message: BaseMessage) -> None:
        """Store a snapshot of a reply that is still streaming (the once-a-second flush).

        Like :meth:`add_messages` with one message, and read back the same (status
        ``interrupted``), but a store may leave a snapshot out of :meth:`search` until
        the reply is stored for good by :meth:`add_messages`, or until the store is
        next opened after a crash: indexing the growing text at every flush was most
        of what storing a turn cost. This default stores it as any message.
        """
        self.add_messages(session_id, [message])

    @abstractmethod
    def delete_messages(self, session_id: str, message_ids: Sequence[str]) -> int:
        """Delete messages of a session by id.

        Returns:
            How many messages were deleted (unknown ids are ignored).
        """

    @abstractmethod
    def get_session(self, session_id: str) -> SessionInfo | None:
        """The session's summary, or ``None`` if there is no such session."""

    @abstractmethod
    def list_sessions(self, *, owner: str | None = None) -> list[SessionInfo]:
        """Sessions, most recently updated first.

        Args:
            owner: Only the sessions of this owner (see :meth:`claim_session`);
                ``None`` lists every session, whoever owns it.
        """

    @abstractmethod
    def claim_session(self, session_id: str, owner: str | None) -> bool:
        """Create a session owned by ``owner`` unless it exists; say whether it is theirs.

        Atomic: when two owners race to claim a new id, exactly one of them gets
        it. A session is never handed over to another owner: an existing one
        keeps its owner (even ``None``), and only that exact owner gets ``True``.

        Args:
            session_id: The session to claim.
            owner: The claimant; ``None`` (the single local user) may use any
                session, so the call only creates it if absent and returns ``True``.

        Returns:
            ``True`` if the session now belongs to ``owner`` (it was created, or
            it was already theirs); ``False`` if it belongs to someone else.
        """

    @abstractmethod
    def update_session(self, session_id: str, **changes: Unpack[SessionChanges]) -> None:
        """Set a session's title, model, system prompt and/or options.

        ``None`` leaves a field as it is; ``system=""`` removes the system prompt and
        ``options={}`` the options. Creates the session if it does not exist. An
        explicit title is never replaced by a derived one.
        """

    @staticmethod
    def _session_changes(
        changes: SessionChanges,
    ) -> tuple[str | None, str | None, str | None, Mapping[str, Any] | None]:
        """``(title, model, system, options)`` from ``update_session``'s keyword arguments
        (for implementations).

        Raises:
            TypeError: a keyword that ``update_session`` does not take, as Python
                raises for an unexpected keyword argument.
        """
        unknown = sorted(changes.keys() - SessionChanges.__optional_keys__)
        if unknown:
            raise TypeError(f"update_session() got an unexpected keyword argument {unknown[0]!r}")
        return (
            changes.get("title"),
            changes.get("model"),
            changes.get("system"),
            changes.get("options"),
        )

    @abstractmethod
    def delete_session(self, session_id: str) -> bool:
        """Delete a session and all its messages.

        Returns:
            ``True`` if the session existed.
        """

    @abstractmethod
    def rename_session(self, old: str, new: str) -> None:
        """Give a session a new id, keeping its messages and metadata.

        Raises:
            SessionNotFoundError: there is no session ``old``.
            SessionExistsError: a session ``new`` already exists.
        """

    @abstractmethod
    def search(self, text: str, *, limit: int = 50) -> list[SearchHit]:
        """Find messages whose text contains all the words of ``text``.

        Any input is taken as plain words: quotes, ``*``, ``-``, ``OR``,
        ``NEAR(`` never cause a syntax error.

        Args:
            text: The words to look for (case-insensitive).
            limit: At most this many hits.

        Returns:
            Matching messages, newest first; ``[]`` if ``text`` has no words.
        """

    # -- chat-turn operations, built on the primitives above ---------------------
    def last_exchange(self, session_id: str) -> Exchange:
        """The session's last human message and what follows it (two reads at most).

        A session ending ``human, ai`` gives both; one ending on a human message gives
        ``(human, None)``; anything else (an AI message alone, an empty session) gives
        ``(None, last message or None)``.
        """
        recent = self.get_messages(session_id, limit=2)
        if recent and recent[-1].type == "human":
            return Exchange(recent[-1], None)
        if len(recent) == 2 and recent[0].type == "human":
            return Exchange(recent[0], recent[1])
        return Exchange(None, recent[-1] if recent else None)

    def drop_last_exchange(self, session_id: str) -> Exchange:
        """Delete the session's last exchange (for "undo" and "retry"); returns what went."""
        exchange = self.last_exchange(session_id)
        ids = [m.id for m in exchange.messages if m.id is not None]
        if ids:
            self.delete_messages(session_id, ids)
        return exchange

    def fork_session(self, source: str, target: str, *, owner: str | None = None) -> int:
        """Copy every message of ``source`` into a new session ``target`` (new ids, same
        texts, statuses and creation times; the title, model, system prompt, options and
        owner too: a fork of a key's session is that key's).

        One operation: ``target`` is created with its owner and its messages, or not at
        all. When ``target`` exists (even if it was claimed a moment ago by someone
        else), nothing is written and :class:`SessionExistsError` says so: a fork never
        adds anything to a session that was not made by it. (The SQLite, PostgreSQL and
        in-memory stores do all of it in one transaction; this default, for other
        stores, checks first and is not atomic.)

        Args:
            source: The session to copy.
            target: The new session's id.
            owner: When given, ``source`` must belong to this owner (else
                :class:`SessionNotFoundError`, as for a missing one).

        Returns:
            How many messages were copied.

        Raises:
            SessionNotFoundError: there is no session ``source`` (of ``owner``).
            SessionExistsError: a session ``target`` already exists.
        """
        from ollang.memory.messages import message_from_dict, message_to_dict  # imports us

        info = self.get_session(source)
        if info is None or (owner is not None and info.owner != owner):
            raise SessionNotFoundError(source)
        if self.get_session(target) is not None:
            raise SessionExistsError(target)
        if info.owner is not None and not self.claim_session(target, info.owner):
            raise SessionExistsError(target)  # made meanwhile by someone else
        copies = []
        for message in self.get_messages(source):
            data = message_to_dict(message)
            data.pop("id", None)
            copies.append(message_from_dict(data))
        self.add_messages(target, copies)  # one transaction
        self.update_session(
            target, title=info.title, model=info.model, system=info.system, options=info.options
        )
        return len(copies)

    # -- prefix routes: where a conversation of a stateless client was served ------
    #: Seconds a prefix route counts (:meth:`find_prefix_routes`) and is kept.
    prefix_route_max_age: float = PREFIX_ROUTE_MAX_AGE
    #: Most prefix routes kept (:meth:`prune_prefix_routes`).
    prefix_route_limit: int = PREFIX_ROUTE_LIMIT
    #: :meth:`record_prefix_routes` prunes once per this many calls.
    prefix_route_prune_every: int = PREFIX_ROUTE_PRUNE_EVERY
    _prefix_records = 0

    def find_prefix_routes(self, model: str, digests: Sequence[bytes]) -> dict[bytes, str]:
        """The hosts recorded for ``digests`` of ``model`` within
        :attr:`prefix_route_max_age`, by digest (one indexed query in the durable stores).

        The server's cache-aware routing (:mod:`ollang.routing.prefix`) asks this for every
        prefix of a stateless client's request, and sends it to the host of the longest
        one found. A route is a digest of messages and a host name: nothing of the
        messages themselves is stored. This default (a store that keeps no routes) finds
        none, and routing falls back on each process's own memory.

        Args:
            model: The model the digests were made for.
            digests: Digests of message prefixes (:func:`~ollang.routing.prefix.prefix_digests`).
        """
        return {}

    def record_prefix_routes(  # noqa: B027 - optional: a store may keep no routes
        self, model: str, digests: Sequence[bytes], host: str
    ) -> None:
        """Record that ``host`` served the conversations of ``digests`` of ``model`` now
        (replacing what was recorded for them), so that every replica on this store sends
        their continuations there. Prunes once per :attr:`prefix_route_prune_every` calls.
        This default keeps nothing."""

    def prune_prefix_routes(self) -> int:
        """Drop the prefix routes older than :attr:`prefix_route_max_age`, then the oldest
        beyond :attr:`prefix_route_limit`; returns how many went."""
        return 0

    def _prefix_prune_due(self) -> bool:
        """Whether this record call should prune (the first, then one in every
        :attr:`prefix_route_prune_every`); for implementations."""
        count = self._prefix_records
        self._prefix_records = count + 1
        return count % max(1, self.prefix_route_prune_every) == 0

    # -- rate windows: the keys' limits, counted where every replica counts ----------
    #: :meth:`take_rate` and :meth:`add_rate` prune once per this many calls.
    rate_prune_every: int = RATE_WINDOW_PRUNE_EVERY
    _rate_calls = 0
    # This default's counters (a store that shares nothing: they are this process's).
    _rate_lock = threading.Lock()
    _rate_counts: dict[tuple[str, str, int], int] | None = None

    def take_rate(
        self, key: str, kind: str, window_start: int, amount: int, limit: int
    ) -> tuple[bool, int]:
        """Add ``amount`` to the counter ``(key, kind, window_start)`` if it stays within
        ``limit``, atomically: returns whether it was added and the count after (the
        count as it is, when refused).

        The server's rate limits (:mod:`ollang.server.limits`) count a key's requests
        this way: in a shared store (SQLite, PostgreSQL) one statement, so every replica
        on the store counts against the same row and the limit holds across them. This
        default keeps the counters in this process. Prunes now and then (see
        :meth:`prune_rates`).
        """
        self._rate_prune_maybe()
        with self._rate_lock:
            counts = self._rate_dict()
            now = counts.get((key, kind, window_start), 0)
            if now + amount > limit:
                return False, now
            counts[(key, kind, window_start)] = now + amount
            return True, now + amount

    def add_rate(self, key: str, kind: str, window_start: int, amount: int) -> int:
        """Add ``amount`` to the counter ``(key, kind, window_start)`` whatever it comes
        to (tokens, which are known only when a turn has ended); returns the count after."""
        self._rate_prune_maybe()
        with self._rate_lock:
            counts = self._rate_dict()
            after = counts.get((key, kind, window_start), 0) + amount
            counts[(key, kind, window_start)] = after
            return after

    def rate(self, key: str, kind: str, window_start: int) -> int:
        """The counter ``(key, kind, window_start)`` (0 when nothing was counted)."""
        with self._rate_lock:
            return self._rate_dict().get((key, kind, window_start), 0)

    def prune_rates(self, before: int) -> int:
        """Drop the rate windows that started before ``before`` (epoch seconds); returns
        how many went."""
        with self._rate_lock:
            counts = self._rate_dict()
            old = [window for window in counts if window[2] < before]
            for window in old:
                del counts[window]
            return len(old)

    def _rate_dict(self) -> dict[tuple[str, str, int], int]:
        if self._rate_counts is None:
            self._rate_counts = {}
        return self._rate_counts

    def _rate_prune_maybe(self) -> None:
        """Prune windows older than :data:`RATE_WINDOW_KEEP` on the first call and then
        once per :attr:`rate_prune_every`; for implementations, before they count."""
        count = self._rate_calls
        self._rate_calls = count + 1
        if count % max(1, self.rate_prune_every) == 0:
            self.prune_rates(int(time.time()) - RATE_WINDOW_KEEP)

    # -- managed keys and usage (ollang.memory.keys) --------------------------------
    def create_key(
        self, name: str, secret_hash: str, *, owner: str, **limits: Unpack[KeyLimits]
    ) -> StoredKey:
        """Store a managed key: its name, the SHA-256 hex of its secret (never the secret),
        the owner id its sessions will have (kept through rotations) and its policy
        (:class:`~ollang.memory.keys.KeyLimits`). For ``ollang keys create`` and
        ``POST /admin/keys``; servers on this store honour it within seconds.

        Raises:
            KeyExistsError: a key of that name exists (revoked ones included).
        """
        raise StoreError(f"{type(self).__name__} keeps no managed keys")

    def list_keys(self) -> list[StoredKey]:
        """Every managed key, revoked ones included, by name."""
        return []

    def revoke_key(self, name: str) -> StoredKey:
        """Revoke ``name`` for good: requests with it are refused (401, with a hint).

        Raises:
            NoSuchKeyError: no key has that name.
        """
        raise NoSuchKeyError(name)

    def rotate_key(self, name: str, secret_hash: str) -> StoredKey:
        """Give ``name`` a new secret (its SHA-256 hex); the old one stops working, the
        owner and so the sessions stay.

        Raises:
            NoSuchKeyError: no key has that name.
            KeyRevokedError: the key was revoked.
        """
        raise NoSuchKeyError(name)

    def key_by_hash(self, secret_hash: str) -> StoredKey | None:
        """The managed key whose secret has this SHA-256 hex (revoked ones included), or
        ``None``."""
        return next((k for k in self.list_keys() if k.secret_hash == secret_hash), None)

    def keys_version(self) -> object:
        """A cheap value that changes whenever a key is created, revoked or rotated: a
        server re-reads :meth:`list_keys` only when it differs from the last one seen."""
        return None

    def add_usage(self, rows: Sequence[UsageRow]) -> None:  # noqa: B027 - optional
        """Add ``rows`` to the usage counters of their ``(key, model, day)`` (one
        transaction). The server calls it with a few seconds' worth of turns at once,
        the CLI once per turn. This default keeps nothing."""

    def usage(self, *, since: str | None = None, key: str | None = None) -> list[UsageRow]:
        """Usage rows from day ``since`` (``YYYY-MM-DD``, UTC) on, of one key's name or
        all, by day, key and model."""
        return []

    def batch(self) -> AbstractContextManager[None]:
        """Run this thread's calls inside it as one transaction, each call isolated.

        A call that fails inside the block changes nothing (its own part is rolled back)
        and raises as usual; the others commit together when the block ends. If that
        commit fails, none of them is stored and the block raises. Stores without
        transactions run each call on its own (the default).

        The server's store writer uses it to write many turns' messages at once.
        """
        return contextlib.nullcontext()

    def close(self) -> None:  # noqa: B027 - optional hook; stores without resources need nothing
        """Release the store's resources (connections, files). Idempotent."""

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
