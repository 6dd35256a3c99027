"""ollang's chains: LangChain runnables — chat models composed with prompts and durable memory.

The chat chain (:mod:`~ollang.chains.chat`), the one-shot generate chain, the fake chat
model for tests, and what they need of LangChain's wrappers; the models themselves come
from :mod:`ollang.transport` (``ChatOllama``) and :mod:`ollang.embedded` (llama.cpp),
re-exported here for convenience.

Public API (imported lazily, so ``import ollang.chains.structured`` stays cheap for the CLI)::

    from ollang.chains import make_chat_model, build_chat_chain
    chain = build_chat_chain(make_chat_model("llama3"), system="Be brief.")
    chain.invoke("Hello", config={"configurable": {"session_id": "s1"}})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

__all__ = [
    "DEFAULT_SESSION_ID",
    "ChatChain",
    "ChatEvent",
    "ContextBudget",
    "ContextWindowError",
    "FakeChatModel",
    "FakeReply",
    "InvalidInputError",
    "ModelNotFoundError",
    "OllamaResponseError",
    "OllamaTimeoutError",
    "OllamaUnavailableError",
    "OllangError",
    "Settings",
    "StoreError",
    "Timings",
    "TurnResult",
    "Usage",
    "build_chat_chain",
    "build_generate_chain",
    "make_chat_model",
    "make_llm",
]

_WHERE = {
    "DEFAULT_SESSION_ID": "ollang.chains.chat",
    "ChatChain": "ollang.chains.chat",
    "build_chat_chain": "ollang.chains.chat",
    "ChatEvent": "ollang.turns.recorder",
    "Timings": "ollang.turns.recorder",
    "TurnResult": "ollang.turns.recorder",
    "Usage": "ollang.turns.recorder",
    "ContextBudget": "ollang.turns.context",
    "build_generate_chain": "ollang.chains.generate",
    "FakeChatModel": "ollang.chains.fake",
    "FakeReply": "ollang.chains.fake",
    "make_chat_model": "ollang.transport.chat_model",
    "make_llm": "ollang.transport.chat_model",
    "Settings": "ollang.settings",
    **{
        name: "ollang.errors"
        for name in (
            "ContextWindowError",
            "ModelNotFoundError",
            "OllamaResponseError",
            "OllamaTimeoutError",
            "OllamaUnavailableError",
        )
    },
    "InvalidInputError": "ollang.errors",
    "OllangError": "ollang.errors",
    "StoreError": "ollang.memory.errors",
}

if TYPE_CHECKING:
    from ollang.chains.chat import DEFAULT_SESSION_ID, ChatChain, build_chat_chain
    from ollang.chains.fake import FakeChatModel, FakeReply
    from ollang.chains.generate import build_generate_chain
    from ollang.errors import (
        ContextWindowError,
        InvalidInputError,
        ModelNotFoundError,
        OllamaResponseError,
        OllamaTimeoutError,
        OllamaUnavailableError,
        OllangError,
    )
    from ollang.memory.errors import StoreError
    from ollang.settings import Settings
    from ollang.transport.chat_model import make_chat_model, make_llm
    from ollang.turns.context import ContextBudget
    from ollang.turns.recorder import ChatEvent, Timings, TurnResult, Usage


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
