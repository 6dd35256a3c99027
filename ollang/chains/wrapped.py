"""Chat models inside LangChain's wrappers: find them, size them, stream them.

``build_chat_chain(model.with_retry())`` (or ``with_fallbacks``, ``bind``,
``configurable_fields``, ``configurable_alternatives``) hands the chain a runnable
that *contains* the chat model. The chain needs the model itself: for the context
window it trims to, the room kept for the reply, and the ``num_ctx`` it sends so that
Ollama does not silently cut the prompt to its smaller default. A plain
``model_copy(update={"num_ctx": ...})`` on the wrapper sets an attribute nobody reads,
so the wrappers are rebuilt around a sized copy of each model they hold.

Two more things LangChain's wrappers do not do for a streamed turn, done here:

* ``RunnableRetry`` retries ``invoke``/``batch`` only; a chat turn streams, so its
  policy (attempts, exception types, backoff) is applied by :func:`stream_with_retry`
  to failures *before the first chunk* (after it, text was already shown and stored,
  and the error keeps the partial answer as every other error does);
* with fallbacks, the window is the smallest of every model that may answer.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessageChunk
from langchain_core.runnables import Runnable, RunnableConfig, RunnableWithFallbacks
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.configurable import DynamicRunnable, RunnableConfigurableAlternatives
from langchain_core.runnables.retry import RunnableRetry

from ollang.errors import InvalidInputError
from ollang.iterators import afirst_success, first_success
from ollang.routing.routed import RoutedChatModel

__all__ = [
    "astream_with_retry",
    "chat_models_in",
    "is_sizable",
    "primary_model",
    "retry_policy",
    "sized",
    "stream_with_retry",
    "validate_chat_model",
]

#: What the chain accepts as its model: a chat model, or one inside LangChain's wrappers.
ChatRunnable = Runnable[LanguageModelInput, BaseMessageChunk]


def chat_models_in(runnable: Runnable[Any, Any]) -> list[BaseChatModel]:
    """Every chat model a (possibly wrapped) runnable may call, the primary one first.

    Raises:
        InvalidInputError: something other than a chat model sits inside.
    """
    if isinstance(runnable, RoutedChatModel):  # one model on several hosts
        return list(runnable.models)
    if isinstance(runnable, BaseChatModel):
        return [runnable]
    if isinstance(runnable, RunnableBindingBase):  # bind(), with_config(), with_retry()
        return chat_models_in(runnable.bound)
    if isinstance(runnable, RunnableWithFallbacks):
        return [
            m for part in (runnable.runnable, *runnable.fallbacks) for m in chat_models_in(part)
        ]
    if isinstance(runnable, RunnableConfigurableAlternatives):
        found = chat_models_in(runnable.default)
        for alternative in runnable.alternatives.values():
            if isinstance(alternative, Runnable):
                found += chat_models_in(alternative)
        return found
    if isinstance(runnable, DynamicRunnable):  # configurable_fields()
        return chat_models_in(runnable.default)
    raise InvalidInputError(
        f"build_chat_chain needs a chat model, got {type(runnable).__name__}",
        "pass a chat model (make_chat_model(...), a LangChain chat model), optionally "
        "wrapped with with_retry(), with_fallbacks(), bind() or configurable_fields()",
    )


def validate_chat_model(runnable: Runnable[Any, Any]) -> None:
    """Raise :class:`InvalidInputError` unless ``runnable`` is a (wrapped) chat model."""
    chat_models_in(runnable)


def primary_model(runnable: Runnable[Any, Any]) -> BaseChatModel:
    """The chat model that answers when nothing fails."""
    return chat_models_in(runnable)[0]


def is_sizable(model: BaseChatModel) -> bool:
    """Whether ``model`` is an Ollama chat model whose ``num_ctx`` nobody set (ollang then
    sends the window it trimmed to; Ollama's own default is smaller than most models')."""
    # Not imported here: `import langchain_ollama` costs a second, and a model cannot be
    # a ChatOllama unless that module was imported to make it.
    module = sys.modules.get("langchain_ollama")
    return module is not None and isinstance(model, module.ChatOllama) and model.num_ctx is None


def sized(runnable: Runnable[Any, Any], num_ctx: int) -> Runnable[Any, Any]:
    """A copy of ``runnable`` whose Ollama models (those with a ``num_ctx`` nobody set)
    run with ``num_ctx``; everything else, wrappers included, is kept as it is."""
    if isinstance(runnable, RoutedChatModel):
        return runnable.model_copy(update={"models": [sized(m, num_ctx) for m in runnable.models]})
    if isinstance(runnable, BaseChatModel):
        if is_sizable(runnable):
            return runnable.model_copy(update={"num_ctx": num_ctx})
        return runnable
    if isinstance(runnable, RunnableBindingBase):
        return runnable.model_copy(update={"bound": sized(runnable.bound, num_ctx)})
    if isinstance(runnable, RunnableWithFallbacks):
        return runnable.model_copy(
            update={
                "runnable": sized(runnable.runnable, num_ctx),
                "fallbacks": [sized(f, num_ctx) for f in runnable.fallbacks],
            }
        )
    if isinstance(runnable, RunnableConfigurableAlternatives):
        alternatives = {
            key: sized(value, num_ctx) if isinstance(value, Runnable) else value
            for key, value in runnable.alternatives.items()
        }
        return runnable.model_copy(
            update={"default": sized(runnable.default, num_ctx), "alternatives": alternatives}
        )
    if isinstance(runnable, DynamicRunnable):
        return runnable.model_copy(update={"default": sized(runnable.default, num_ctx)})
    return runnable


# -- retries of a streamed turn ---------------------------------------------------------
RetryDecision = Callable[[BaseException], bool]


def retry_policy(runnable: Runnable[Any, Any]) -> tuple[int, RetryDecision, Callable[[int], float]]:
    """``(attempts, should_retry, delay_for_attempt)`` of the outermost ``with_retry``.

    No ``with_retry`` anywhere: one attempt. The backoff follows RunnableRetry's own
    settings (exponential with jitter, ``exponential_jitter_params``).
    """
    retry = _find_retry(runnable)
    if retry is None:
        return 1, lambda err: False, lambda attempt: 0.0
    kinds = retry.retry_exception_types

    def should_retry(err: BaseException) -> bool:
        if callable(kinds) and not isinstance(kinds, tuple):
            return bool(kinds(err))
        return isinstance(err, tuple(kinds)) if kinds else False

    jitter_params = retry.exponential_jitter_params or {}
    params = {key: float(value) for key, value in jitter_params.items()}  # type: ignore[arg-type]

    def delay(attempt: int) -> float:
        if not retry.wait_exponential_jitter:
            return 0.0
        # tenacity's wait_exponential_jitter: initial * exp_base ** (n - 1) + U(0, jitter)
        initial = params.get("initial", 1.0)
        base = params.get("exp_base", 2.0)
        most = params.get("max", 60.0)
        jitter = params.get("jitter", 1.0)
        return min(initial * base ** (attempt - 1) + random.uniform(0, jitter), most)

    return max(1, retry.max_attempt_number), should_retry, delay


def _find_retry(runnable: Runnable[Any, Any]) -> RunnableRetry[Any, Any] | None:
    while isinstance(runnable, RunnableBindingBase):
        if isinstance(runnable, RunnableRetry):
            return runnable
        runnable = runnable.bound
    return None


def _unretried(runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """``runnable`` without its outermost ``with_retry`` (its policy is applied here)."""
    if isinstance(runnable, RunnableRetry):
        return runnable.bound
    if isinstance(runnable, RunnableBindingBase):
        return runnable.model_copy(update={"bound": _unretried(runnable.bound)})
    return runnable


def stream_with_retry(
    model: Runnable[Any, Any], messages: Sequence[Any], config: RunnableConfig
) -> Iterator[BaseMessageChunk]:
    """``model.stream(messages)``, retried by its ``with_retry`` policy until a chunk arrives."""
    attempts, should_retry, delay = retry_policy(model)
    inner = _unretried(model) if attempts > 1 else model

    def retry(err: Exception, attempt: int) -> bool:
        if attempt >= attempts or not should_retry(err):
            return False
        time.sleep(delay(attempt))
        return True

    return first_success(lambda _: inner.stream(list(messages), config), retry)


def astream_with_retry(
    model: Runnable[Any, Any], messages: Sequence[Any], config: RunnableConfig
) -> AsyncIterator[BaseMessageChunk]:
    """Async :func:`stream_with_retry`."""
    attempts, should_retry, delay = retry_policy(model)
    inner = _unretried(model) if attempts > 1 else model

    async def retry(err: Exception, attempt: int) -> bool:
        if attempt >= attempts or not should_retry(err):
            return False
        await asyncio.sleep(delay(attempt))
        return True

    return afirst_success(lambda _: inner.astream(list(messages), config), retry)
