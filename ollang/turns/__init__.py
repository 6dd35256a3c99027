"""One chat turn, whoever runs it: the question, the window, the streamed reply, the end.

* :mod:`~ollang.turns.context` — fitting a conversation into the model's context window;
* :mod:`~ollang.turns.history` — the question a turn answers and the history around it;
* :mod:`~ollang.turns.recorder` — the reply as it streams (text, reasoning, usage, timings);
* :mod:`~ollang.turns.images`, :mod:`~ollang.turns.session_settings` — what a turn carries
  and the settings a session keeps.

The chat chain (:mod:`ollang.chains`) and the server's engine (:mod:`ollang.server.turns`)
both run their turns on these pieces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

_WHERE = {
    "ContextBudget": "ollang.turns.context",
    "fit_history": "ollang.turns.context",
    "ChatEvent": "ollang.turns.recorder",
    "Timings": "ollang.turns.recorder",
    "TurnRecorder": "ollang.turns.recorder",
    "TurnResult": "ollang.turns.recorder",
    "Usage": "ollang.turns.recorder",
    "prepare_turn": "ollang.turns.history",
    "retried_question": "ollang.turns.history",
    "SessionSettings": "ollang.turns.session_settings",
    "resolve_settings": "ollang.turns.session_settings",
}
__all__ = [
    "ChatEvent",
    "ContextBudget",
    "SessionSettings",
    "Timings",
    "TurnRecorder",
    "TurnResult",
    "Usage",
    "fit_history",
    "prepare_turn",
    "resolve_settings",
    "retried_question",
]

if TYPE_CHECKING:
    from ollang.turns.context import ContextBudget, fit_history
    from ollang.turns.history import prepare_turn, retried_question
    from ollang.turns.recorder import ChatEvent, Timings, TurnRecorder, TurnResult, Usage
    from ollang.turns.session_settings import SessionSettings, resolve_settings

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
