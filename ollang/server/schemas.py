"""Typed request and response bodies: what /docs shows and what requests are checked against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ollang.memory.ids import SESSION_ID_HINT, SESSION_ID_PATTERN, is_valid_session_id

__all__ = [
    "MODEL_NAME_PATTERN",
    "PULL_NAME_PATTERN",
    "SESSION_ID_PATTERN",
    "ChatOptions",
    "ChatRequest",
    "ChatResponse",
    "ErrorResponse",
    "GenerateRequest",
    "GenerateResponse",
    "Health",
    "HostStatus",
    "ModelDetailsOut",
    "ModelInfo",
    "ModelList",
    "OllamaStatus",
    "PullProgressOut",
    "PullRequest",
    "SessionDetail",
    "SessionList",
    "SessionMessage",
    "SessionPatch",
    "SessionSummary",
    "StreamDone",
    "Timings",
    "Usage",
    "check_session_id",
]

#: Model names as Ollama spells them (``llama3``, ``qwen3:0.6b``, ``user/model:tag``).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*(/[A-Za-z0-9][A-Za-z0-9._:-]*)*$"
#: Names the server may pull: ``[namespace/]model[:tag]`` only, so the registry is
#: always Ollama's default one (a host part such as ``example.com/x/y`` is refused).
PULL_NAME_PATTERN = (
    r"^[a-z0-9][a-z0-9._-]{0,99}(/[a-z0-9][a-z0-9._-]{0,99})?(:[A-Za-z0-9._-]{1,100})?$"
)


def check_session_id(value: str) -> str:
    """``value`` if it is a valid session id; else ``ValueError`` (a 422)."""
    if not is_valid_session_id(value):
        raise ValueError(f"invalid session id: {SESSION_ID_HINT} (and no '..')")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatOptions(BaseModel):
    """Ollama model options for one request (all optional)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0, le=100, description="Sampling temperature.")
    top_p: float | None = Field(None, ge=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=0, le=100_000, description="Top-k sampling.")
    seed: int | None = Field(None, description="Random seed, for reproducible answers.")
    num_ctx: int | None = Field(None, ge=1, le=1_048_576, description="Context size in tokens.")
    num_predict: int | None = Field(
        None, ge=-2, le=1_048_576, description="Most tokens to generate (-1: no limit)."
    )
    stop: list[str] | str | None = Field(None, description="Stop sequences.", max_length=16)
    keep_alive: str | int | None = Field(
        None, description="How long Ollama keeps the model loaded (`5m`, seconds)."
    )
    format: Literal["json"] | dict[str, Any] | None = Field(
        None, description='`"json"` or a JSON schema the answer must follow.'
    )
    think: bool | Literal["low", "medium", "high"] | None = Field(
        None, description="Reasoning models: stream their thinking separately."
    )
    repeat_penalty: float | None = Field(None, ge=0, le=100, description="Repetition penalty.")

    def as_kwargs(self) -> dict[str, Any]:
        """The options that were set, for :func:`chains.make_chat_model`."""
        return self.model_dump(exclude_none=True)


class _Prompted(_Model):
    model: str | None = Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        max_length=200,
        description="An installed Ollama model; default: the server's default model.",
        examples=["mistral"],
    )
    system: str | None = Field(None, description="System prompt for this request.")
    options: ChatOptions | None = Field(None, description="Ollama model options.")
    images: list[str] | None = Field(
        None,
        max_length=8,
        description="Images for the model (base64, or data: URLs): PNG, JPEG, GIF or WebP, "
        "at most 10 MiB each, at most 8.",
    )


