"""Ollama's REST API, translated to and from ollang's turns.

``/api/chat`` requests become a stateless :class:`~ollang.server.turns.TurnRequest`: the
client's messages (with ``images``, ``tool_calls``, tool results) sent as given, its
``options`` passed on as they are, ``format``, ``tools``, ``think`` and ``keep_alive``
as the top-level fields they are. The answer is the host's own ``/api/chat`` stream
lines, forwarded as they came (``message.content``, ``message.thinking``,
``message.tool_calls``, the done line with its counts), or with ``"stream": false`` one
object with the whole message. ``/api/generate`` is answered by a chat turn of
``system`` and ``prompt`` (with ``images``), in generate's shape (``response``,
``thinking``). Errors are Ollama's ``{"error": "..."}`` (ollang adds ``hint``), an
invalid request a 400 as Ollama answers it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from langchain_core.messages import BaseMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import JSONResponse, Response

from ollang.errors import ModelNotFoundError, OllangError
from ollang.server.dialects.common import INT64_MAX
from ollang.server.errors import ValidationFailedError
from ollang.server.errors import error_body as ollang_error_body
from ollang.server.schemas import MODEL_NAME_PATTERN, PULL_NAME_PATTERN
from ollang.server.streaming import StreamFormat, StreamItem
from ollang.transport.manage import ModelDetails
from ollang.transport.translate import (
    done_fields,
    from_ollama,
    from_ollama_messages,
    now_iso,
    to_ollama,
    tool_call_to_ollama,
)
from ollang.turns.recorder import TurnResult

__all__ = [
    "ERROR_PREFIX",
    "OllamaChatRequest",
    "OllamaEmbedRequest",
    "OllamaGenerateRequest",
    "OllamaLines",
    "OllamaModelRequest",
    "OllamaPullRequest",
    "chat_response",
    "done_line",
    "error_response",
    "model_named",
    "tag_entry",
    "to_messages",
    "wire_tool_calls",
]

#: The paths answered in this dialect's error shape.
ERROR_PREFIX = "/api/"

_Scalar = bool | int | float | str
OptionValue = _Scalar | list[_Scalar] | None


def _check_options(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Ollama options pass on as given; integers must fit Ollama's int64."""
    for key, item in (value or {}).items():
        items = item if isinstance(item, list) else [item]
        if any(isinstance(v, int) and not -INT64_MAX <= v <= INT64_MAX for v in items):
            raise ValueError(f"options.{key} is out of range")
    return value


class _Wire(BaseModel):
    # Ollama ignores fields it does not know; so does its dialect here.
    model_config = ConfigDict(extra="ignore")


class ToolFunction(_Wire):
    """A tool call's function: name and arguments (an object)."""

    name: str = Field(..., max_length=256)
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    index: int | None = Field(None, ge=0, le=1024)


class ToolCallIn(_Wire):
    """A tool call an assistant message made."""

    id: str | None = Field(None, max_length=256)
    function: ToolFunction


