"""ollang's chains: Ollama models composed with prompts and durable memory.

Public API (imported lazily, so ``import ollang.chains.errors`` stays cheap for the CLI)::

    from ollang.chains import make_chat_model, build_chat_chain
    chain = build_chat_chain(make_chat_model("llama3"), system="Be brief.")
    chain.invoke("Hello", config={"configurable": {"session_id": "s1"}})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "ChatEvent": "ollang.chains.turn",
    "Timings": "ollang.chains.turn",
    "TurnResult": "ollang.chains.turn",
    "Usage": "ollang.chains.turn",
    "ContextBudget": "ollang.chains.context",
    "build_generate_chain": "ollang.chains.generate",
    "FakeChatModel": "ollang.chains.fake",
    "FakeReply": "ollang.chains.fake",
    "make_chat_model": "ollang.chains.models",
    "make_llm": "ollang.chains.models",
    "Settings": "ollang.settings",
    **{
        name: "ollang.chains.errors"
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
    from ollang.chains.context import ContextBudget
    from ollang.chains.errors import (
        ContextWindowError,
        ModelNotFoundError,
        OllamaResponseError,
        OllamaTimeoutError,
        OllamaUnavailableError,
    )
    from ollang.chains.fake import FakeChatModel, FakeReply
    from ollang.chains.generate import build_generate_chain
    from ollang.chains.models import make_chat_model, make_llm
    from ollang.chains.turn import ChatEvent, Timings, TurnResult, Usage
    from ollang.errors import InvalidInputError, OllangError
    from ollang.memory.errors import StoreError
    from ollang.settings import Settings


def __getattr__(name: str) -> Any:
    # Lazy re-exports (PEP 562): LangChain is imported only when a chain is used.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ollang.chains' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
