"""The CLI's and the library's chat model on an OpenAI-compatible engine (``openai`` host).

The server streams from an engine over its own client
(:class:`~ollang.transport.openai_wire.OpenAIWire`); the CLI and LangChain apps need a
LangChain chat model, synchronous and asynchronous, with tools and structured output.
``langchain-openai``'s ``ChatOpenAI`` already is one, speaking exactly this API: the
smallest real path is a thin subclass, as :class:`~ollang.transport.chat_model.
OllangChatOllama` is of ``ChatOllama``, adding what ollang needs on every call:

* the engine's errors raised as ollang's (:mod:`ollang.transport.errors`, worded for an
  engine), so :class:`~ollang.routing.routed.RoutedChatModel` fails over on them as on
  Ollama's; no retries of its own (``max_retries=0``): failover is ollang's;
* the first chunk is the first token (the engine's opening ``role`` delta is dropped):
  until then a failing host can still fail over;
* reasoning kept apart: ``reasoning_content``/``reasoning`` deltas as the message's
  ``additional_kwargs["reasoning_content"]``, as ollang's Ollama models carry it;
* the window the engine runs (``max_model_len``, else the host's ``ctx=``) as
  :attr:`~OllangChatOpenAI.context_window`, which the chat chain trims to;
* Ollama's option names mapped (:data:`~ollang.transport.openai_translate.MAPPED_OPTIONS`;
  ``format`` as ``response_format``), the rest said once per host in the log;
* the host's key, never the environment's ``OPENAI_API_KEY``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import openai
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

from ollang.errors import OllangError
from ollang.settings import Settings
from ollang.transport.chat_model import OLLAMA_OPTIONS
from ollang.transport.errors import translating
from ollang.transport.openai_translate import engine_options, response_format
from ollang.transport.openai_wire import say_unmapped
from ollang.transport.translated import TranslatedChatModel

__all__ = ["OllangChatOpenAI", "make_openai_chat_model"]

#: A key must be sent (the SDK insists); a keyless engine ignores this one (vLLM's word).
NO_KEY = "EMPTY"


class OllangChatOpenAI(TranslatedChatModel, ChatOpenAI):
    """``ChatOpenAI`` on an engine host, with ollang's errors, window and reasoning.

    Build it with :func:`make_openai_chat_model` (or through the hosts:
    :func:`~ollang.routing.backend.routed_chat_model`).

    Attributes:
        context_window: The engine's window for the model, if known (trimmed to).
        num_predict: The reply's token limit (sent as ``max_tokens``), if set.
    """

    drops_opening = True
    context_window: int | None = None
    num_predict: int | None = None

    def _translating(self) -> AbstractContextManager[None]:
        return translating(url=self.openai_api_base or "", model=self.model_name, kind="openai")

    def get_context_length(self) -> int | None:
        """The engine's window for the model (``None``: it did not say, nor ``ctx=``)."""
        return self.context_window

    async def aget_context_length(self) -> int | None:
        """Async :meth:`get_context_length` (known already: nothing is asked)."""
        return self.context_window

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        out = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or []
        if out is not None and choices:
            delta = choices[0].get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.message.additional_kwargs["reasoning_content"] = reasoning
        return out


def make_openai_chat_model(
    model: str,
    *,
    base_url: str,
    key: str | None = None,
    context_window: int | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> OllangChatOpenAI:
    """A chat model for ``model`` on the engine at ``base_url`` (``http://gpu2:8000/v1``).

    Args:
        model: The model's name as the engine lists it.
        base_url: The engine's base URL (where ``/chat/completions`` lives).
        key: Its API key (``Authorization: Bearer``); never ``$OPENAI_API_KEY``.
        context_window: The engine's window for the model, if known.
        settings: The timeouts (default: from the environment).
        **options: The same options as :func:`~ollang.transport.chat_model.make_chat_model`;
            those an engine has no counterpart for are said once in the log, not sent.

    Raises:
        OllangError: for an unknown option name.
    """
    settings = settings or Settings.from_env()
    unknown = set(options) - OLLAMA_OPTIONS
    if unknown:
        raise OllangError(
            "unknown model option(s): " + ", ".join(sorted(unknown)),
            "known options: " + ", ".join(sorted(OLLAMA_OPTIONS)),
        )
    top = ("format", "keep_alive", "think", "reasoning")
    params, unmapped = engine_options({k: v for k, v in options.items() if k not in top})
    unmapped += [name for name in top[1:] if options.get(name) is not None]
    say_unmapped(base_url, unmapped)
    # Sent in the body as engines read them: max_tokens (not max_completion_tokens), top_k.
    extra = {k: params.pop(k) for k in ("max_tokens", "top_k", "min_p") if k in params}
    wanted = response_format(options.get("format"))
    return OllangChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=key or NO_KEY,
        # The SDK's own Timeout: its HTTP library is its own (openai 3.63 refuses httpx's).
        timeout=openai.Timeout(
            settings.read_timeout, connect=settings.connect_timeout, pool=settings.connect_timeout
        ),
        max_retries=0,
        stream_usage=True,
        extra_body=extra or None,
        model_kwargs={"response_format": wanted} if wanted else {},
        context_window=context_window,
        num_predict=extra.get("max_tokens"),
        **params,
    )
