"""OpenAI's chat completions API, translated to and from ollang's turns.

Requests (``POST /v1/chat/completions``) become a stateless
:class:`~ollang.server.turns.TurnRequest`: the client's messages sent as given (text,
image content parts as Ollama ``images``, tool calls and tool results), its sampling
fields as Ollama ``options``, ``response_format`` as Ollama's ``format``, ``tools`` as
Ollama's tools, ``reasoning_effort`` as ``think``. Answers are OpenAI's
``chat.completion`` object, or its stream of ``chat.completion.chunk`` SSE events ending
in ``data: [DONE]``, with the usage chunk when ``stream_options.include_usage`` asks.
Reasoning travels in the message's (delta's) own ``reasoning`` field, as Ollama's
``/v1`` sends it, never inside ``content``. Errors are OpenAI's
``{"error": {"message", "type", "param", "code"}}`` with OpenAI's statuses (an invalid
request is a 400, an unknown model a 404 ``model_not_found``).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

import orjson
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from ollang.errors import (
    ContextWindowError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
    OllangError,
)
from ollang.memory.errors import SessionNotFoundError
from ollang.server.dialects.common import INT64_MAX, image_blocks
from ollang.server.errors import BadRequestError, UnauthorizedError, ValidationFailedError
from ollang.server.schemas import MODEL_NAME_PATTERN
from ollang.server.streaming import StreamFormat, StreamItem
from ollang.turns.recorder import TurnResult

__all__ = [
    "ERROR_PREFIX",
    "OpenAIChatRequest",
    "OpenAIStream",
    "completion",
    "error_body",
    "error_response",
    "finish_reason",
    "model_entry",
    "to_messages",
    "turn_options",
]

#: The paths answered in this dialect's error shape.
ERROR_PREFIX = "/v1/"
FINGERPRINT = "fp_ollang"


# -- the request ------------------------------------------------------------------------
class _Wire(BaseModel):
    # Fields OpenAI has and ollang does not use are ignored, as OpenAI-compatible
    # servers do (clients send store, service_tier, logit_bias...).
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Wire):
    """An image part's address: only ``data:`` URLs (ollang fetches no URL for a client)."""

    url: str = Field(..., description="`data:image/png;base64,...`.")
    detail: str | None = Field(None, description="Ignored.")


class ContentPart(_Wire):
    """One part of a message's content."""

    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: ImageURL | str | None = None
    refusal: str | None = None


class FunctionCall(_Wire):
    """A tool call's function: its name and JSON-encoded arguments."""

    name: str = Field(..., max_length=256)
    arguments: str = Field("{}", description="The arguments, a JSON object as text.")


class ToolCall(_Wire):
    """A tool call an assistant message made."""

    id: str | None = Field(None, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Wire):
    """One message of the conversation (``developer`` is read as ``system``)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, max_length=256)


class FunctionDef(_Wire):
    """A tool's function: name, description and JSON-schema parameters."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Wire):
    """A tool the model may call (passed on to Ollama as is)."""

    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Wire):
    """Which function ``tool_choice`` names."""

    name: str = Field(..., max_length=128)


class NamedToolChoice(_Wire):
    """``tool_choice`` naming one function."""

    type: Literal["function"] = "function"
    function: NamedFunction


