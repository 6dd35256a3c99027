"""The embedded backend: GGUF models run in-process through llama.cpp, no Ollama needed.

* :mod:`~ollang.embedded.gguf` — finding GGUF files (SmolLM2 shipped in a wheel, Ollama's
  own model store) without loading them;
* :mod:`~ollang.embedded.model` — :class:`LlamaCppChatModel`, a LangChain chat model over
  ``llama-cpp-python`` (the ``embedded`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

_WHERE = {
    "EMBEDDED_DEFAULT_MODEL": "ollang.embedded.gguf",
    "EmbeddedModel": "ollang.embedded.gguf",
    "embedded_available": "ollang.embedded.gguf",
    "list_embedded_models": "ollang.embedded.gguf",
    "resolve_embedded_model": "ollang.embedded.gguf",
    "LlamaCppChatModel": "ollang.embedded.model",
    "make_embedded_chat_model": "ollang.embedded.model",
}
__all__ = [
    "EMBEDDED_DEFAULT_MODEL",
    "EmbeddedModel",
    "LlamaCppChatModel",
    "embedded_available",
    "list_embedded_models",
    "make_embedded_chat_model",
    "resolve_embedded_model",
]

if TYPE_CHECKING:
    from ollang.embedded.gguf import (
        EMBEDDED_DEFAULT_MODEL,
        EmbeddedModel,
        embedded_available,
        list_embedded_models,
        resolve_embedded_model,
    )
    from ollang.embedded.model import LlamaCppChatModel, make_embedded_chat_model

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
