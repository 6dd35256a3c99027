"""The chat chain: prompt, model and text output, with durable message history.

:func:`build_chat_chain` returns a :class:`ChatChain`, a LangChain ``Runnable``
that takes ``{"input": "..."}`` (or a plain string) and returns the reply text.
``invoke``, ``stream``, ``astream``, ``batch`` and ``abatch`` work as for any
runnable, so it embeds in larger LangChain apps. The session comes from
``config={"configurable": {"session_id": "..."}}``.

Why not ``RunnableWithMessageHistory``: it is deprecated (removal in
langchain-core 2.0), re-reads the whole history every turn, and stores the
reply only once it is complete, so a crash or Ctrl-C loses it. Here the turn's
life cycle is explicit, because the data-loss rule needs it:

1. the user's message is stored before the model is called;
2. the reply is flushed to the store at least once a second as it streams;
3. on the end of the stream it is finalised; on an error, a cancellation, a
   Ctrl-C or a consumer closing the generator, what arrived is kept with status
   ``error`` or ``interrupted``.

Only the window of history that can fit the model's context is read from the
store, so a turn costs the same at 10 and at 10,000 stored messages.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import closing
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, BaseMessageChunk, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)

from ollang.chains.context import (
    DEFAULT_CONTEXT_WINDOW,
    MAX_AUTO_CONTEXT,
    ContextBudget,
    declared_context_window,
    estimate_tokens,
    fit_history,
    reply_reserve,
)
from ollang.chains.iterators import aclosing_iter, closing_iter
from ollang.chains.turn import ChatEvent, Status, TurnRecorder, TurnResult
from ollang.errors import InvalidInputError
from ollang.memory import ChatStore, InMemoryChatStore

__all__ = ["DEFAULT_SESSION_ID", "ChatChain", "build_chat_chain"]

log = logging.getLogger("ollang")

DEFAULT_SESSION_ID = "default"
# History is read newest first, a page at a time, never the whole session. The
# first page is sized for the window at ~64 tokens a message (16 to 256
# messages); while everything read still fits, the next page is sized from the
# tokens per message actually seen. Decoding messages is most of what a long
# history adds to a turn, so reading about what fits matters.
_TOKENS_PER_MESSAGE_GUESS = 64
_FIRST_PAGE_MIN, _FIRST_PAGE_MAX = 16, 256


def _input_text(value: Any) -> tuple[str, str | None]:
    """The user's text (and an optional per-call system prompt) from a chain input."""
    system = None
    if isinstance(value, dict):
        system = value.get("system")
        value = value.get("input", value.get("message"))
    elif isinstance(value, HumanMessage):
        value = value.text
    if not isinstance(value, str):
        raise InvalidInputError(
            "chat input must be a string or {'input': str}",
            f"got {type(value).__name__}",
        )
    if not value.strip():
        raise InvalidInputError("the message is empty", "type something to send")
    if system is not None and not isinstance(system, str):
        raise InvalidInputError("'system' must be a string")
    return value, system