class JSONSchemaFormat(_Wire):
    """``response_format.json_schema``: the schema the answer must follow."""

    name: str = Field("response", max_length=256)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Wire):
    """``text``, ``json_object`` (Ollama's ``"json"``) or ``json_schema`` (its schema)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Wire):
    """``include_usage``: one more chunk, with the token counts, before ``[DONE]``."""

    include_usage: bool | None = None


class OpenAIChatRequest(_Wire):
    """``POST /v1/chat/completions``, as OpenAI's API takes it (the fields ollang uses)."""

    model: str = Field(
        ...,
        pattern=MODEL_NAME_PATTERN,
        max_length=200,
        description="An installed model, as `GET /v1/models` lists it.",
        examples=["llama3"],
    )
    messages: list[ChatMessage] = Field(
        ...,
        min_length=1,
        max_length=10_000,
        examples=[[{"role": "user", "content": "Hello"}]],
    )
    stream: bool | None = Field(False, description="Stream `chat.completion.chunk` events.")
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1_048_576, description="Ollama's num_predict.")
    max_completion_tokens: int | None = Field(None, ge=1, le=1_048_576)
    stop: str | list[str] | None = Field(None, max_length=16)
    seed: int | None = Field(None, ge=-INT64_MAX, le=INT64_MAX)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="Ignored (Ollama decides).")
    n: int | None = Field(None, ge=1, le=1, description="Only 1.")
    user: str | None = Field(None, max_length=256, description="Ignored.")
    metadata: dict[str, str] | None = Field(
        None, description="`session_id` records the conversation as that ollang session."
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(
        None, description="Ollama's `think`: `none` turns it off."
    )
    logprobs: bool | None = Field(None, description="Not supported: must be absent or false.")


# -- request -> turn --------------------------------------------------------------------
def _text(content: str | list[ContentPart] | None, where: str) -> str:
    """The text of a non-user message's content (text and refusal parts only)."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "refusal":
            texts.append(part.refusal or "")
        else:
            raise BadRequestError(
                f"{where}: content parts of type {part.type!r} are only accepted in user messages",
                "send text",
            )
    return "".join(texts)


def _image_url(part: ContentPart, where: str) -> str:
    """An image part's ``data:`` URL (ollang fetches no URL for a client)."""
    url = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
    if not url:
        raise BadRequestError(f"{where}: an image_url part needs a url", "send a data: URL")
    if not url.startswith("data:"):
        raise BadRequestError(
            f"{where}: image URLs are not fetched, only data: URLs are accepted",
            "send the image inline as data:image/png;base64,...",
        )
    if ";base64," not in url:
        raise BadRequestError(f"{where}: the data: URL is not base64", "use ;base64,")
    return url


def _user_content(content: str | list[ContentPart] | None, where: str) -> str | list[Any]:
    if content is None or isinstance(content, str):
        return content or ""
    texts: list[dict[str, Any]] = []
    urls: list[str] = []
    for index, part in enumerate(content):
        if part.type == "text":
            texts.append({"type": "text", "text": part.text or ""})
        elif part.type == "image_url":
            urls.append(_image_url(part, f"{where}.content[{index}]"))
        else:
            raise BadRequestError(
                f"{where}.content[{index}]: {part.type!r} parts are not supported",
                "send text and images (image_url with a data: URL)",
            )
    if not urls:
        return "".join(block["text"] for block in texts)
    # Text first, then the images: Ollama takes a message's text and its images apart.
    return [*texts, *image_blocks(urls, f"{where}.images")]


def _arguments(call: ToolCall, where: str) -> dict[str, Any]:
    try:
        value = json.loads(call.function.arguments or "{}")
    except ValueError as err:
        raise BadRequestError(
            f"{where}: the arguments of tool call {call.function.name!r} are not JSON",
            "send them as a JSON object encoded as a string",
        ) from err
    if not isinstance(value, dict):
        raise BadRequestError(
            f"{where}: the arguments of tool call {call.function.name!r} are not a JSON object",
            'send e.g. "{\\"city\\": \\"Paris\\"}"',
        )
    return value


def to_messages(request: OpenAIChatRequest) -> list[BaseMessage]:
    """The client's messages as LangChain messages, in order (system messages included).

    Raises:
        BadRequestError: an image is not a base64 ``data:`` URL, tool arguments are not a
            JSON object, or a part type ollang cannot pass on (400).
    """
    names: dict[str, str] = {}  # tool_call_id -> the function it called
    out: list[BaseMessage] = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role in ("system", "developer"):
            out.append(SystemMessage(_text(message.content, where)))
        elif message.role == "user":
            out.append(HumanMessage(_user_content(message.content, where)))
        elif message.role == "assistant":
            calls = []
            for number, call in enumerate(message.tool_calls or []):
                call_id = call.id or f"call_{index}_{number}"
                names[call_id] = call.function.name
                calls.append(
                    {
                        "name": call.function.name,
                        "args": _arguments(call, where),
                        "id": call_id,
                        "type": "tool_call",
                    }
                )
            out.append(AIMessage(_text(message.content, where), tool_calls=calls))
        else:
            call_id = message.tool_call_id or ""
            out.append(
                ToolMessage(
                    _text(message.content, where),
                    tool_call_id=call_id,
                    name=message.name or names.get(call_id),
                )
            )
    return out


_THINK: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
}


