"""Sessions for clients that have none: recording what stateless clients send.

OpenAI- and Ollama-style clients keep the conversation themselves and send all of it
with every request. A client that *names* a session — the ``X-Session-Id`` header on
``/v1/chat/completions`` and ``/api/chat``, or OpenAI's ``metadata.session_id`` — gets
its conversation recorded there, owned by its key, as an ordinary ollang session
(listed by ``/sessions``, searchable, exportable, on the page):

* **Each message once.** The client's messages (without system messages) are compared
  with the session's. When the stored ones are a prefix of what the client sent, only
  the rest is stored (before the model is called), then the answer, flushed and
  finalised like any turn's (a partial answer is kept on an error or a disconnect).
* **System prompts** are the session's ``system`` (several are joined by a blank line),
  not messages: changing it changes the session's, without a fork.
* **A retry.** A stored answer that did not complete (``error``/``interrupted``) at the
  end of the session and that the client does not send back stays as a failed attempt;
  the new answer follows it (as ``/chat`` does for retries).
* **A divergence** (an earlier message edited or removed, an answer regenerated): the
  session as it was is copied to a fork, ``<id>@1`` (then ``@2``, ...), owned by the
  same key, and the session then mirrors what the client sent. Nothing is lost and the
  client's session id stays the one it named. The fork is one store operation
  (:meth:`~ollang.memory.ChatStore.fork_session`) that creates it, owned, with its
  messages, only if the id is free: a name someone else claimed meanwhile is never
  written to (the next ``N`` is tried). With API keys, ``<id>@N`` names are created only
  for the owner of ``<id>`` (:func:`ollang.server.sessions.may_create`).

Without a name nothing is recorded, unless the server runs with
``OLLANG_SERVER_RECORD_ALL=true``: then every conversation is recorded, in the session
whose recorded messages its history continues (matched by a digest of the messages, per
key, remembered by this server process: after a restart, or on another ``--workers``
process, a continued conversation starts a new session, holding its whole history once),
or in a new one. The session id is returned in the ``X-Session-Id`` response header.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from fastapi import Request
from langchain_core.messages import BaseMessage

from ollang.memory import ChatStore, message_status
from ollang.memory.errors import SessionExistsError
from ollang.memory.ids import SESSION_ID_HINT, is_valid_session_id
from ollang.server.errors import ValidationFailedError, session_not_found
from ollang.server.sessions import may_create
from ollang.server.turns import HOST_KEY, TurnRequest

__all__ = [
    "SESSION_HEADER",
    "RecordIndex",
    "Recording",
    "attach",
    "fork_name",
    "message_key",
    "remember_answer",
    "requested_session",
]

#: The request (and response) header naming the session.
SESSION_HEADER = "X-Session-Id"
#: Most conversations :class:`RecordIndex` remembers (least recently used go first).
INDEX_SIZE = 100_000


def requested_session(request: Request, named: str | None = None) -> str | None:
    """The session a request names: its ``X-Session-Id`` header, else ``named``.

    Raises:
        ValidationFailedError: the id is not a valid session id.
    """
    value = request.headers.get(SESSION_HEADER) or named
    if value is None:
        return None
    if not is_valid_session_id(value):
        raise ValidationFailedError(
            f"invalid session id in {SESSION_HEADER}: {SESSION_ID_HINT} (and no '..')",
            "name the session with a valid id, or send none",
        )
    return value


def message_key(message: BaseMessage) -> str:
    """What makes two messages "the same" when a client resends its history.

    The role, the text (surrounding whitespace aside), the images (by digest) and the
    tool calls (name and arguments; ids differ between clients). Reasoning, ids and
    metadata are not compared.
    """
    content = message.content
    images = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "image":
                data = str(block.get("base64") or block.get("data") or block.get("url") or "")
                images.append(hashlib.sha256(data.encode()).hexdigest()[:16])
    calls = [
        [call["name"], json.dumps(call["args"], sort_keys=True, ensure_ascii=False)]
        for call in getattr(message, "tool_calls", None) or []
    ]
    return json.dumps([message.type, message.text.strip(), images, calls], ensure_ascii=False)


def _chain(owner: str | None, keys: Sequence[str]) -> list[str]:
    """Digests of every prefix of a conversation: ``out[i]`` covers ``keys[:i + 1]``."""
    digest = hashlib.sha256((owner or "").encode()).digest()
    out = []
    for key in keys:
        digest = hashlib.sha256(digest + key.encode()).digest()
        out.append(digest.hex())
    return out


class RecordIndex:
    """For ``record_all``: which session a conversation's history continues.

    After each recorded answer, the digest of the whole conversation (the client's
    messages and the answer) maps to its session; a later request whose history starts
    with a conversation seen before continues that session. In memory, per process,
    bounded (:data:`INDEX_SIZE`).
    """

    def __init__(self, size: int = INDEX_SIZE) -> None:
        self.size = size
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, owner: str | None, keys: Sequence[str]) -> str | None:
        """The session of the longest recorded conversation ``keys`` starts with."""
        chain = _chain(owner, keys)
        with self._lock:
            for digest in reversed(chain):
                session = self._sessions.get(digest)
                if session is not None:
                    self._sessions.move_to_end(digest)
                    return session
        return None

    def remember(self, owner: str | None, keys: Sequence[str], session_id: str) -> None:
        """Record that the conversation ``keys`` is (now) in ``session_id``."""
        if not keys:
            return
        digest = _chain(owner, keys)[-1]
        with self._lock:
            self._sessions[digest] = session_id
            self._sessions.move_to_end(digest)
            while len(self._sessions) > self.size:
                self._sessions.popitem(last=False)


def record_index(request: Request) -> RecordIndex:
    """The app's :class:`RecordIndex` (for ``record_all``), made on first use."""
    state = request.app.state
    index: RecordIndex | None = getattr(state, "record_index", None)
    if index is None:
        index = state.record_index = RecordIndex()
    return index


