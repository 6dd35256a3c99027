"""A turn's history, read from the store: the question it answers, and what fits around it.

Shared by :class:`~ollang.chains.chat.ChatChain` (the library) and the server's turn
engine, so both store questions and fit context by the same rules:

* **The question.** A turn repeating the session's last question while that question
  has no complete answer (only failed attempts, or none) continues that turn: the
  stored question is reused, not stored again (retries, fallbacks, a user re-sending
  after an error).
* **The history.** Read newest first, a page at a time, never the whole session; what
  precedes the question, without empty replies and without failed attempts that a
  later reply to the same question superseded; then trimmed to the window
  (:func:`~ollang.turns.context.fit_history`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from ollang.memory import ChatStore, message_status
from ollang.turns.context import ContextBudget, estimate_tokens, fit_history

__all__ = ["PreparedTurn", "history_before", "prepare_turn", "retried_question"]

# The first page is sized for the window at ~64 tokens a message (16 to 256
# messages); while everything read still fits, the next page is sized from the
# tokens per message actually seen. Decoding messages is most of what a long
# history adds to a turn, so reading about what fits matters.
_TOKENS_PER_MESSAGE_GUESS = 64
_FIRST_PAGE_MIN, _FIRST_PAGE_MAX = 16, 256
# How far back a repeated question is looked for: it and its failed attempts.
RETRY_LOOKBACK = 6


@dataclass
class PreparedTurn:
    """What is sent for one turn, and how it was sized.

    Attributes:
        messages: System prompt, kept history, context, question: the model's input.
        budget: How the window was used.
        history: The kept history alone (oldest first).
    """

    messages: list[BaseMessage]
    budget: ContextBudget
    history: list[BaseMessage]


def answered(message: BaseMessage) -> bool:
    """Whether an AI message answers its question (complete, or stopped by the user)."""
    try:
        return message_status(message) != "error"
    except ValueError:
        return True


def retried_question(recent: Sequence[BaseMessage], human: HumanMessage) -> HumanMessage | None:
    """The stored question ``human`` repeats, if the session's last question is the same
    and has no complete answer since; ``recent`` is the session's newest messages."""
    for message in reversed(recent):
        if message.type != "human":
            if message.type == "ai" and answered(message):
                return None  # the last question has an answer: a new turn
            continue
        if isinstance(message, HumanMessage) and message.content == human.content:
            return message
        return None
    return None


def history_before(page: Sequence[BaseMessage], human: HumanMessage) -> list[BaseMessage]:
    """What to send as history: the messages before the turn's question, without empty
    replies and without failed attempts superseded by a later reply."""
    cut = next((i for i, m in enumerate(page) if m.id == human.id), len(page))
    kept: list[BaseMessage] = []
    for message in page[:cut]:
        if _is_empty_reply(message):
            continue
        if kept and kept[-1].type == "ai" and message.type == "ai" and not answered(kept[-1]):
            kept[-1] = message  # a failed attempt, then the answer: send the answer
            continue
        kept.append(message)
    return kept


def prepare_turn(
    store: ChatStore,
    session_id: str,
    human: HumanMessage,
    *,
    system: str | None,
    context: Sequence[BaseMessage] = (),
    window: int,
    reserve: int,
) -> PreparedTurn:
    """Read the history window of ``session_id`` (``human`` already stored) and fit it.

    Raises:
        ContextWindowError: the system prompt, context and question alone do not fit.
    """
    system_msgs: list[BaseMessage] = [SystemMessage(system)] if system else []
    fixed = [*system_msgs, *context, human]
    fixed_tokens = estimate_tokens(fixed)
    available = window - reserve
    room = available - fixed_tokens
    limit = min(max(room // _TOKENS_PER_MESSAGE_GUESS, _FIRST_PAGE_MIN), _FIRST_PAGE_MAX)
    while True:
        page = store.get_messages(session_id, limit=limit + 1)
        history = history_before(page, human)
        history_tokens = estimate_tokens(history)
        if len(page) <= limit or history_tokens + fixed_tokens > available:
            break
        # All of it fits: read what the window holds at this page's tokens per
        # message, with a margin (and at least twice as much, so tiny messages
        # still take few rounds).
        per_message = max(history_tokens, 1) / max(len(history), 1)
        limit = max(limit * 2, math.ceil(room / per_message * 1.25))
    kept, budget = fit_history(history, window=window, reserve=reserve, fixed=fixed)
    return PreparedTurn([*system_msgs, *kept, *context, human], budget, kept)


def _is_empty_reply(message: BaseMessage) -> bool:
    return message.type == "ai" and not message.content and not getattr(message, "tool_calls", None)
