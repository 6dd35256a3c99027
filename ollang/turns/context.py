"""Fitting a conversation into the model's context window.

What is sent must fit: the system prompt is always kept, the newest turns are
kept, kept history starts on a human message, and room is left for the reply.
Token counts are approximate (langchain-core's ``count_tokens_approximately``),
so a safety margin is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately

from ollang.errors import ContextWindowError

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "MAX_AUTO_CONTEXT",
    "SAFETY_MARGIN",
    "ContextBudget",
    "declared_context_window",
    "estimate_tokens",
    "fit_history",
    "reply_reserve",
    "reserve_for",
]

#: Used when neither the caller, the model options nor the server tell us.
DEFAULT_CONTEXT_WINDOW = 4096
#: Upper bound on a window taken from ``/api/show``: ollang asks Ollama for a
#: context of this size (``num_ctx``), and a 128k KV cache would not fit most machines.
MAX_AUTO_CONTEXT = 8192
#: Fraction of the budget used, since token counts are estimates.
SAFETY_MARGIN = 0.9


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """Approximate token count of ``messages`` (about 4 characters a token)."""
    return count_tokens_approximately(messages) if messages else 0


def declared_context_window(model: Any) -> int | None:
    """The context size a model instance was configured with, if any.

    ``num_ctx`` for Ollama models, ``n_ctx`` for llama.cpp ones.
    """
    for attr in ("num_ctx", "n_ctx", "context_window"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def reply_reserve(model: BaseChatModel | Any, window: int) -> int:
    """Tokens kept free for the reply: ``num_predict``/``max_tokens`` if set, else a quarter."""
    for attr in ("num_predict", "max_tokens"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return reserve_for(value, window)
    return reserve_for(None, window)


def reserve_for(num_predict: int | None, window: int) -> int:
    """Tokens kept free for a reply of at most ``num_predict`` tokens (``None``: not set)."""
    if isinstance(num_predict, int) and num_predict > 0:
        return min(num_predict, window // 2)
    return min(window // 4, 1024)


@dataclass(frozen=True)
class ContextBudget:
    """How the prompt of one turn was sized.

    Attributes:
        window: The model's context size in tokens.
        reserve: Tokens left free for the reply.
        prompt_tokens: Estimated tokens of what is sent (system + history + input).
        history_sent: Number of history messages sent.
        history_dropped: Number of messages read from the store but left out.
    """

    window: int
    reserve: int
    prompt_tokens: int
    history_sent: int
    history_dropped: int


def fit_history(
    history: Sequence[BaseMessage],
    *,
    window: int,
    reserve: int,
    fixed: Sequence[BaseMessage],
) -> tuple[list[BaseMessage], ContextBudget]:
    """Keep the newest part of ``history`` that fits beside ``fixed`` messages.

    Args:
        history: Earlier messages of the session, oldest first.
        window: Context size in tokens.
        reserve: Tokens to leave for the reply.
        fixed: Messages always sent (system prompt and the new human message).

    Returns:
        The kept history (starting on a human message) and the budget used.

    Raises:
        ContextWindowError: if the fixed messages alone do not fit.
    """
    fixed_tokens = estimate_tokens(fixed)
    available = window - reserve
    if fixed_tokens > available:
        raise ContextWindowError(
            f"the message is too long for the model's context: about {fixed_tokens} tokens, "
            f"{available} available ({window} in the window, {reserve} kept for the reply)",
            "shorten it, or use a larger context with -o num_ctx=N",
        )
    budget = int(available * SAFETY_MARGIN) - fixed_tokens
    kept: list[BaseMessage] = []
    if budget > 0 and history:
        kept = trim_messages(
            list(history),
            max_tokens=budget,
            token_counter=count_tokens_approximately,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )
    return kept, ContextBudget(
        window=window,
        reserve=reserve,
        prompt_tokens=fixed_tokens + estimate_tokens(kept),
        history_sent=len(kept),
        history_dropped=len(history) - len(kept),
    )
