"""An OpenAI-compatible engine's JSON and Ollama's, translated both ways: the one place that
does it for the ``openai`` kind of host (vLLM, SGLang, llama.cpp's server, LM Studio, TGI).

Everything above the transport speaks Ollama's ``/api/chat``: the server's turn engine
builds an ``/api/chat`` body, and reads the answer as Ollama's stream lines
(:func:`~ollang.transport.translate.read_lines`). An ``openai`` host is the same to it:

* **request**: :func:`chat_request` turns the body into ``POST /chat/completions``'s
  (streamed, with usage), messages by :func:`openai_messages` (images as data-URL
  ``image_url`` parts, tool calls with ids and their results paired to them), options by
  name (``num_predict`` is ``max_tokens``...), ``format`` as ``response_format``; it
  returns the names it could not map (``num_ctx``, ``keep_alive``...), for the host to
  say once in its log;
* **answer**: :class:`ChatStream` reads the stream's events (``chat.completion.chunk``)
  as Ollama's lines: text as ``message.content``, ``reasoning_content``/``reasoning``
  as ``message.thinking``, tool calls assembled from their fragments, and a final
  ``done`` line with ``done_reason``, the token counts and the durations;
* **models**: :func:`model_list` reads ``GET /models`` (``{"data": [{"id",
  "max_model_len"?}]}``), refusing any other shape.

Only the JSON's shape is translated here; nothing is sent or received.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ollang.errors import OllamaResponseError
from ollang.turns.images import image_kind

# Not imported from ollang.transport.translate: that module brings LangChain, and the
# CLI's checks of an engine read its model list from here.
#: A JSON object of Ollama's API (a stream line).
Line = dict[str, Any]


def now_iso() -> str:
    """The time now as Ollama writes ``created_at``."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


__all__ = [
    "MAPPED_OPTIONS",
    "ChatStream",
    "EngineModel",
    "chat_request",
    "data_url",
    "engine_options",
    "model_list",
    "openai_messages",
    "response_format",
]

#: Ollama's ``options`` an OpenAI-compatible engine takes, by the name it takes them under.
#: ``top_k`` and ``min_p`` are not OpenAI's own, but vLLM, SGLang, llama.cpp's server and
#: LM Studio all read them.
MAPPED_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
#: Top-level ``/api/chat`` fields with no OpenAI counterpart (said, not sent).
_UNMAPPED_FIELDS = ("keep_alive", "think")
#: OpenAI's finish reasons as Ollama's ``done_reason`` (anything else ends as ``stop``).
_DONE_REASONS = {"length": "length"}


# -- request ------------------------------------------------------------------------------
def response_format(fmt: Any) -> dict[str, Any] | None:
    """Ollama's ``format`` as OpenAI's ``response_format``: ``"json"`` is a JSON object,
    a JSON schema is ``json_schema`` (named ``response``); anything else is none."""
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, Mapping):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": dict(fmt)}}
    return None


def data_url(image: str) -> str:
    """A base64 image (Ollama's ``images`` entry) as a ``data:`` URL, its type read from
    its first bytes (PNG when they say nothing); a data URL is kept as it is."""
    if image.startswith("data:"):
        return image
    payload = "".join(image.split())
    head = payload[:24]
    try:
        kind = image_kind(base64.b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        kind = None
    return f"data:{kind or 'image/png'};base64,{payload}"


def _arguments_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value or {})


