"""One chat turn as it streams: what arrived, when, and what it cost.

:class:`TurnRecorder` watches the model's message chunks, keeps the answer and
the reasoning apart, measures time to first token, and produces the reply
message to store (at any moment, with a status) and the final
:class:`TurnResult` that callers read after a stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessageChunk, ToolCall
from langchain_core.messages.ai import UsageMetadata

from ollang.turns.context import ContextBudget

__all__ = [
    "ChatEvent",
    "StreamDelta",
    "Timings",
    "TurnRecorder",
    "TurnResult",
    "Usage",
]

Status = Literal["complete", "interrupted", "error"]


#: A batch of a streaming reply, already read: what a recorder takes from any host, made
#: from a host's stream lines by :func:`ollang.transport.translate.read_lines` (this layer
#: knows no wire format). In order:
#:
#: * ``text``: the answer text of the batch, joined;
#: * ``reasoning``: its reasoning text, joined;
#: * ``tool_calls``: tool calls it completed, as LangChain's ``ToolCall`` dicts;
#: * ``metadata``: the final statistics for ``response_metadata`` (the last batch only);
#: * ``usage``: token counts as ``usage_metadata`` (the last batch only);
#: * ``pieces``: how many stream pieces (lines) the batch held.
#:
#: A plain tuple: one is made per batch on the server's hot path, and a named tuple's
#: constructor costs more there than reading the batch does.
StreamDelta = tuple[str, str, Sequence[ToolCall], dict[str, Any] | None, UsageMetadata | None, int]


@dataclass(frozen=True)
class Usage:
    """Token counts of one turn as the model server reported them (``None`` if not)."""

    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Timings:
    """Measured timings of one turn.

    Attributes:
        ttft_s: Seconds from sending the request to the first token (answer or reasoning).
        total_s: Seconds from sending the request to the end of the stream.
        tokens_per_s: Generation speed; from the server's own ``eval_count`` /
            ``eval_duration`` when reported, else measured here.
    """

    ttft_s: float | None = None
    total_s: float | None = None
    tokens_per_s: float | None = None


@dataclass
class TurnResult:
    """Everything known about a finished (or stopped) turn."""

    session_id: str
    message_id: str
    text: str
    reasoning: str
    status: Status
    model: str | None
    usage: Usage
    timings: Timings
    done_reason: str | None
    context: ContextBudget | None
    message: AIMessage
    truncated: bool = False


@dataclass
class ChatEvent:
    """An item of :meth:`ChatChain.stream_turn`: a token, a piece of reasoning, or the end."""

    type: Literal["token", "reasoning", "done"]
    text: str = ""
    result: TurnResult | None = None


@dataclass
class TurnRecorder:
    """Accumulates one reply as chunks arrive; cheap per chunk (no copies, no I/O)."""

    session_id: str
    model_name: str | None = None
    context: ContextBudget | None = None
    flush_interval: float = 1.0
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    ended_at: float | None = None
    last_flush: float = field(default_factory=time.monotonic)
    _text: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _pending_reasoning: list[str] = field(default_factory=list)
    _metadata: dict[str, Any] = field(default_factory=dict)
    _usage: dict[str, Any] | None = None
    _tool_calls: list[ToolCall] = field(default_factory=list)
    _chunks: int = 0

    # -- fed by the pipeline -------------------------------------------------
    def observe(self, chunk: BaseMessageChunk) -> str:
        """Record one message chunk from the model; returns its answer text."""
        self._chunks += 1
        kwargs = chunk.additional_kwargs
        reasoning = kwargs.get("reasoning_content") if kwargs else None
        if reasoning:
            self._reasoning.append(reasoning)
            self._pending_reasoning.append(reasoning)
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        # What StrOutputParser returns for a message chunk.
        text = chunk.content if isinstance(chunk.content, str) else chunk.text
        if text:
            self._text.append(text)
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        if chunk.response_metadata:
            self._metadata.update(chunk.response_metadata)
        usage = getattr(chunk, "usage_metadata", None)
        if usage:
            self._usage = dict(usage)
        return text

    def observe_delta(self, delta: StreamDelta) -> tuple[str, str]:
        """Record a batch of the reply (the server's lean path): text, reasoning, tool calls,
        and with the last batch the statistics and token counts.

        The stored message ends up as the one ``ChatOllama`` would have produced.

        Returns:
            The batch's answer text and reasoning text.
        """
        text, reasoning, calls, metadata, usage, pieces = delta
        self._chunks += pieces
        if calls:
            self._tool_calls.extend(calls)
        if metadata:
            self._metadata.update(metadata)
        if usage is not None:
            self._usage = dict(usage)
        if (text or reasoning or self._tool_calls) and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if text:
            self._text.append(text)
        if reasoning:
            self._reasoning.append(reasoning)
        return text, reasoning

    def set_metadata(self, **values: Any) -> None:
        """Add ``response_metadata`` entries to the stored reply (e.g. the host it came from)."""
        self._metadata.update(values)

    def drain_reasoning(self) -> Iterator[str]:
        """Reasoning pieces received since the last call."""
        if self._pending_reasoning:
            pending, self._pending_reasoning = self._pending_reasoning, []
            yield from pending

    # -- read by the chain ---------------------------------------------------
    @property
    def received_anything(self) -> bool:
        """Whether any answer or reasoning text arrived."""
        return bool(self._text or self._reasoning or self._tool_calls)

    @property
    def input_tokens(self) -> int | None:
        """Prompt tokens, as the model server reported them (``None`` before the end)."""
        value = self._metadata.get("prompt_eval_count")
        if value is None and self._usage:
            value = self._usage.get("input_tokens")
        return value if isinstance(value, int) else None

    @property
    def output_tokens(self) -> int | None:
        """Tokens generated, as the model server reported them (``None`` before the end)."""
        value = self._metadata.get("eval_count")
        if value is None and self._usage:
            value = self._usage.get("output_tokens")
        return value if isinstance(value, int) else None

    def flush_due(self) -> bool:
        """True at most once per ``flush_interval`` while text is arriving."""
        now = time.monotonic()
        if now - self.last_flush >= self.flush_interval:
            self.last_flush = now
            return True
        return False

    @property
    def text(self) -> str:
        """The answer so far."""
        return "".join(self._text)

    def message(self, status: Status) -> AIMessage:
        """The reply as a message to store, with ``status``; same id every time."""
        metadata = dict(self._metadata)
        metadata.setdefault("model_name", self.model_name)
        if metadata.get("model_name") is None:
            metadata.pop("model_name")
        metadata["ollang_status"] = status
        additional: dict[str, Any] = {}
        if self._reasoning:
            additional["reasoning_content"] = "".join(self._reasoning)
        msg = AIMessage(
            content=self.text,
            id=self.message_id,
            additional_kwargs=additional,
            response_metadata=metadata,
            tool_calls=list(self._tool_calls),
        )
        if self._usage:
            msg.usage_metadata = self._usage  # type: ignore[assignment]
        return msg

    def finish(self, status: Status) -> TurnResult:
        """Stop the clock and summarise the turn."""
        self.ended_at = time.perf_counter()
        meta = self._metadata
        usage = self._usage or {}
        input_tokens = meta.get("prompt_eval_count", usage.get("input_tokens"))
        output_tokens = meta.get("eval_count", usage.get("output_tokens"))
        ttft = self.first_token_at - self.started if self.first_token_at is not None else None
        total = self.ended_at - self.started
        tps: float | None = None
        eval_ns = meta.get("eval_duration")
        if output_tokens and eval_ns:
            tps = output_tokens / (eval_ns / 1e9)
        elif self.first_token_at is not None:
            generated = output_tokens or self._chunks
            span = self.ended_at - self.first_token_at
            if generated and span > 0:
                tps = generated / span
        truncated = bool(
            self.context is not None
            and isinstance(input_tokens, int)
            and input_tokens >= self.context.window
        )
        return TurnResult(
            session_id=self.session_id,
            message_id=self.message_id,
            text=self.text,
            reasoning="".join(self._reasoning),
            status=status,
            model=meta.get("model_name") or meta.get("model") or self.model_name,
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            timings=Timings(ttft_s=ttft, total_s=total, tokens_per_s=tps),
            done_reason=meta.get("done_reason"),
            context=self.context,
            truncated=truncated,
            message=self.message(status),
        )
