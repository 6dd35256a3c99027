"""A chat model over every host that has a model: the CLI's and the library's failover.

:class:`RoutedChatModel` holds one chat model per host (``ChatOllama`` for an Ollama
host, the llama.cpp model for the embedded one), in routing order. Each call streams
from the first; before its first chunk, an error that :class:`~ollang.routing.failover.
Failover` says is the host's (down, cut, 5xx, model missing) moves the call to the next
host — the same rules, and the same error when none is left, as the server's turns.
After the first chunk an error is the answer's (the chain keeps the partial reply).

It is a LangChain chat model like any other, so the chat chain sizes the models inside
it (``num_ctx``) and reads their context windows (:mod:`ollang.chains.wrapped`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from ollang.iterators import afirst_success, first_success
from ollang.routing.failover import Failover

__all__ = ["RoutedChatModel"]


class RoutedChatModel(BaseChatModel):
    """One model name on several hosts, tried in order (see the module docstring).

    Attributes:
        model: The model's name, as the user gave it.
        hosts: The hosts' names, in routing order.
        models: The chat model on each host, in the same order.
    """

    model: str
    hosts: list[str]
    models: list[BaseChatModel]

    @property
    def _llm_type(self) -> str:
        return "ollang-routed"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "hosts": self.hosts}

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        failover: Failover[str] = Failover(self.model)

        def open_stream(attempt: int) -> Iterator[ChatGenerationChunk]:
            return self.models[attempt - 1]._stream(messages, stop, run_manager, **kwargs)

        def retry(err: Exception, attempt: int) -> bool:
            return self._next(failover, err, attempt)

        return first_success(open_stream, retry)

    def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        failover: Failover[str] = Failover(self.model)

        def open_stream(attempt: int) -> AsyncIterator[ChatGenerationChunk]:
            return self.models[attempt - 1]._astream(messages, stop, run_manager, **kwargs)

        async def retry(err: Exception, attempt: int) -> bool:
            return self._next(failover, err, attempt)

        return afirst_success(open_stream, retry)

    def _next(self, failover: Failover[str], err: Exception, attempt: int) -> bool:
        """Whether to try the next host after host ``attempt`` failed with ``err``; with
        none left, raises what :class:`Failover` says (the error itself if it was alone)."""
        if not failover.failed(self.hosts[attempt - 1], err):
            return False
        if attempt < len(self.models):
            return True
        final = failover.no_host_left(err)
        if final is None or final is err:
            return False
        raise final from err

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
