"""A fake chat model for tests: canned replies, recorded prompts, scripted failures.

It is a real ``BaseChatModel``: plug it into :func:`~chains.build_chat_chain`
(or any LangChain code) exactly where a ``ChatOllama`` would go, and the chain,
memory and CLI code run unchanged.

Example:
    >>> model = FakeChatModel(replies=["Hello there!"])
    >>> chain = build_chat_chain(model)
    >>> chain.invoke("hi")
    'Hello there!'
    >>> model.prompts[-1][-1].content
    'hi'
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

__all__ = ["FakeChatModel", "FakeReply"]

_PIECES = re.compile(r"\s*\S+|\s+$")


def split_pieces(text: str) -> list[str]:
    """Split text into word pieces that keep their leading spaces ("a b" → ["a", " b"])."""
    return _PIECES.findall(text) or ([text] if text else [])


@dataclass
class FakeReply:
    """One scripted reply.

    Attributes:
        text: The answer.
        reasoning: Reasoning text streamed before the answer.
        fail_after: Raise ``error`` after this many answer pieces (``None``: don't).
        error: The exception to raise.
        delay: Seconds to sleep before each piece (to test cancellation and flushing).
    """

    text: str
    reasoning: str = ""
    fail_after: int | None = None
    error: BaseException = field(default_factory=lambda: RuntimeError("fake model failure"))
    delay: float = 0.0


class FakeChatModel(BaseChatModel):
    """A chat model that answers from a queue and records every prompt it receives.

    When the queue is empty it answers ``echo: <last message>``.
    """

    replies: list[FakeReply | str] = Field(default_factory=list)
    model: str = "fake"
    num_ctx: int | None = None

    _prompts: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "ollang-fake"

    @property
    def prompts(self) -> list[list[BaseMessage]]:
        """Every list of messages the model was called with, in order."""
        return self._prompts

    def queue(self, *replies: FakeReply | str) -> None:
        """Add replies to the end of the queue."""
        with self._lock:
            self.replies.extend(replies)

    def _next(self, messages: Sequence[BaseMessage]) -> FakeReply:
        with self._lock:
            self._prompts.append(list(messages))
            reply = self.replies.pop(0) if self.replies else None
        if reply is None:
            return FakeReply(f"echo: {messages[-1].text if messages else ''}")
        return FakeReply(reply) if isinstance(reply, str) else reply

    def _chunks(
        self, reply: FakeReply, messages: Sequence[BaseMessage]
    ) -> Iterator[AIMessageChunk]:
        for piece in split_pieces(reply.reasoning):
            yield AIMessageChunk(content="", additional_kwargs={"reasoning_content": piece})
        pieces = split_pieces(reply.text)
        for index, piece in enumerate(pieces):
            if reply.fail_after is not None and index >= reply.fail_after:
                raise reply.error
            yield AIMessageChunk(content=piece)
        if reply.fail_after is not None and reply.fail_after >= len(pieces):
            raise reply.error
        prompt_chars = sum(len(m.text) for m in messages)
        output = len(pieces) + len(split_pieces(reply.reasoning))
        yield AIMessageChunk(
            content="",
            response_metadata={"model_name": self.model, "done_reason": "stop"},
            usage_metadata={
                "input_tokens": max(1, prompt_chars // 4),
                "output_tokens": output,
                "total_tokens": max(1, prompt_chars // 4) + output,
            },
            chunk_position="last",
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._next(messages)
        for chunk in self._chunks(reply, messages):
            if reply.delay:
                time.sleep(reply.delay)
            if run_manager and chunk.content:
                run_manager.on_llm_new_token(chunk.text, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        import asyncio

        reply = self._next(messages)
        for chunk in self._chunks(reply, messages):
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if run_manager and chunk.content:
                await run_manager.on_llm_new_token(
                    chunk.text, chunk=ChatGenerationChunk(message=chunk)
                )
            yield ChatGenerationChunk(message=chunk)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
