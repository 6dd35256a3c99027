"""Copying every session from one store to another (``ollang sessions migrate``).

Built on the :class:`~memory.base.ChatStore` interface only, so it copies between any
two stores (SQLite to PostgreSQL, the other way, or between two PostgreSQL schemas).
What is copied: every session with its owner, title and model, and every message with
its id, status, creation time, reasoning and metadata. Messages are upserted by id, so
a second run copies nothing twice and adds only what is new since the first.

The interface cannot set a session's ``created``/``updated`` times; sessions are
copied least recently updated first, so the target lists them in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ollang.memory.base import ChatStore

__all__ = ["TransferReport", "copy_sessions"]

# Messages per add_messages call: each call is one transaction, so a huge session
# does not become one huge transaction.
_BATCH = 500


@dataclass
class TransferReport:
    """What :func:`copy_sessions` did.

    Attributes:
        sessions: Sessions copied (created or brought up to date in the target).
        messages: Messages read from the source and written to the target.
        new_messages: Of those, how many the target did not have yet.
        skipped: Ids of sessions left alone because the target has them under
            another owner (a session is never handed over).
    """

    sessions: int = 0
    messages: int = 0
    new_messages: int = 0
    skipped: list[str] = field(default_factory=list)


def copy_sessions(
    source: ChatStore,
    target: ChatStore,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> TransferReport:
    """Copy every session of ``source`` into ``target``; safe to run again.

    Args:
        source: The store to read (it is not changed).
        target: The store to write.
        on_progress: Called with the number of messages just copied (for a
            progress bar whose total is the sum of the sessions' message counts).

    Returns:
        What was copied.
    """
    report = TransferReport()
    for info in sorted(source.list_sessions(), key=lambda s: s.updated):
        before = target.get_session(info.id)
        theirs = before is not None and before.owner != info.owner
        if theirs or (before is None and not target.claim_session(info.id, info.owner)):
            report.skipped.append(info.id)
            if on_progress is not None:
                on_progress(info.message_count)
            continue
        messages = source.get_messages(info.id)
        for start in range(0, len(messages), _BATCH):
            batch = messages[start : start + _BATCH]
            target.add_messages(info.id, batch)
            if on_progress is not None:
                on_progress(len(batch))
        target.update_session(
            info.id,
            title=info.title,
            model=info.model,
            system=info.system,
            options=info.options,
        )
        after = target.get_session(info.id)
        report.sessions += 1
        report.messages += len(messages)
        if after is not None:
            report.new_messages += after.message_count - (before.message_count if before else 0)
    return report
