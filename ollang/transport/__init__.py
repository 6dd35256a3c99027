"""The way to the model hosts: clients, the wire format, model management, and error
translation, for each kind of host.

* :mod:`~ollang.transport.client` — the client family over one configuration
  (:class:`BaseOllamaClient`): the sync :class:`OllamaClient` on the official ``ollama``
  client (probes, model management), the async one being :mod:`~ollang.transport.wire`'s;
* :mod:`~ollang.transport.wire` — the async client, the server's hot path: a lean
  keep-alive HTTP/1.1 client that streams ``/api/chat`` NDJSON in batches;
* :mod:`~ollang.transport.translate` — Ollama's JSON <-> LangChain messages, both ways;
* :mod:`~ollang.transport.chat_model` — ``ChatOllama``/``OllamaLLM`` subclasses on the same
  client settings, for LangChain apps and the CLI;
* :mod:`~ollang.transport.manage` — list, pull, show, rm, ps, stop through the client;
* :mod:`~ollang.transport.errors` — the one place raw transport errors become ollang's.

OpenAI-compatible engines (the ``openai`` kind of host), the same pieces for their API:

* :mod:`~ollang.transport.openai_wire` — the async client on the hot path's pool (SSE),
  answering in Ollama's stream lines; :mod:`~ollang.transport.openai_client` — the sync
  model list for the CLI's checks;
* :mod:`~ollang.transport.openai_translate` — Ollama's JSON <-> the engine's, both ways;
* :mod:`~ollang.transport.openai_chat_model` — ``ChatOpenAI`` with ollang's errors, for
  the CLI and LangChain apps.

Imports only the leaves and :mod:`ollang.memory`'s message conventions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollang._lazy import lazy_exports

_WHERE = {
    "LIMITS": "ollang.transport.client",
    "AsyncOllamaClient": "ollang.transport.client",
    "BaseOllamaClient": "ollang.transport.client",
    "OllamaClient": "ollang.transport.client",
    "from_ollama": "ollang.transport.translate",
    "to_ollama": "ollang.transport.translate",
    "client_timeout": "ollang.transport.client",
    "ollama_client": "ollang.transport.client",
    "OllamaWire": "ollang.transport.wire",
    "OllangChatOllama": "ollang.transport.chat_model",
    "make_chat_model": "ollang.transport.chat_model",
    "make_llm": "ollang.transport.chat_model",
    "wire_messages": "ollang.transport.wire",
    "ModelDetails": "ollang.transport.manage",
    "ModelManager": "ollang.transport.manage",
    "PullProgress": "ollang.transport.manage",
    "LoadedModel": "ollang.transport.manage",
    "normalise_model": "ollang.transport.manage",
    "translate_error": "ollang.transport.errors",
    "translating": "ollang.transport.errors",
}
__all__ = [
    "LIMITS",
    "AsyncOllamaClient",
    "BaseOllamaClient",
    "LoadedModel",
    "ModelDetails",
    "ModelManager",
    "OllamaClient",
    "OllamaWire",
    "OllangChatOllama",
    "PullProgress",
    "client_timeout",
    "from_ollama",
    "make_chat_model",
    "make_llm",
    "normalise_model",
    "ollama_client",
    "to_ollama",
    "translate_error",
    "translating",
    "wire_messages",
]

if TYPE_CHECKING:
    from ollang.transport.chat_model import OllangChatOllama, make_chat_model, make_llm
    from ollang.transport.client import (
        LIMITS,
        BaseOllamaClient,
        OllamaClient,
        client_timeout,
        ollama_client,
    )
    from ollang.transport.errors import translate_error, translating
    from ollang.transport.manage import (
        LoadedModel,
        ModelDetails,
        ModelManager,
        PullProgress,
        normalise_model,
    )
    from ollang.transport.translate import from_ollama, to_ollama
    from ollang.transport.wire import OllamaWire, wire_messages
    from ollang.transport.wire import OllamaWire as AsyncOllamaClient

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