def _model_name(model: Any) -> str | None:
    for attr in ("model", "model_name", "model_path"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class ChatChain(Runnable[Any, str]):
    """A conversational runnable: history from a store, fitted to the context window.

    Build it with :func:`build_chat_chain`. Besides the usual runnable methods it
    offers :meth:`stream_turn` / :meth:`astream_turn`, which yield
    :class:`~chains.turn.ChatEvent` items (tokens, reasoning, and a final event
    carrying usage and timings), and :meth:`invoke_turn` / :meth:`ainvoke_turn`.
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        store: ChatStore | None = None,
        system: str | None = None,
        context_window: int | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self.model = model
        self.store: ChatStore = store if store is not None else InMemoryChatStore()
        self.system = system
        self.context_window = context_window
        self.flush_interval = flush_interval
        self.prompt = ChatPromptTemplate.from_messages(
            [
                MessagesPlaceholder("system", optional=True),
                MessagesPlaceholder("history"),
                ("human", "{input}"),
            ]
        )
        self._sized_models: dict[int, BaseChatModel] = {}

    # -- the pipeline ----------------------------------------------------------
    # prompt -> model -> text, run step by step rather than as `prompt | model |
    # StrOutputParser()`: when a consumer stops early, LangChain's streaming
    # transform drains the upstream iterator to trace its input, so a parser
    # piped after the model would read the whole answer from Ollama after the
    # user pressed Stop. Here closing the stream closes the model's stream, and
    # the HTTP request with it. The "parser" is `chunk.text`, which is exactly
    # what StrOutputParser returns for a message chunk.
    def model_for(self, num_ctx: int | None) -> BaseChatModel:
        """The chat model, sized to ``num_ctx`` when ollang chooses the context size."""
        if num_ctx is None:
            return self.model
        if num_ctx not in self._sized_models:
            self._sized_models[num_ctx] = self.model.model_copy(update={"num_ctx": num_ctx})
        return self._sized_models[num_ctx]

    def _sends_num_ctx(self) -> bool:
        # Ollama truncates to its *runtime* num_ctx (2048-4096 by default), not the
        # model's trained length; when the user set none, we send the window we
        # trimmed to, so what fits here also fits there (ollama/ollama#3839, #8099).
        return (
            hasattr(self.model, "get_context_length") and getattr(self.model, "num_ctx", 1) is None
        )

    def _window_from(self, reported: int | None) -> int:
        if self.context_window:
            return self.context_window
        declared = declared_context_window(self.model)
        if declared:
            return declared
        if reported:
            return min(reported, MAX_AUTO_CONTEXT)
        return DEFAULT_CONTEXT_WINDOW

    def _needs_lookup(self) -> bool:
        return (
            not self.context_window
            and declared_context_window(self.model) is None
            and hasattr(self.model, "get_context_length")
        )

    def context_window_for_model(self) -> int:
        """The context size used for trimming (may ask the server once, then cached)."""
        reported = self.model.get_context_length() if self._needs_lookup() else None  # type: ignore[attr-defined]
        return self._window_from(reported)

    async def acontext_window_for_model(self) -> int:
        """Async :meth:`context_window_for_model`."""
        reported = await self.model.aget_context_length() if self._needs_lookup() else None  # type: ignore[attr-defined]
        return self._window_from(reported)

    # -- turn set-up -----------------------------------------------------------
    @staticmethod
    def session_of(config: RunnableConfig) -> str:
        """The session id from ``config["configurable"]["session_id"]`` (or the default)."""
        session_id = config.get("configurable", {}).get("session_id") or DEFAULT_SESSION_ID
        if not isinstance(session_id, str):
            raise InvalidInputError("session_id must be a string")
        return session_id

    def _prepare(
        self, text: str, system: str | None, session_id: str, human: HumanMessage, window: int
    ) -> tuple[dict[str, Any], ContextBudget]:
        """Read the history window (never the whole session) and size the prompt."""
        system_text = system if system is not None else self.system
        system_msgs: list[BaseMessage] = [SystemMessage(system_text)] if system_text else []
        reserve = reply_reserve(self.model, window)
        fixed = [*system_msgs, HumanMessage(text)]
        fixed_tokens = estimate_tokens(fixed)
        available = window - reserve
        room = available - fixed_tokens
        limit = min(max(room // _TOKENS_PER_MESSAGE_GUESS, _FIRST_PAGE_MIN), _FIRST_PAGE_MAX)
        while True:
            page = self.store.get_messages(session_id, limit=limit + 1)
            history = [m for m in page if m.id != human.id and not _is_empty_reply(m)]
            history_tokens = estimate_tokens(history)
            if len(page) <= limit or history_tokens + fixed_tokens > available:
                break
            # All of it fits: read what the window holds at this page's tokens per
            # message, with a margin (and at least twice as much, so tiny messages
            # still take few rounds).
            per_message = max(history_tokens, 1) / max(len(history), 1)
            limit = max(limit * 2, math.ceil(room / per_message * 1.25))
        kept, budget = fit_history(history, window=window, reserve=reserve, fixed=fixed)
        return {"system": system_msgs, "history": kept, "input": text}, budget

    def _begin(
        self, input: Any, config: RunnableConfig
    ) -> tuple[str, str | None, HumanMessage, str]:
        text, system = _input_text(input)
        session_id = self.session_of(config)
        human = HumanMessage(text)
        return text, system, human, session_id

    def _recorder(self, session_id: str, budget: ContextBudget) -> TurnRecorder:
        return TurnRecorder(
            session_id=session_id,
            model_name=_model_name(self.model),
            context=budget,
            flush_interval=self.flush_interval,
        )

    @staticmethod
    def _pieces(recorder: TurnRecorder, chunk: BaseMessageChunk) -> Iterator[ChatEvent]:
        text = recorder.observe(chunk)
        for thought in recorder.drain_reasoning():
            yield ChatEvent("reasoning", thought)
        if text:
            yield ChatEvent("token", text)

    def _log_result(self, result: TurnResult) -> None:
        if result.truncated:
            log.warning(
                "the model server reports a %s-token prompt, the whole %s-token context: "
                "it probably truncated the conversation",
                result.usage.input_tokens,
                result.context.window if result.context else "?",
            )

    # -- streaming turns -------------------------------------------------------
    def stream_turn(
        self, input: Any, config: RunnableConfig | None = None
    ) -> Generator[ChatEvent, None, None]:
        """Run one turn, yielding reasoning and token events, then a ``done`` event.

        Raises:
            InvalidInputError: empty input (nothing is stored or sent).
            OllangError: translated model-server errors; what arrived is stored first.
        """
        config = ensure_config(config)
        text, system, human, session_id = self._begin(input, config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None,
            {"input": text},
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        recorder: TurnRecorder | None = None
        try:
            self.store.add_messages(session_id, [human])  # stored before the model is called
            window = self.context_window_for_model()
            prompt_input, budget = self._prepare(text, system, session_id, human, window)
            recorder = self._recorder(session_id, budget)
            model = self.model_for(window if self._sends_num_ctx() else None)
            child = patch_config(config, callbacks=run_manager.get_child())
            messages = self.prompt.invoke(prompt_input, child)
            # Closing the model's stream closes the HTTP request when the consumer stops.
            with closing_iter(model.stream(messages, child)) as chunks:
                for chunk in chunks:
                    yield from self._pieces(recorder, chunk)
                    if recorder.flush_due():
                        self.store.add_messages(session_id, [recorder.message("interrupted")])
        except BaseException as err:  # GeneratorExit, KeyboardInterrupt, errors: keep what arrived
            status: Status = "error" if isinstance(err, Exception) else "interrupted"
            if recorder is not None and recorder.received_anything:
                self.store.add_messages(session_id, [recorder.message(status)])
            run_manager.on_chain_error(err)
            raise
        result = recorder.finish("complete")
        self.store.add_messages(session_id, [result.message])
        self._log_result(result)
        run_manager.on_chain_end(result.text)
        yield ChatEvent("done", result=result)

    async def astream_turn(
        self, input: Any, config: RunnableConfig | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Async :meth:`stream_turn`; store I/O runs in a worker thread, off the event loop."""
        config = ensure_config(config)
        text, system, human, session_id = self._begin(input, config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None,
            {"input": text},
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        recorder: TurnRecorder | None = None
        try:
            await asyncio.to_thread(self.store.add_messages, session_id, [human])
            window = await self.acontext_window_for_model()
            prompt_input, budget = await asyncio.to_thread(
                self._prepare, text, system, session_id, human, window
            )
            recorder = self._recorder(session_id, budget)
            model = self.model_for(window if self._sends_num_ctx() else None)
            child = patch_config(config, callbacks=run_manager.get_child())
            messages = await self.prompt.ainvoke(prompt_input, child)
            async with aclosing_iter(model.astream(messages, child)) as chunks:
                async for chunk in chunks:
                    for event in self._pieces(recorder, chunk):
                        yield event
                    if recorder.flush_due():
                        snapshot = recorder.message("interrupted")
                        await asyncio.to_thread(self.store.add_messages, session_id, [snapshot])
        except BaseException as err:  # CancelledError, GeneratorExit, errors: keep what arrived
            status: Status = "error" if isinstance(err, Exception) else "interrupted"
            if recorder is not None and recorder.received_anything:
                # Written synchronously: this path may run during cancellation, when a
                # further await could itself be cancelled and the partial reply lost.
                self.store.add_messages(session_id, [recorder.message(status)])
            await run_manager.on_chain_error(err)
            raise
        result = recorder.finish("complete")
        await asyncio.to_thread(self.store.add_messages, session_id, [result.message])
        self._log_result(result)
        await run_manager.on_chain_end(result.text)
        yield ChatEvent("done", result=result)

    def invoke_turn(self, input: Any, config: RunnableConfig | None = None) -> TurnResult:
        """Run one turn to the end and return its :class:`TurnResult`."""
        result: TurnResult | None = None
        for event in self.stream_turn(input, config):
            if event.type == "done":
                result = event.result
        assert result is not None  # stream_turn always ends with "done" or raises
        return result

    async def ainvoke_turn(self, input: Any, config: RunnableConfig | None = None) -> TurnResult:
        """Async :meth:`invoke_turn`."""
        result: TurnResult | None = None
        async for event in self.astream_turn(input, config):
            if event.type == "done":
                result = event.result
        assert result is not None
        return result

    # -- the Runnable interface ---------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        """Run one turn and return the reply text."""
        return self.invoke_turn(input, config).text

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        """Async :meth:`invoke`."""
        return (await self.ainvoke_turn(input, config)).text

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[str]:
        """Yield the reply text in pieces as the model produces them."""
        with closing(self.stream_turn(input, config)) as events:
            for event in events:
                if event.type == "token":
                    yield event.text

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        async with aclosing_iter(self.astream_turn(input, config)) as events:
            async for event in events:
                if event.type == "token":
                    yield event.text

    @property
    def InputType(self) -> Any:
        """Input: a string or ``{"input": str, "system"?: str}``."""
        return str | dict

    @property
    def OutputType(self) -> type[str]:
        """Output: the reply text."""
        return str


def _is_empty_reply(message: BaseMessage) -> bool:
    return message.type == "ai" and not message.content and not getattr(message, "tool_calls", None)


def build_chat_chain(
    model: BaseChatModel,
    *,
    store: ChatStore | None = None,
    system: str | None = None,
    context_window: int | None = None,
) -> ChatChain:
    """A conversational runnable over ``model`` with history from ``store``.

    Args:
        model: Any LangChain chat model: :func:`~chains.make_chat_model`'s
            ``ChatOllama``, langchain-core's fake chat models, a llama.cpp model.
        store: Where the conversation lives (default: a fresh in-memory store;
            :func:`memory.open_store` gives the SQLite default).
        system: System prompt, always kept at the head of what is sent.
        context_window: Context size in tokens; default: the model's ``num_ctx``,
            else what Ollama's ``/api/show`` reports (at most 8192), else 4096.

    Example:
        >>> chain = build_chat_chain(make_chat_model("llama3"), system="Be brief.")
        >>> for piece in chain.stream("Hi!", config={"configurable": {"session_id": "s1"}}):
        ...     print(piece, end="")
    """
    return ChatChain(model, store=store, system=system, context_window=context_window)