class ChatRequest(_Prompted):
    """One chat turn. Also accepted as query parameters (``POST /chat?message=Hello``)."""

    message: str = Field(..., min_length=1, description="The user's message.", examples=["Hello"])
    session_id: str | None = Field(
        None,
        pattern=SESSION_ID_PATTERN,
        description="Continue this session (with its model, system prompt and options unless "
        "given here); omitted: a new session is created.",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        return value

    @field_validator("session_id")
    @classmethod
    def _session(cls, value: str | None) -> str | None:
        return None if value is None else check_session_id(value)


class GenerateRequest(_Prompted):
    """One-shot generation, no memory."""

    prompt: str = Field(
        ..., min_length=1, description="The prompt.", examples=["Why is the sky blue?"]
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value


class Usage(BaseModel):
    """Token counts as Ollama reported them."""

    input_tokens: int | None = Field(None, description="Prompt tokens.")
    output_tokens: int | None = Field(None, description="Generated tokens.")


class Timings(BaseModel):
    """Measured by the server."""

    ttft_s: float | None = Field(None, description="Seconds to the first token.")
    total_s: float | None = Field(None, description="Seconds for the whole answer.")
    tokens_per_s: float | None = Field(None, description="Generation speed.")


class StreamDone(BaseModel):
    """The final event of a stream: how the answer ended and what it cost."""

    model: str | None
    session_id: str | None = Field(None, description="The session (chat only).")
    message_id: str | None = Field(None, description="The stored reply's id (chat only).")
    status: Literal["complete", "interrupted", "error"] = "complete"
    done_reason: str | None = Field(None, description="Ollama's reason: stop, length...")
    usage: Usage
    timings: Timings


class ChatResponse(StreamDone):
    """The answer to ``POST /chat``."""

    response: str = Field(..., description="The model's answer.")
    reasoning: str | None = Field(None, description="Reasoning text, when the model thinks.")


class GenerateResponse(StreamDone):
    """The answer to ``POST /generate``."""

    response: str = Field(..., description="The model's answer.")
    reasoning: str | None = Field(None, description="Reasoning text, when the model thinks.")


class ModelDetailsOut(BaseModel):
    """Details Ollama lists for a model."""

    family: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    context_length: int | None = None


class ModelInfo(BaseModel):
    """An installed model this server lets clients use."""

    name: str
    size: int = Field(..., description="Bytes on disk.")
    size_gb: float = Field(..., description="GB (10^9 bytes, as Ollama shows), one decimal.")
    modified_at: str | None = None
    digest: str | None = None
    backend: str = Field("ollama", description="ollama, or embedded (in-process).")
    details: ModelDetailsOut
    hosts: list[str] = Field(default_factory=list, description="The hosts that have it.")


class ModelList(BaseModel):
    """``GET /models``."""

    models: list[ModelInfo]
    default_model: str | None = Field(
        None, description="The model a request that names none gets (the page preselects it)."
    )


class PullRequest(_Model):
    """``POST /models/pull``."""

    model: str = Field(..., pattern=PULL_NAME_PATTERN, examples=["llama3"])
    host: str | None = Field(
        None, max_length=300, description="One of the server's Ollama hosts; default: all."
    )


class PullProgressOut(BaseModel):
    """One NDJSON line of ``POST /models/pull`` (the last one may be ``{"error", "hint"}``)."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class OllamaStatus(BaseModel):
    """Whether Ollama answers."""

    reachable: bool
    url: str
    version: str | None = None
    error: str | None = None


class HostStatus(BaseModel):
    """One model host (an Ollama server, an OpenAI-compatible engine, or ``embedded``)
    as last checked."""

    url: str = Field(..., description="Its base URL (never its key), or `embedded`.")
    kind: Literal["ollama", "openai", "embedded"] = Field(
        "ollama", description="The API it speaks."
    )
    up: bool
    checked: bool = Field(..., description="Whether it has been checked yet.")
    version: str | None = None
    error: str | None = Field(None, description="Why it is down.")
    models: list[str] = Field(default_factory=list)
    loaded: list[str] = Field(default_factory=list, description="Models in memory now.")
    in_flight: int
    priority: int
    weight: float
    max_concurrent: int | None = None
    context: int | None = Field(
        None, description="An openai host's ctx= setting: the window its models run with."
    )


class Health(BaseModel):
    """``GET /health``: always 200 while the server runs."""

    status: Literal["ok"] = "ok"
    ollama: OllamaStatus = Field(..., description="The first Ollama host (as before hosts).")
    hosts: list[HostStatus] = Field(default_factory=list, description="Every host.")


class SessionSummary(BaseModel):
    """A stored conversation, without its messages."""

    id: str
    title: str | None
    model: str | None
    system: str | None = Field(None, description="The session's system prompt.")
    options: dict[str, Any] | None = Field(None, description="The session's model options.")
    created: float = Field(..., description="Epoch seconds.")
    updated: float = Field(..., description="Epoch seconds.")
    message_count: int


class SessionPatch(_Model):
    """``PATCH /sessions/{id}``: rename a session, or retitle it."""

    id: str | None = Field(None, pattern=SESSION_ID_PATTERN, description="A new id.")
    title: str | None = Field(None, min_length=1, max_length=200, description="A new title.")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else check_session_id(value)


class SessionList(BaseModel):
    """``GET /sessions``: most recently updated first."""

    sessions: list[SessionSummary]


class SessionMessage(BaseModel):
    """One stored message."""

    id: str
    role: str = Field(..., description="human, ai, system or tool.")
    content: str
    reasoning: str | None = None
    status: Literal["complete", "interrupted", "error"]
    created: float | None
    model: str | None = None
    images: list[str] = Field(default_factory=list, description="Attached images, as data: URLs.")


class SessionDetail(BaseModel):
    """``GET /sessions/{id}``."""

    session: SessionSummary
    messages: list[SessionMessage]


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: str = Field(..., description="What went wrong.")
    hint: str = Field(..., description="What to do about it.")
    fields: list[dict[str, str]] | None = Field(None, description="Invalid fields, for 422.")