class OllamaMessage(_Wire):
    """One message: ``images`` are base64 strings (user messages)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = Field(None, max_length=64)
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=128)
    tool_name: str | None = Field(None, max_length=256)
    tool_call_id: str | None = Field(None, max_length=256)
    thinking: str | None = Field(None, description="Ignored (not sent back to the model).")


_Options = Annotated[
    dict[str, OptionValue] | None,
    Field(description="Ollama model options (temperature, num_ctx, num_predict, stop, ...)."),
]
_Format = Annotated[
    Literal["", "json"] | dict[str, Any] | None,
    Field(description='`"json"` or a JSON schema the answer must follow.'),
]
_Think = bool | Literal["low", "medium", "high"] | None
_KeepAlive = Annotated[
    str | int | float | None,
    Field(description="How long the host keeps the model loaded (`5m`, seconds)."),
]
_Model = Annotated[
    str,
    Field(pattern=MODEL_NAME_PATTERN, max_length=200, examples=["llama3"]),
]


def model_named(model: str | None, name: str | None, example: str = "NAME") -> str:
    """The model a request of Ollama's API names: ``model``, else ``name`` (its older
    spelling); neither is a 422, as any other invalid field."""
    value = model or name
    if not value:
        raise ValidationFailedError("model is required", f'send {{"model": "{example}"}}')
    return value


class OllamaChatRequest(_Wire):
    """``POST /api/chat`` as Ollama takes it."""

    model: _Model
    messages: list[OllamaMessage] = Field(
        default_factory=list, max_length=10_000, examples=[[{"role": "user", "content": "Hi"}]]
    )
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    format: _Format = None
    options: _Options = None
    stream: bool = Field(True, description="NDJSON lines (default), or one object.")
    keep_alive: _KeepAlive = None
    think: _Think = None

    _options = field_validator("options")(_check_options)


class OllamaGenerateRequest(_Wire):
    """``POST /api/generate`` (``template``, ``raw``, ``context`` and ``suffix`` ignored)."""

    model: _Model
    prompt: str = Field("", examples=["Why is the sky blue?"])
    system: str | None = None
    images: list[str] | None = Field(None, max_length=64)
    format: _Format = None
    options: _Options = None
    stream: bool = True
    keep_alive: _KeepAlive = None
    think: _Think = None
    suffix: str | None = Field(None, description="Ignored.")
    template: str | None = Field(None, description="Ignored.")
    raw: bool | None = Field(None, description="Ignored.")
    context: list[int] | None = Field(None, description="Ignored (no token context).")

    _options = field_validator("options")(_check_options)


class OllamaModelRequest(_Wire):
    """``POST /api/show``: the model (``name`` is its older spelling)."""

    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN, max_length=200)
    name: str | None = Field(None, pattern=MODEL_NAME_PATTERN, max_length=200)
    verbose: bool | None = None

    @property
    def which(self) -> str:
        """The model named (``model``, else ``name``)."""
        return model_named(self.model, self.name)


class OllamaEmbedRequest(_Wire):
    """``POST /api/embed``, passed on to a host that has the model."""

    model: _Model
    input: str | list[str] = Field(..., examples=["Why is the sky blue?"])
    truncate: bool | None = None
    options: _Options = None
    keep_alive: _KeepAlive = None
    dimensions: int | None = Field(None, ge=1, le=65_536)

    _options = field_validator("options")(_check_options)


class OllamaPullRequest(_Wire):
    """``POST /api/pull`` (only with ``--allow-pull``)."""

    model: str | None = Field(None, pattern=PULL_NAME_PATTERN, examples=["llama3"])
    name: str | None = Field(None, pattern=PULL_NAME_PATTERN)
    insecure: bool | None = Field(None, description="Ignored: always Ollama's registry.")
    stream: bool = True

    @property
    def which(self) -> str:
        """The model named (``model``, else ``name``)."""
        return model_named(self.model, self.name)


# -- request -> turn --------------------------------------------------------------------
def to_messages(messages: list[OllamaMessage]) -> list[BaseMessage]:
    """The client's messages as LangChain messages, in order (system messages included),
    translated by :func:`ollang.transport.translate.from_ollama`.

    Raises:
        InvalidInputError: tool call arguments that are not a JSON object, images that are
            not images or too many (a 400 here).
        ImageTooLargeError: an image over the size limit (413).
    """
    return from_ollama_messages(m.model_dump(exclude_none=True) for m in messages)


def generate_messages(request: OllamaGenerateRequest) -> list[BaseMessage]:
    """``/api/generate``'s system prompt and prompt as a conversation of one turn."""
    system: list[BaseMessage] = [SystemMessage(request.system)] if request.system else []
    prompt = {"role": "user", "content": request.prompt, "images": request.images}
    return [*system, from_ollama(prompt, where="prompt")]


