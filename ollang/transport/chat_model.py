"""Model factories: ``ChatOllama`` / ``OllamaLLM`` configured from settings.

The classes here are thin subclasses of langchain-ollama's, adding only what
ollang needs on every call:

* real timeouts (neither ``ChatOllama`` nor the ``ollama`` client sets one):
  connecting fails fast, reading allows a model to load before its first token;
* raw ``ollama``/httpx errors raised as ollang's own (:mod:`ollang.transport.errors`) on
  ``invoke``, ``stream``, ``astream`` and ``batch`` alike;
* the model's context length from ``/api/show``, cached per server and model.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.outputs import GenerationChunk, LLMResult
from langchain_ollama import ChatOllama, OllamaLLM
from pydantic import PrivateAttr

from ollang.errors import OllangError
from ollang.settings import Settings, parse_ollama_host
from ollang.transport.client import LIMITS, client_timeout, ollama_client
from ollang.transport.errors import translating
from ollang.transport.translated import TranslatedChatModel

__all__ = [
    "OLLAMA_OPTIONS",
    "OllangChatOllama",
    "OllangOllamaLLM",
    "make_chat_model",
    "make_llm",
    "ollama_client",
]

#: Options accepted by the factories (besides ``model`` and ``base_url``).
#: ``think`` is Ollama's name for langchain-ollama's ``reasoning``.
OLLAMA_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "num_ctx",
        "num_predict",
        "stop",
        "keep_alive",
        "format",
        "think",
        "reasoning",
        "repeat_penalty",
        "repeat_last_n",
        "mirostat",
        "mirostat_eta",
        "mirostat_tau",
        "num_gpu",
        "num_thread",
        "tfs_z",
    }
)

_context_cache: dict[tuple[str, str], int | None] = {}
_context_lock = threading.Lock()


def _installed_models(url: str, settings: Settings) -> list[str]:
    client = ollama_client(url, settings=settings)
    return [m.model or "" for m in client.list().models]


def _context_length_from_show(info: Any) -> int | None:
    model_info = getattr(info, "modelinfo", None) or {}
    for key, value in model_info.items():
        if key.endswith(".context_length") and isinstance(value, int) and value > 0:
            return value
    return None


class _OllamaMixin:
    """Shared behaviour of the chat and completion subclasses."""

    model: str
    base_url: str | None
    _settings: Settings

    def _translating(self) -> AbstractContextManager[None]:
        url = self.base_url or ""
        return translating(
            url=url,
            model=self.model,
            list_models=lambda: _installed_models(url, self._settings),
        )

    def get_context_length(self) -> int | None:
        """The model's trained context length from ``/api/show``; cached per server+model.

        Returns ``None`` when the server does not report one.

        Raises:
            OllamaUnavailableError, ModelNotFoundError: as for any call.
        """
        key = (self.base_url or "", self.model)
        with _context_lock:
            if key in _context_cache:
                return _context_cache[key]
        with self._translating():
            info = self._client.show(self.model)  # type: ignore[attr-defined]
        length = _context_length_from_show(info)
        with _context_lock:
            _context_cache[key] = length
        return length

    async def aget_context_length(self) -> int | None:
        """Async :meth:`get_context_length`."""
        key = (self.base_url or "", self.model)
        with _context_lock:
            if key in _context_cache:
                return _context_cache[key]
        with self._translating():
            info = await self._async_client.show(self.model)  # type: ignore[attr-defined]
        length = _context_length_from_show(info)
        with _context_lock:
            _context_cache[key] = length
        return length


class OllangChatOllama(_OllamaMixin, TranslatedChatModel, ChatOllama):
    """``ChatOllama`` whose failures are ollang errors and whose context length is known.

    Build it with :func:`make_chat_model`; use it anywhere a LangChain chat model goes.
    """

    _settings: Settings = PrivateAttr(default_factory=Settings)

    def __init__(self, *, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings or Settings.from_env()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Tracing parameters naming the model a call really used: ``ChatOllama`` sends a
        per-call ``model=`` override, but (langchain-ollama 1.1) reports ``self.model``."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_model_name"] = kwargs.get("model", self.model)
        return params


class OllangOllamaLLM(_OllamaMixin, OllamaLLM):
    """``OllamaLLM`` (``/api/generate``) with ollang's errors and timeouts."""

    _settings: Settings = PrivateAttr(default_factory=Settings)

    def __init__(self, *, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings or Settings.from_env()

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        with self._translating():
            return super()._generate(prompts, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        with self._translating():
            return await super()._agenerate(prompts, stop, run_manager, **kwargs)

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        with self._translating():
            yield from super()._stream(prompt, stop, run_manager, **kwargs)

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        with self._translating():
            async for chunk in super()._astream(prompt, stop, run_manager, **kwargs):
                yield chunk


def _model_kwargs(
    model: str | None, base_url: str | None, options: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    unknown = set(options) - OLLAMA_OPTIONS
    if unknown:
        raise OllangError(
            "unknown model option(s): " + ", ".join(sorted(unknown)),
            "known options: " + ", ".join(sorted(OLLAMA_OPTIONS)),
        )
    kwargs = {k: v for k, v in options.items() if v is not None}
    if "think" in kwargs:
        kwargs["reasoning"] = kwargs.pop("think")
    if isinstance(kwargs.get("stop"), str):
        kwargs["stop"] = [kwargs["stop"]]
    url = parse_ollama_host(base_url) if base_url else settings.ollama_url
    return {
        "model": model or settings.default_model,
        "base_url": url,
        "client_kwargs": {"timeout": client_timeout(settings), "limits": LIMITS},
        **kwargs,
    }


def make_chat_model(
    model: str | None = None,
    *,
    base_url: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> OllangChatOllama:
    """A ``ChatOllama`` for ``model`` (default ``$OLLANG_MODEL`` or ``llama3``).

    Args:
        model: Ollama model name, e.g. ``"llama3"`` or ``"qwen3:0.6b"``.
        base_url: Ollama address in any ``OLLAMA_HOST`` form; default ``$OLLAMA_HOST``.
        settings: Explicit settings (default: read from the environment).
        **options: ``temperature``, ``top_p``, ``top_k``, ``seed``, ``num_ctx``,
            ``num_predict``, ``stop``, ``keep_alive``, ``format``, ``think``
            (reasoning: ``True``/``False`` or a level such as ``"high"``), and
            the other Ollama options in :data:`OLLAMA_OPTIONS`.

    Raises:
        OllangError: for an unknown option name.
    """
    settings = settings or Settings.from_env()
    return OllangChatOllama(settings=settings, **_model_kwargs(model, base_url, options, settings))


def make_llm(
    model: str | None = None,
    *,
    base_url: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> OllangOllamaLLM:
    """An ``OllamaLLM`` (Ollama's ``/api/generate``), configured like :func:`make_chat_model`."""
    settings = settings or Settings.from_env()
    return OllangOllamaLLM(settings=settings, **_model_kwargs(model, base_url, options, settings))