def turn_options(request: OpenAIChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ollama ``options`` and top-level ``/api/chat`` fields for the request.

    Only what the client set is sent (Ollama's own defaults apply to the rest).

    Raises:
        ValidationFailedError: ``logprobs`` asked for (not supported).
    """
    if request.logprobs:
        raise ValidationFailedError(
            "logprobs are not supported by this server", "leave logprobs out"
        )
    options: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty"):
        value = getattr(request, name)
        if value is not None:
            options[name] = value
    most = request.max_completion_tokens or request.max_tokens
    if most is not None:
        options["num_predict"] = most
    if request.stop:
        options["stop"] = [request.stop] if isinstance(request.stop, str) else request.stop
    extra: dict[str, Any] = {}
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        extra["format"] = "json"
    elif fmt is not None and fmt.type == "json_schema":
        schema = fmt.json_schema.schema_ if fmt.json_schema else None
        extra["format"] = schema or "json"
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools or []]
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        # Ollama cannot force a call; offering only the named tool is the nearest.
        tools = [t for t in tools if t["function"]["name"] == choice.function.name]
        if not tools:
            raise ValidationFailedError(
                f"tool_choice names {choice.function.name!r}, which is not in tools",
                "name one of the tools you send",
            )
    if tools and choice != "none":
        extra["tools"] = tools
    if request.reasoning_effort is not None:
        extra["think"] = _THINK[request.reasoning_effort]
    return options, extra


# -- turn -> answer ---------------------------------------------------------------------
def finish_reason(result: TurnResult) -> str:
    """OpenAI's finish reason: ``tool_calls``, ``length`` or ``stop``."""
    if result.message.tool_calls:
        return "tool_calls"
    return "length" if result.done_reason == "length" else "stop"


def tool_calls(result: TurnResult) -> list[dict[str, Any]]:
    """The answer's tool calls as OpenAI sends them (ids as stored in a recorded session)."""
    return [
        {
            "id": call.get("id") or f"call_{index}",
            "type": "function",
            "function": {
                "name": call["name"],
                "arguments": json.dumps(call["args"], ensure_ascii=False),
            },
        }
        for index, call in enumerate(result.message.tool_calls)
    ]


def usage(result: TurnResult) -> dict[str, int]:
    """OpenAI's usage object from Ollama's counts."""
    prompt = result.usage.input_tokens or 0
    completion_tokens = result.usage.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def new_id() -> str:
    """A completion id (``chatcmpl-...``)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(result: TurnResult, *, completion_id: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` object of a finished turn."""
    calls = tool_calls(result)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text if result.text or not calls else None,
        "refusal": None,
    }
    if result.reasoning:
        message["reasoning"] = result.reasoning
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage(result),
    }


def model_entry(name: str, modified: float | None) -> dict[str, Any]:
    """A ``model`` object of ``/v1/models`` (``owned_by``: its namespace, as Ollama says)."""
    return {
        "id": name,
        "object": "model",
        "created": int(modified or 0),
        "owned_by": name.split("/", 1)[0] if "/" in name else "library",
    }