def openai_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``/api/chat`` messages as ``/chat/completions`` messages.

    A user message's ``images`` become ``image_url`` parts after its text. An assistant's
    tool calls get ids (their own, else ``call_<message>_<n>``), and each tool result is
    paired with the first unanswered call of its ``tool_name`` (else the first one
    unanswered): Ollama's messages carry no ids, OpenAI's require them. Reasoning
    (``thinking``) is not sent back, as to Ollama.
    """
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not answered yet
    for index, message in enumerate(messages):
        role = str(message.get("role") or "user")
        content = str(message.get("content") or "")
        entry: dict[str, Any]
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for n, call in enumerate(message["tool_calls"]):
                function = call.get("function") or {}
                call_id = str(call.get("id") or f"call_{index}_{n}")
                name = str(function.get("name", ""))
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": name,
                            "arguments": _arguments_text(function.get("arguments")),
                        },
                    }
                )
                pending.append((call_id, name))
            entry = {"role": "assistant", "content": content or None, "tool_calls": calls}
        elif role == "tool":
            call_id = message.get("tool_call_id") or _answer_to(pending, message.get("tool_name"))
            entry = {"role": "tool", "content": content, "tool_call_id": str(call_id)}
        elif role == "user" and message.get("images"):
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
            parts += [
                {"type": "image_url", "image_url": {"url": data_url(str(image))}}
                for image in message["images"]
            ]
            entry = {"role": "user", "content": parts}
        else:
            entry = {"role": role, "content": content}
        out.append(entry)
    return out


def _answer_to(pending: list[tuple[str, str]], name: Any) -> str:
    """The id of the call a tool result answers (removed from ``pending``)."""
    if not pending:
        return "call_0"
    found = next((i for i, (_, called) in enumerate(pending) if name and called == name), 0)
    return pending.pop(found)[0]


def engine_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Ollama's ``options`` as an engine's request fields (:data:`MAPPED_OPTIONS`), and
    the names of those it has no counterpart for. ``num_predict`` below 1 (Ollama's
    "until the model stops") sends no ``max_tokens``; ``None`` values are left out."""
    params: dict[str, Any] = {}
    unmapped: list[str] = []
    for name, value in options.items():
        target = MAPPED_OPTIONS.get(name)
        if value is None:
            continue
        if target is None:
            unmapped.append(name)
        elif name == "num_predict":
            if isinstance(value, int) and value > 0:
                params[target] = value
        else:
            params[target] = [value] if name == "stop" and isinstance(value, str) else value
    return params, unmapped