def top_level(
    request: OllamaChatRequest | OllamaGenerateRequest,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's ``options`` and top-level ``/api/chat`` fields, as the client gave them."""
    options = {k: v for k, v in (request.options or {}).items() if v is not None}
    extra: dict[str, Any] = {
        "format": request.format or None,
        "keep_alive": request.keep_alive,
        "think": request.think,
    }
    if isinstance(request, OllamaChatRequest) and request.tools:
        extra["tools"] = request.tools
    return options, {k: v for k, v in extra.items() if v is not None}


# -- turn -> answer ---------------------------------------------------------------------
def wire_tool_calls(result: TurnResult) -> list[dict[str, Any]]:
    """The answer's tool calls as Ollama sends them (with the ids stored)."""
    return [
        tool_call_to_ollama(call, index=i, with_id=True)
        for i, call in enumerate(result.message.tool_calls)
    ]


def done_line(result: TurnResult, model: str) -> dict[str, Any]:
    """Ollama's final line for a turn (when the host's own did not arrive)."""
    meta = result.message.response_metadata
    line: dict[str, Any] = {"model": model, "created_at": now_iso(), "done": True}
    line.update(done_fields(meta))
    line.setdefault("done_reason", result.done_reason or "stop")
    return line


def chat_response(result: TurnResult, model: str) -> dict[str, Any]:
    """The one object of a ``"stream": false`` chat: the whole message and the counts."""
    message = to_ollama(result.message, thinking=True, call_ids=True)
    line = done_line(result, model)
    return {
        "model": line.pop("model"),
        "created_at": line.pop("created_at"),
        "message": message,
        **line,
    }


def generate_response(result: TurnResult, model: str) -> dict[str, Any]:
    """The one object of a ``"stream": false`` generate."""
    line = done_line(result, model)
    out = {
        "model": line.pop("model"),
        "created_at": line.pop("created_at"),
        "response": result.text,
    }
    if result.reasoning:
        out["thinking"] = result.reasoning
    return {**out, **line}


def as_generate(line: dict[str, Any]) -> dict[str, Any]:
    """A chat stream line as generate's (``response``, ``thinking``)."""
    message = line.get("message") or {}
    out: dict[str, Any] = {
        "model": line.get("model"),
        "created_at": line.get("created_at") or now_iso(),
        "response": message.get("content") or "",
    }
    if message.get("thinking"):
        out["thinking"] = message["thinking"]
    out["done"] = bool(line.get("done"))
    if out["done"]:
        out.update(done_fields(line))
    return out


def tag_entry(details: ModelDetails) -> dict[str, Any]:
    """A model as ``/api/tags`` lists it."""
    return {
        "name": details.name,
        "model": details.name,
        "modified_at": details.modified_at.isoformat() if details.modified_at else None,
        "size": details.size,
        "digest": details.digest or "",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": details.family or "",
            "families": [details.family] if details.family else None,
            "parameter_size": details.parameter_size or "",
            "quantization_level": details.quantization_level or "",
        },
    }


class OllamaLines(StreamFormat):
    """NDJSON: ``progress`` items are Ollama lines sent as they are (chat lines rewritten
    as generate's when ``generate``); an error mid-stream is Ollama's ``{"error"}`` line."""

    name = "ollama-ndjson"
    media_type = "application/x-ndjson"

    def __init__(self, *, generate: bool = False) -> None:
        self.generate = generate

    def encode(self, item: StreamItem) -> bytes:
        data = item.data or {}
        if self.generate and "message" in data:
            data = as_generate(data)
        return orjson.dumps(data, default=str) + b"\n"

    def error(self, err: OllangError) -> bytes:
        return orjson.dumps(_error_body(err)) + b"\n"


# -- errors -------------------------------------------------------------------------------
def error_response(err: OllangError) -> Response:
    """An error as Ollama answers it: ``{"error": "..."}`` (+ ``hint``), 400 if invalid."""
    status = 400 if err.http_status == 422 else err.http_status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    headers.update(getattr(err, "headers", None) or {})  # a 429's Retry-After
    return JSONResponse(_error_body(err), status_code=status, headers=headers)


def _error_body(err: OllangError) -> dict[str, Any]:
    """``{"error": "...", "hint": "..."}``; a model no host has in Ollama's own words
    (``model "x" not found, try pulling it first``), which its clients look for."""
    body = ollang_error_body(err)
    if isinstance(err, ModelNotFoundError) and err.message == f"model {err.model!r} not found":
        body["error"] = f'model "{err.model}" not found, try pulling it first'
    return body