class OpenAIStream(StreamFormat):
    """``chat.completion.chunk`` events as SSE (``data: {...}``), then ``data: [DONE]``.

    Items: ``progress`` (the first chunk: the role), ``token`` (a content delta),
    ``reasoning`` (a ``reasoning`` delta), ``done`` (its data: ``finish_reason``,
    ``tool_calls``, ``usage``; gives the tool-call chunk, the finish chunk, the usage
    chunk when asked for, and ``[DONE]``). The fixed parts of a chunk are encoded once.
    """

    name = "openai-sse"
    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.head = (
            b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"system_fingerprint":"%s","choices":'
            % (completion_id.encode(), created, orjson.dumps(model), FINGERPRINT.encode())
        )
        self.tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self.include_usage = include_usage

    def _delta(self, delta: bytes, finish: str | None = None) -> bytes:
        reason = orjson.dumps(finish)
        return (
            self.head
            + b'[{"index":0,"delta":'
            + delta
            + b',"logprobs":null,"finish_reason":'
            + reason
            + b"}]"
            + self.tail
        )

    def encode(self, item: StreamItem) -> bytes:
        if item.kind == "token":
            return self._delta(b'{"content":' + orjson.dumps(item.text) + b"}")
        if item.kind == "reasoning":
            return self._delta(b'{"reasoning":' + orjson.dumps(item.text) + b"}")
        if item.kind == "progress":
            return self._delta(b'{"role":"assistant","content":"","refusal":null}')
        data = item.data or {}
        out = b""
        calls = data.get("tool_calls") or []
        if calls:
            indexed = [{"index": index, **call} for index, call in enumerate(calls)]
            out += self._delta(orjson.dumps({"tool_calls": indexed}))
        out += self._delta(b"{}", data.get("finish_reason") or "stop")
        if self.include_usage:
            out += self.head + b"[]" + b',"usage":' + orjson.dumps(data.get("usage")) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, err: OllangError) -> bytes:
        # The openai SDK raises an APIError for a chunk holding "error".
        return b"data: " + orjson.dumps(error_body(err)) + b"\n\n"


# -- errors -------------------------------------------------------------------------------
def _status(err: OllangError) -> int:
    if isinstance(err, (ValidationFailedError, ContextWindowError)) or err.http_status == 422:
        return 400  # OpenAI answers every invalid request with a 400
    return err.http_status


def _kind(err: OllangError, status: int) -> tuple[str, str | None]:
    """OpenAI's error ``type`` and ``code`` for an ollang error."""
    if isinstance(err, UnauthorizedError):
        return "invalid_request_error", "invalid_api_key"
    if isinstance(err, ModelNotFoundError):
        return "invalid_request_error", "model_not_found"
    if isinstance(err, SessionNotFoundError):
        return "invalid_request_error", "session_not_found"
    if isinstance(err, ContextWindowError):
        return "invalid_request_error", "context_length_exceeded"
    if isinstance(err, OllamaTimeoutError):
        return "server_error", "timeout"
    if isinstance(err, OllamaUnavailableError):
        return "server_error", "service_unavailable"
    if isinstance(err, OllamaResponseError):
        return "server_error", "upstream_error"
    if status == 429:  # ollang's own limits and queue (a host's 429 is upstream_error)
        return "rate_limit_exceeded", "rate_limit_exceeded"
    if status == 403:
        return "permission_error", None
    if status == 404:
        return "invalid_request_error", "not_found"
    if status == 413:
        return "invalid_request_error", "request_too_large"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def error_body(err: OllangError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code", "hint"}}``."""
    kind, code = _kind(err, _status(err))
    body: dict[str, Any] = {
        "message": err.message,
        "type": kind,
        "param": None,
        "code": code,
        "hint": err.hint,
    }
    fields = getattr(err, "fields", None)
    if fields:
        body["param"] = fields[0]["field"]
    return {"error": body}


def error_response(err: OllangError) -> Response:
    """An error as OpenAI answers it (status and body)."""
    headers = {"WWW-Authenticate": "Bearer"} if err.http_status == 401 else {}
    headers.update(getattr(err, "headers", None) or {})  # a 429's Retry-After, x-ratelimit-*
    return JSONResponse(error_body(err), status_code=_status(err), headers=headers)


def now() -> int:
    """Epoch seconds (``created``)."""
    return int(time.time())
