"""ollang's chains: Ollama models composed with prompts and durable memory.

Public API (imported lazily, so ``import chains.errors`` stays cheap for the CLI)::

    from chains import make_chat_model, build_chat_chain
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
    "DEFAULT_SESSION_ID": "chains.chat",
    "ChatChain": "chains.chat",
    "build_chat_chain": "chains.chat",
    "ChatEvent": "chains.turn",
    "Timings": "chains.turn",
    "TurnResult": "chains.turn",
    "Usage": "chains.turn",
    "ContextBudget": "chains.context",
    "build_generate_chain": "chains.generate",
    "FakeChatModel": "chains.fake",
    "FakeReply": "chains.fake",
    "make_chat_model": "chains.models",
    "make_llm": "chains.models",
    "Settings": "chains.settings",
    **{
        name: "chains.errors"
        for name in (
            "ContextWindowError",
            "InvalidInputError",
            "ModelNotFoundError",
            "OllamaResponseError",
            "OllamaTimeoutError",
            "OllamaUnavailableError",
            "OllangError",
            "StoreError",
        )
    },
}

if TYPE_CHECKING:
    from chains.chat import DEFAULT_SESSION_ID, ChatChain, build_chat_chain
    from chains.context import ContextBudget
    from chains.errors import (
        ContextWindowError,
        InvalidInputError,
        ModelNotFoundError,
        OllamaResponseError,
        OllamaTimeoutError,
        OllamaUnavailableError,
        OllangError,
        StoreError,
    )
    from chains.fake import FakeChatModel, FakeReply
    from chains.generate import build_generate_chain
    from chains.models import make_chat_model, make_llm
    from chains.settings import Settings
    from chains.turn import ChatEvent, Timings, TurnResult, Usage


def __getattr__(name: str) -> Any:
    # Lazy re-exports (PEP 562): LangChain is imported only when a chain is used.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'chains' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