def chat_request(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An ``/api/chat`` body as a streamed ``/chat/completions`` body, and the names of
    the options and fields that have no OpenAI counterpart (not sent; see
    :func:`engine_options`)."""
    request: dict[str, Any] = {
        "model": body.get("model"),
        "messages": openai_messages(body.get("messages") or []),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    params, unmapped = engine_options(body.get("options") or {})
    request.update(params)
    wanted = response_format(body.get("format"))
    if wanted is not None:
        request["response_format"] = wanted
    if body.get("tools"):
        request["tools"] = list(body["tools"])
    unmapped += [name for name in _UNMAPPED_FIELDS if body.get(name) is not None]
    return request, unmapped


# -- answer -------------------------------------------------------------------------------
def _error_message(error: Any) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message") or error)
    return str(error)


@dataclass
class ChatStream:
    """One answer's stream events read as Ollama's ``/api/chat`` stream lines.

    Feed each batch of events to :meth:`read`; when the stream has ended, :meth:`end`
    gives the last lines (the assembled tool calls, then the ``done`` line, its token
    counts from the engine's usage or, when it sends none, the pieces counted). Events that
    carry nothing (the opening ``role`` delta) give no line, so the first line is the
    first token: until then, a failing host can still fail over.

    Attributes:
        model: The model name the lines carry.
    """

    model: str
    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    _finish: str | None = None
    _usage: Mapping[str, Any] | None = None
    _started: int = field(default_factory=time.perf_counter_ns)
    _first: int | None = None
    _pieces: int = 0

    @property
    def finished(self) -> bool:
        """Whether the engine said why the answer ended (a ``finish_reason``)."""
        return self._finish is not None

    def read(self, events: Sequence[Mapping[str, Any]]) -> list[Line]:
        """A batch of events as Ollama's lines (text, reasoning), in order.

        Raises:
            OllamaResponseError: an ``{"error": ...}`` event (the engine's in-stream
                error, as Ollama's is: status ``-1``).
        """
        lines: list[Line] = []
        stamp: str | None = None
        for event in events:
            if "error" in event:
                raise OllamaResponseError(_error_message(event["error"]), -1, kind="openai")
            if event.get("usage"):
                self._usage = event["usage"]
            for choice in event.get("choices") or ():
                if choice.get("index", 0):
                    continue  # one answer per request (n=1)
                delta = choice.get("delta") or {}
                message: dict[str, Any] = {}
                if delta.get("content"):
                    message["content"] = delta["content"]
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    message["thinking"] = reasoning
                for call in delta.get("tool_calls") or ():
                    self._add_call(call)
                if choice.get("finish_reason"):
                    self._finish = str(choice["finish_reason"])
                if message:
                    self._pieces += 1
                    stamp = stamp or now_iso()
                    if self._first is None:
                        self._first = time.perf_counter_ns()
                    lines.append(
                        {
                            "model": self.model,
                            "created_at": stamp,
                            "message": {"role": "assistant", "content": "", **message},
                            "done": False,
                        }
                    )
        return lines

    def _add_call(self, fragment: Mapping[str, Any]) -> None:
        """One piece of a streamed tool call: its id and name come first, its arguments
        in pieces after (all keyed by ``index``)."""
        call = self._calls.setdefault(
            int(fragment.get("index") or 0), {"id": None, "name": "", "arguments": ""}
        )
        call["id"] = call["id"] or fragment.get("id")
        function = fragment.get("function") or {}
        if function.get("name"):
            call["name"] = call["name"] or function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call["arguments"] += arguments
        elif isinstance(arguments, Mapping):  # some engines send the object whole
            call["arguments"] = json.dumps(arguments)

    def end(self) -> list[Line]:
        """The last lines: the tool calls (if any), then Ollama's ``done`` line."""
        now = time.perf_counter_ns()
        first = self._first or now
        lines: list[Line] = []
        stamp = now_iso()
        if self._calls:
            calls = [self._ollama_call(n, self._calls[n]) for n in sorted(self._calls)]
            if self._first is None:
                self._first = first = now
            lines.append(
                {
                    "model": self.model,
                    "created_at": stamp,
                    "message": {"role": "assistant", "content": "", "tool_calls": calls},
                    "done": False,
                }
            )
        done: Line = {
            "model": self.model,
            "created_at": stamp,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": _DONE_REASONS.get(self._finish or "stop", "stop"),
            "total_duration": now - self._started,
            "prompt_eval_duration": first - self._started,
            "eval_duration": now - first,
        }
        usage = self._usage or {}
        if isinstance(usage.get("prompt_tokens"), int):
            done["prompt_eval_count"] = usage["prompt_tokens"]
        if isinstance(usage.get("completion_tokens"), int):
            done["eval_count"] = usage["completion_tokens"]
        elif self._pieces:  # no usage (llama-cpp-python's server): a token per piece
            done["eval_count"] = self._pieces
        lines.append(done)
        return lines

    @staticmethod
    def _ollama_call(index: int, call: Mapping[str, Any]) -> Line:
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = {}
        function = {
            "index": index,
            "name": call["name"],
            "arguments": arguments if isinstance(arguments, dict) else {},
        }
        return {"id": call["id"], "function": function} if call["id"] else {"function": function}


# -- models -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineModel:
    """A model an engine serves (``GET /models``).

    Attributes:
        id: Its name, as requests must give it.
        context: Its context window (``max_model_len``, which vLLM and SGLang report),
            or ``None``.
    """

    id: str
    context: int | None = None


def model_list(answer: Mapping[str, Any]) -> list[EngineModel]:
    """``GET /models``'s answer: ``{"data": [{"id": ..., "max_model_len"?: N}, ...]}``.

    Raises:
        ValueError: any other shape (says what came instead).
    """
    data = answer.get("data")
    if not isinstance(data, list) or not all(
        isinstance(entry, Mapping) and isinstance(entry.get("id"), str) and entry["id"]
        for entry in data
    ):
        keys = ", ".join(sorted(map(str, answer)))[:80] or "nothing"
        raise ValueError(f'expected {{"data": [{{"id": ...}}]}}, got {{{keys}}}')
    models = []
    for entry in data:
        length = entry.get("max_model_len")
        context = length if isinstance(length, int) and length > 0 else None
        models.append(EngineModel(entry["id"], context))
    return models
