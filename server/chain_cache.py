"""Chat chains kept between requests, per model and options (building one is not free)."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

from ollang.chains.chat import ChatChain, build_chat_chain
from ollang.memory import ChatStore

__all__ = ["ChainCache", "ModelFactory"]

#: Makes the chat model for a model name and its options.
ModelFactory = Callable[[str, Mapping[str, Any]], BaseChatModel]


class ChainCache:
    """A small LRU of chat chains over one store; their models keep their HTTP clients.

    Args:
        make_model: Builds the chat model for ``(model, options)``.
        store: The session store every chain reads and writes.
        size: How many chains to keep.
    """

    def __init__(self, make_model: ModelFactory, store: ChatStore, size: int = 32) -> None:
        self._make_model = make_model
        self.store = store
        self.size = size
        self._chains: OrderedDict[tuple[str, str], ChatChain] = OrderedDict()

    def get(self, model: str, options: Mapping[str, Any]) -> ChatChain:
        """The chat chain for ``model`` with ``options`` (built on first use)."""
        key = (model, json.dumps(options, sort_keys=True, default=str))
        chain = self._chains.get(key)
        if chain is not None:
            self._chains.move_to_end(key)
            return chain
        chain = build_chat_chain(self._make_model(model, options), store=self.store)
        self._chains[key] = chain
        while len(self._chains) > self.size:
            self._chains.popitem(last=False)
        return chain

    def model(self, model: str, options: Mapping[str, Any]) -> BaseChatModel:
        """The chat model alone (for stateless generation)."""
        return self.get(model, options).chat_model
