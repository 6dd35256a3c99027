"""A LangChain chat model whose every call raises ollang's errors: the engines' base.

ollang's chat models are thin subclasses of the engines' LangChain classes
(``ChatOllama``, ``ChatOpenAI``). Each must raise ollang's errors from ``invoke``,
``ainvoke``, ``stream`` and ``astream`` alike (:mod:`ollang.transport.errors`), so that
:class:`~ollang.routing.routed.RoutedChatModel` fails over on them and users read one
wording whatever the engine. :class:`TranslatedChatModel` is that wrapping, once: put
it before the engine's class among the bases, and give
:meth:`~TranslatedChatModel._translating` (in the class or a base before this one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

__all__ = ["TranslatedChatModel", "said_nothing"]


def said_nothing(chunk: ChatGenerationChunk) -> bool:
    """Whether a chunk carries nothing (an OpenAI engine's opening ``role`` delta)."""
    message = chunk.message
    return not (
        message.content
        or message.additional_kwargs
        or getattr(message, "tool_call_chunks", None)
        or getattr(message, "usage_metadata", None)
        or chunk.generation_info
    )


class TranslatedChatModel(BaseChatModel):
    """Runs the engine class's calls (the next base) under :meth:`_translating`.

    Attributes:
        drops_opening: Drop the chunks that carry nothing before the first that does, so
            the first chunk is the first token: until then a failing host can still fail
            over (an OpenAI engine opens every stream with an empty ``role`` delta).
    """

    drops_opening: ClassVar[bool] = False

    def _translating(self) -> AbstractContextManager[None]:
        """The context that turns this engine's errors into ollang's."""
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._translating():
            return super()._generate(  # type: ignore[safe-super]  # the engine class's
                messages, stop, run_manager, **kwargs
            )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._translating():
            return await super()._agenerate(messages, stop, run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        started = not self.drops_opening
        with self._translating():
            for chunk in super()._stream(messages, stop, run_manager, **kwargs):
                if started or not said_nothing(chunk):
                    started = True
                    yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        started = not self.drops_opening
        with self._translating():
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                if started or not said_nothing(chunk):
                    started = True
                    yield chunk