def fork_name(store: ChatStore, session_id: str) -> str:
    """The first free ``<id>@N`` (the id shortened if it would pass 128 characters)."""
    return _numbered(session_id, _free_fork(store, session_id, 1))


def _numbered(session_id: str, number: int) -> str:
    suffix = f"@{number}"
    return session_id[: 128 - len(suffix)] + suffix


def _free_fork(store: ChatStore, session_id: str, start: int) -> int:
    """The first ``N >= start`` for which no session ``<id>@N`` exists (yet)."""
    number = start
    while store.get_session(_numbered(session_id, number)) is not None:
        number += 1
    return number


def _effective(stored: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The stored conversation as a client would have it: no system messages, no empty
    replies, and no failed or stopped attempts that a later answer superseded."""
    out: list[BaseMessage] = []
    for message in stored:
        if message.type == "system":
            continue
        if message.type == "ai" and not message.content and not getattr(message, "tool_calls", []):
            continue
        if out and out[-1].type == "ai" and message.type == "ai" and not _complete(out[-1]):
            out[-1] = message
            continue
        out.append(message)
    return out


def _complete(message: BaseMessage) -> bool:
    try:
        return message_status(message) == "complete"
    except ValueError:
        return True


class Recording:
    """The record hook of one turn (:attr:`~ollang.server.turns.TurnRequest.record`).

    Runs on the store writer's thread, before the model is called. Attributes after the
    call say what it did (for tests and logs).

    Args:
        session_id: The session to record into.
        owner: The key's owner id (another owner's session answers 404).
        messages: What the client sent, system messages included.
    """

    def __init__(self, session_id: str, owner: str | None, messages: Sequence[BaseMessage]):
        self.session_id = session_id
        self.owner = owner
        systems = [m.text for m in messages if m.type == "system" and m.text.strip()]
        self.system = "\n\n".join(systems) if systems else None
        self.messages = [m for m in messages if m.type != "system"]
        self.keys = [message_key(m) for m in self.messages]
        self.added = 0
        self.fork: str | None = None

    def __call__(self, store: ChatStore) -> str | None:
        """Claim the session, store what it lacks (forking on a divergence); returns the
        host of its last answer (the router prefers it).

        Raises:
            SessionNotFoundError: the session belongs to another key, or is a new
                ``<id>@<n>`` and ``<id>`` is not this key's (404, as for a missing one).
        """
        session_id = self.session_id
        if store.get_session(session_id) is None and not may_create(store, session_id, self.owner):
            raise session_not_found(session_id)
        if not store.claim_session(session_id, self.owner):
            raise session_not_found(session_id)
        stored = store.get_messages(session_id)
        effective = _effective(stored)
        common = 0
        for mine, theirs in zip(effective, self.keys, strict=False):
            if message_key(mine) != theirs:
                break
            common += 1
        retry = (
            common == len(effective) - 1
            and effective[-1] is stored[-1]
            and effective[-1].type == "ai"
            and not _complete(effective[-1])
        )
        if common < len(effective) and not retry:
            self._fork(store)
            # Cut right after the last message both agree on (with any failed attempts
            # between it and the divergence: they belong to the branch that goes).
            first = 0
            if common:
                first = next(i for i, m in enumerate(stored) if m is effective[common - 1]) + 1
            store.delete_messages(session_id, [m.id for m in stored[first:] if m.id])
            stored = stored[:first]
        new = [_fresh(m) for m in self.messages[common:]]
        if new:
            store.add_messages(session_id, new)
        self.added = len(new)
        info = store.get_session(session_id)
        if self.system is not None and info is not None and info.system != self.system:
            store.update_session(session_id, system=self.system)
        last = next((m for m in reversed(stored) if m.type == "ai"), None)
        if last is None or not _complete(last):
            return None
        host = last.response_metadata.get(HOST_KEY)
        return str(host) if host else None

    def _fork(self, store: ChatStore) -> None:
        """Copy the session as it is into the first free ``<id>@N``, owned by the same key.

        One store operation creates the fork, owned, with its messages, only if the name
        is free (:meth:`~ollang.memory.ChatStore.fork_session`): a name claimed by anyone
        meanwhile (another ``--workers`` process, a replica, a rename) is never written
        to; the next ``N`` is tried.
        """
        number = 1
        while True:
            number = _free_fork(store, self.session_id, number)
            target = _numbered(self.session_id, number)
            try:
                store.fork_session(self.session_id, target, owner=self.owner)
            except SessionExistsError:
                number += 1  # taken between the look and the fork: the next one
                continue
            self.fork = target
            return


def _fresh(message: BaseMessage) -> BaseMessage:
    """A copy to store: a new id (the client's message objects stay as they were sent)."""
    return message.model_copy(update={"id": None})


def attach(
    turn: TurnRequest,
    request: Request,
    *,
    named: str | None,
    record_all: bool,
    index: RecordIndex,
) -> Recording | None:
    """Make ``turn`` (a stateless turn: ``messages`` set) recorded, if the request names
    a session or ``record_all`` is on; returns the recording (``None``: not recorded).

    Raises:
        ValidationFailedError: the named session id is invalid.
    """
    assert turn.messages is not None
    session_id = requested_session(request, named)
    if session_id is None and not record_all:
        return None
    if session_id is None:
        keys = [message_key(m) for m in turn.messages if m.type != "system"]
        session_id = index.find(turn.owner, keys) or uuid.uuid4().hex
    recording = Recording(session_id, turn.owner, turn.messages)
    turn.session_id = session_id
    turn.record = recording
    return recording


def remember_answer(
    recording: Recording | None, index: RecordIndex, answer: BaseMessage, *, record_all: bool
) -> None:
    """After a recorded answer: remember the conversation for ``record_all`` matching."""
    if recording is None or not record_all:
        return
    index.remember(recording.owner, [*recording.keys, message_key(answer)], recording.session_id)
