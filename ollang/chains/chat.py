"""The chat chain: prompt, model and text output, with durable message history.

:func:`build_chat_chain` returns a :class:`ChatChain`, a LangChain ``Runnable``
that takes the user's message — a string, ``{"input": ..., "system": ...}``, messages
or a prompt value (:mod:`ollang.chains.inputs`) — and returns the reply text.
``invoke``, ``stream``, ``astream``, ``batch`` and ``abatch`` work as for any
runnable, so it embeds in larger LangChain and LangGraph apps. The session comes from
``config={"configurable": {"session_id": "..."}}``, else LangGraph's ``thread_id``.

Why not ``RunnableWithMessageHistory``: it is deprecated (removal in
langchain-core 2.0), re-reads the whole history every turn, and stores the
reply only once it is complete, so a crash or Ctrl-C loses it. Here the turn's
life cycle is explicit, because the data-loss rule needs it:

1. the user's message is stored before the model is called;
2. the reply is flushed to the store at least once a second as it streams;
3. on the end of the stream it is finalised; on an error, a cancellation, a
   Ctrl-C or a consumer closing the generator, what arrived is kept with status
   ``error`` or ``interrupted``.

A turn that repeats the session's last question while that question has no complete
answer yet (``chain.with_retry()``, ``with_fallbacks``, a user re-sending after an
error) continues that turn: the question is not stored again, and the failed attempts
stay stored, with their status, but are not sent as context.

Only the window of history that can fit the model's context is read from the
store, so a turn costs the same at 10 and at 10,000 stored messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessageChunk, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import BaseModel

from ollang.chains.inputs import ChatTurnInput, TurnInput, parse_turn_input
from ollang.chains.wrapped import (
    astream_with_retry,
    chat_models_in,
    is_sizable,
    primary_model,
    sized,
    stream_with_retry,
)
from ollang.errors import InvalidInputError
from ollang.iterators import aclosing_iter, closing_iter
from ollang.memory import ChatStore, InMemoryChatStore
from ollang.memory.keys import UsageRow, utc_day
from ollang.turns.context import (
    DEFAULT_CONTEXT_WINDOW,
    MAX_AUTO_CONTEXT,
    ContextBudget,
    declared_context_window,
    reply_reserve,
)
from ollang.turns.history import RETRY_LOOKBACK, prepare_turn
from ollang.turns.lifecycle import TurnLifecycle, Write
from ollang.turns.recorder import ChatEvent, TurnRecorder, TurnResult

__all__ = ["DEFAULT_SESSION_ID", "ChatChain", "build_chat_chain"]

log = logging.getLogger("ollang")

#: The session of a turn whose config names neither ``session_id`` nor ``thread_id``.
DEFAULT_SESSION_ID = "default"

_CONFIG_SPECS = [
    ConfigurableFieldSpec(
        id="session_id",
        annotation=str,
        name="Session ID",
        description="The stored conversation this turn belongs to.",
        default="",
        is_shared=True,
    ),
    ConfigurableFieldSpec(
        id="thread_id",
        annotation=str,
        name="Thread ID",
        description="LangGraph's thread id; the session when session_id is not given.",
        default="",
        is_shared=True,
    ),
]


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
    :class:`~ollang.turns.recorder.ChatEvent` items (tokens, reasoning, and a final event
    carrying usage and timings), and :meth:`invoke_turn` / :meth:`ainvoke_turn`.
    """

    def __init__(
        self,
        model: Runnable[Any, Any],
        *,
        store: ChatStore | None = None,
        system: str | None = None,
        context_window: int | None = None,
        flush_interval: float = 1.0,
        usage_key: str | None = None,
    ) -> None:
        self._models = chat_models_in(model)  # refuses anything that is not a chat model
        self.usage_key = usage_key
        self.model = model
        self.store: ChatStore = store if store is not None else InMemoryChatStore()
        self.system = system
        self.context_window = context_window
        self.flush_interval = flush_interval
        self.prompt = ChatPromptTemplate.from_messages(
            [
                MessagesPlaceholder("system", optional=True),
                MessagesPlaceholder("history"),
                MessagesPlaceholder("context", optional=True),
                MessagesPlaceholder("input"),
            ]
        )
        self._sized_models: dict[int, Runnable[Any, Any]] = {}
        self._sizable = any(is_sizable(m) for m in self._models)
        self._warned_default_session = False

    @property
    def chat_model(self) -> BaseChatModel:
        """The chat model that answers when nothing fails (unwrapped)."""
        return primary_model(self.model)

    # -- the pipeline ----------------------------------------------------------
    # prompt -> model -> text, run step by step rather than as `prompt | model |
    # StrOutputParser()`: when a consumer stops early, LangChain's streaming
    # transform drains the upstream iterator to trace its input, so a parser
    # piped after the model would read the whole answer from Ollama after the
    # user pressed Stop. Here closing the stream closes the model's stream, and
    # the HTTP request with it. The "parser" is `chunk.text`, which is exactly
    # what StrOutputParser returns for a message chunk.
    def model_for(self, num_ctx: int | None) -> Runnable[Any, Any]:
        """The model (wrappers included), its Ollama models sized to ``num_ctx`` when
        ollang chooses the context size."""
        if num_ctx is None:
            return self.model
        if num_ctx not in self._sized_models:
            self._sized_models[num_ctx] = sized(self.model, num_ctx)
        return self._sized_models[num_ctx]

    def _sends_num_ctx(self) -> bool:
        # Ollama truncates to its *runtime* num_ctx (2048-4096 by default), not the
        # model's trained length; when the user set none, we send the window we
        # trimmed to, so what fits here also fits there (ollama/ollama#3839, #8099).
        return self._sizable

    def _windows(self, reported: Sequence[int | None]) -> int:
        if self.context_window:
            return self.context_window
        windows = []
        for model, length in zip(self._models, reported, strict=True):
            declared = declared_context_window(model)
            if declared:
                windows.append(declared)
            elif length:
                windows.append(min(length, MAX_AUTO_CONTEXT))
            else:
                windows.append(DEFAULT_CONTEXT_WINDOW)
        # With fallbacks, whichever model answers must be able to take the prompt.
        return min(windows)

    def _needs_lookup(self, model: BaseChatModel) -> bool:
        return (
            not self.context_window
            and declared_context_window(model) is None
            and hasattr(model, "get_context_length")
        )

    def context_window_for_model(self) -> int:
        """The context size used for trimming (may ask the server once, then cached)."""
        reported = [
            m.get_context_length() if self._needs_lookup(m) else None  # type: ignore[attr-defined]
            for m in self._models
        ]
        return self._windows(reported)

    async def acontext_window_for_model(self) -> int:
        """Async :meth:`context_window_for_model`."""
        reported = [
            await m.aget_context_length() if self._needs_lookup(m) else None  # type: ignore[attr-defined]
            for m in self._models
        ]
        return self._windows(reported)

    # -- turn set-up -----------------------------------------------------------
    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """``session_id`` (and LangGraph's ``thread_id``) in ``config["configurable"]``."""
        return list(_CONFIG_SPECS)

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        """``{"input": str, "system": str | None}`` (the dict form of the input)."""
        return ChatTurnInput

    def session_of(self, config: RunnableConfig) -> str:
        """The session: ``configurable.session_id``, else ``thread_id``, else the default.

        Without either, every turn goes to the one session ``"default"`` (a warning says
        so once per chain): fine for a script, wrong for a server or a graph.
        """
        configurable = config.get("configurable") or {}
        session_id = configurable.get("session_id") or configurable.get("thread_id")
        if not session_id:
            if not self._warned_default_session:
                self._warned_default_session = True
                log.warning(
                    "no session_id (or thread_id) in the config: using the shared session "
                    "%r; pass config={'configurable': {'session_id': ...}}",
                    DEFAULT_SESSION_ID,
                )
            return DEFAULT_SESSION_ID
        if not isinstance(session_id, str):
            raise InvalidInputError("session_id must be a string")
        return session_id

    def _prepare(
        self, turn: TurnInput, session_id: str, human: HumanMessage, window: int
    ) -> tuple[dict[str, Any], ContextBudget]:
        """Read the history window (never the whole session) and size the prompt."""
        system = turn.system if turn.system is not None else self.system
        prepared = prepare_turn(
            self.store,
            session_id,
            human,
            system=system,
            context=turn.context,
            window=window,
            reserve=reply_reserve(self.chat_model, window),
        )
        prompt_input = {
            "system": [SystemMessage(system)] if system else [],
            "history": prepared.history,
            "context": turn.context,
            "input": [human],
        }
        return prompt_input, prepared.budget

    def _lifecycle(self, session_id: str) -> TurnLifecycle:
        return TurnLifecycle(
            session_id, model_name=_model_name(self.chat_model), flush_interval=self.flush_interval
        )

    def _store(self, write: Write | None) -> None:
        """Carry out one of the life cycle's writes (directly: the sync path, and any
        write that must not wait on a worker thread)."""
        if write is not None:
            write.run(self.store)

    async def _astore(self, write: Write | None) -> None:
        """Carry out a write off the event loop, unless it must not wait (cancellation)."""
        if write is not None:
            if write.wait:
                await asyncio.to_thread(write.run, self.store)
            else:
                self._store(write)

    @staticmethod
    def _pieces(recorder: TurnRecorder, chunk: BaseMessageChunk) -> Iterator[ChatEvent]:
        text = recorder.observe(chunk)
        for thought in recorder.drain_reasoning():
            yield ChatEvent("reasoning", thought)
        if text:
            yield ChatEvent("token", text)

    def _count_usage(
        self, result: TurnResult | None, started: float, *, error: bool = False
    ) -> None:
        """Add this turn to the store's usage under :attr:`usage_key` (the CLI's turns:
        ``local``, read by ``ollang usage``): one small write per turn. Nothing without a
        key (a library's chain keeps no usage unless asked); a store that cannot take it
        only costs a debug line (the turn's own write says what is wrong with it)."""
        if self.usage_key is None:
            return
        model = (result.model if result else None) or _model_name(self.chat_model) or "?"
        usage = result.usage if result else None
        row = UsageRow(
            self.usage_key,
            model,
            utc_day(),
            requests=1,
            input_tokens=(usage.input_tokens if usage else None) or 0,
            output_tokens=(usage.output_tokens if usage else None) or 0,
            errors=1 if error else 0,
            busy_s=time.perf_counter() - started,
        )
        try:
            self.store.add_usage([row])
        except Exception as err:  # usage is bookkeeping: never fail the turn for it
            log.debug("could not record the turn's usage: %s", err)

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

        The turn's store decisions are :class:`~ollang.turns.lifecycle.TurnLifecycle`'s;
        this drives it with direct store calls.

        Raises:
            InvalidInputError: empty input (nothing is stored or sent).
            OllangError: translated model-server errors; what arrived is stored first.
        """
        config = ensure_config(config)
        turn = parse_turn_input(input)
        session_id = self.session_of(config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None,
            {"input": turn.text},
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        life = self._lifecycle(session_id)
        started = time.perf_counter()
        try:
            opening = life.open(
                turn.human, self.store.get_messages(session_id, limit=RETRY_LOOKBACK)
            )
            self._store(opening.write)  # before the model is called
            window = self.context_window_for_model()
            prompt_input, budget = self._prepare(turn, session_id, opening.question, window)
            recorder = life.begin(budget)
            model = self.model_for(window if self._sends_num_ctx() else None)
            child = patch_config(config, callbacks=run_manager.get_child())
            messages = self.prompt.invoke(prompt_input, child).to_messages()
            # Closing the model's stream closes the HTTP request when the consumer stops.
            with closing_iter(stream_with_retry(model, messages, child)) as chunks:
                for chunk in chunks:
                    yield from self._pieces(recorder, chunk)
                    self._store(life.streamed())
        except BaseException as err:  # GeneratorExit, KeyboardInterrupt, errors: keep what arrived
            self._store(life.stopped(err))
            self._count_usage(None, started, error=isinstance(err, Exception))
            run_manager.on_chain_error(err)
            raise
        write, result = life.finish()
        self._store(write)
        self._count_usage(result, started)
        self._log_result(result)
        run_manager.on_chain_end(result.text)
        yield ChatEvent("done", result=result)

    async def astream_turn(
        self, input: Any, config: RunnableConfig | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Async :meth:`stream_turn`; store I/O runs in a worker thread, off the event loop."""
        config = ensure_config(config)
        turn = parse_turn_input(input)
        session_id = self.session_of(config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None,
            {"input": turn.text},
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        life = self._lifecycle(session_id)
        started = time.perf_counter()
        try:
            recent = await asyncio.to_thread(
                self.store.get_messages, session_id, limit=RETRY_LOOKBACK
            )
            opening = life.open(turn.human, recent)
            await self._astore(opening.write)
            window = await self.acontext_window_for_model()
            prompt_input, budget = await asyncio.to_thread(
                self._prepare, turn, session_id, opening.question, window
            )
            recorder = life.begin(budget)
            model = self.model_for(window if self._sends_num_ctx() else None)
            child = patch_config(config, callbacks=run_manager.get_child())
            messages = (await self.prompt.ainvoke(prompt_input, child)).to_messages()
            async with aclosing_iter(astream_with_retry(model, messages, child)) as chunks:
                async for chunk in chunks:
                    for event in self._pieces(recorder, chunk):
                        yield event
                    await self._astore(life.streamed())
        except BaseException as err:  # CancelledError, GeneratorExit, errors: keep what arrived
            # Written synchronously: this path may run during cancellation, when a
            # further await could itself be cancelled and the partial reply lost.
            self._store(life.stopped(err))
            self._count_usage(None, started, error=isinstance(err, Exception))
            await run_manager.on_chain_error(err)
            raise
        write, result = life.finish()
        await self._astore(write)
        self._count_usage(result, started)
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
        with closing_iter(self.stream_turn(input, config)) as events:
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
        """Input: a string, ``{"input", "system"?}``, messages or a prompt value."""
        return str | dict | list

    @property
    def OutputType(self) -> type[str]:
        """Output: the reply text."""
        return str


def build_chat_chain(
    model: Runnable[Any, Any],
    *,
    store: ChatStore | None = None,
    system: str | None = None,
    context_window: int | None = None,
    usage_key: str | None = None,
) -> ChatChain:
    """A conversational runnable over ``model`` with history from ``store``.

    Args:
        model: Any LangChain chat model: :func:`~ollang.chains.make_chat_model`'s
            ``ChatOllama``, langchain-core's fake chat models, a llama.cpp model —
            also inside ``with_retry()`` (applied to failures before the first token),
            ``with_fallbacks()``, ``bind()``, ``configurable_fields()``.
        store: Where the conversation lives (default: a fresh in-memory store;
            :func:`ollang.memory.open_store` gives the SQLite default).
        system: System prompt, always kept at the head of what is sent.
        context_window: Context size in tokens; default: the model's ``num_ctx``,
            else what Ollama's ``/api/show`` reports (at most 8192), else 4096
            (with fallbacks: the smallest of the models').
        usage_key: Count each turn's usage in ``store`` under this key (``ollang usage``;
            the CLI's turns: ``local``); default: no usage kept.

    Raises:
        InvalidInputError: ``model`` is not a (wrapped) chat model.

    Example:
        >>> chain = build_chat_chain(make_chat_model("llama3"), system="Be brief.")
        >>> for piece in chain.stream("Hi!", config={"configurable": {"session_id": "s1"}}):
        ...     print(piece, end="")
    """
    return ChatChain(
        model, store=store, system=system, context_window=context_window, usage_key=usage_key
    )
