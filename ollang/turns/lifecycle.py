"""The turn life cycle: what to store, and when, for one chat turn — and no I/O at all.

Every place that runs a turn (the chat chain's ``stream_turn`` and ``astream_turn``, the
server's turn engine) drives the same :class:`TurnLifecycle` and carries out the
:class:`Write` instructions it returns, each with its own I/O (a direct call, a worker
thread, the server's store writer). The rules therefore live here once:

1. **Open**: the question is stored before the model is called — unless it repeats the
   session's last question while that one has no complete answer yet (a retry, a
   fallback, a user re-sending after an error): then the stored one is reused
   (:meth:`TurnLifecycle.open`).
2. **Stream**: while the reply arrives, a snapshot of it is flushed at most once per
   ``flush_interval`` (status ``interrupted``, so a crash leaves it marked as cut short),
   never per token (:meth:`TurnLifecycle.streamed`).
3. **End**: at the end of the stream the reply is stored ``complete`` before the caller
   is told it is done (:meth:`TurnLifecycle.finish`); on an error it is stored with status
   ``error`` before the error reaches the caller; on a cancellation (Ctrl-C, a client
   gone, a consumer closing the generator) with status ``interrupted``, without waiting
   (:meth:`TurnLifecycle.stopped`). A reply that received nothing is not stored.

A stateless turn (no session) runs the same life cycle with ``session_id=None``: it
measures and records the reply, and asks for no writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage, HumanMessage

from ollang.memory.base import ChatStore
from ollang.turns.context import ContextBudget
from ollang.turns.history import retried_question
from ollang.turns.recorder import Status, TurnRecorder, TurnResult

__all__ = ["Opening", "TurnLifecycle", "Write"]


@dataclass(frozen=True)
class Write:
    """An instruction: store ``messages`` in ``session_id`` now.

    Attributes:
        session_id: The session.
        messages: What to store (a reply is stored under the same id each time, so a
            later write replaces an earlier snapshot).
        wait: Whether the driver must see the write done before it goes on (the
            question before the model is called, the final reply before "done", an
            error's partial before the error is raised). ``False`` while a cancellation
            unwinds: a further ``await`` could itself be cancelled and lose the reply, so
            the write is made without waiting for it (synchronously, or handed to a
            writer thread).
    """

    session_id: str
    messages: list[BaseMessage]
    wait: bool = True
    #: A snapshot of a reply still streaming (:meth:`ChatStore.add_snapshot`).
    snapshot: bool = False

    def run(self, store: ChatStore) -> None:
        """Carry the write out on ``store`` (synchronously: the driver picks the thread)."""
        if self.snapshot:
            store.add_snapshot(self.session_id, self.messages[0])
        else:
            store.add_messages(self.session_id, self.messages)


@dataclass(frozen=True)
class Opening:
    """How a turn opens: the question it answers, and whether it must be stored."""

    question: HumanMessage
    write: Write | None


@dataclass
class TurnLifecycle:
    """One turn's store decisions (see the module docstring); the driver does the I/O.

    Args:
        session_id: The session, or ``None`` for a stateless turn (nothing stored).
        model_name: The model, recorded with the reply.
        flush_interval: Seconds between snapshots of a streaming reply.
    """

    session_id: str | None
    model_name: str | None = None
    flush_interval: float = 1.0
    recorder: TurnRecorder | None = field(default=None, init=False)

    # -- 1. open ----------------------------------------------------------------
    def open(self, human: HumanMessage, recent: Sequence[BaseMessage] = ()) -> Opening:
        """The question of this turn, given the session's newest messages ``recent``.

        Returns the stored question when ``human`` retries it (and no write), else
        ``human`` and the write that stores it.
        """
        if self.session_id is None:
            return Opening(human, None)
        stored = retried_question(recent, human)
        if stored is not None:
            return Opening(stored, None)
        return Opening(human, Write(self.session_id, [human]))

    def begin(self, budget: ContextBudget | None) -> TurnRecorder:
        """Start the reply (the prompt is sized): its recorder, which the driver feeds."""
        self.recorder = TurnRecorder(
            session_id=self.session_id or "",
            model_name=self.model_name,
            context=budget,
            flush_interval=self.flush_interval,
        )
        return self.recorder

    # -- 2. stream ----------------------------------------------------------------
    def streamed(self) -> Write | None:
        """Call after each chunk the recorder observed: a snapshot when one is due."""
        recorder = self._recorder()
        if self.session_id is None or not recorder.flush_due():
            return None
        return Write(self.session_id, [recorder.message("interrupted")], snapshot=True)

    # -- 3. end -------------------------------------------------------------------
    def stopped(self, err: BaseException) -> Write | None:
        """The turn ended by ``err`` (an error, or a cancellation): what to keep."""
        recorder = self.recorder
        if self.session_id is None or recorder is None or not recorder.received_anything:
            return None
        failed = isinstance(err, Exception)
        status: Status = "error" if failed else "interrupted"
        return Write(self.session_id, [recorder.message(status)], wait=failed)

    def finish(self) -> tuple[Write | None, TurnResult]:
        """The stream ended: the complete reply to store, and the turn's result."""
        result = self._recorder().finish("complete")
        if self.session_id is None:
            return None, result
        return Write(self.session_id, [result.message]), result

    def _recorder(self) -> TurnRecorder:
        if self.recorder is None:
            raise RuntimeError("TurnLifecycle.begin() was not called")
        return self.recorder
