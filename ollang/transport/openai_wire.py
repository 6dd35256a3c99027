"""The transport of the ``openai`` kind of host: an OpenAI-compatible engine's API (vLLM,
SGLang, llama.cpp's server, LM Studio, TGI) on the hot path's own HTTP client.

:class:`OpenAIWire` is :class:`~ollang.transport.wire.OllamaWire`'s keep-alive HTTP/1.1
pool with the engine's framing: requests carry the host's key as ``Authorization:
Bearer``, ``POST /chat/completions`` streams Server-Sent Events (``data: {...}`` up to
``data: [DONE]``), and an error status is read with its ``Retry-After``. Its
:meth:`~OpenAIWire.chat` takes the same ``/api/chat`` body and yields the same batches of
Ollama stream lines as ``OllamaWire.stream("/api/chat", ...)`` does, translated by
:mod:`ollang.transport.openai_translate`, so the server's turn engine runs unchanged on
either kind. Errors are ollang's, made by :mod:`ollang.transport.errors` (worded for an
engine): a refused key, a 404 model, a 429 with its wait, a 5xx, a stream cut before
the engine said why it ended.

What the engine cannot be told (``num_ctx``, ``keep_alive``, ``think``, Ollama-only
options) is left out of the request and said once per option in the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

import orjson

from ollang.errors import ConnectionCutError, OllangError
from ollang.transport.errors import status_error
from ollang.transport.openai_client import auth_headers, engine_models
from ollang.transport.openai_translate import ChatStream, EngineModel, chat_request
from ollang.transport.translate import Line
from ollang.transport.wire import OllamaWire, _Connection

__all__ = ["EventFrames", "OpenAIWire", "say_unmapped"]

log = logging.getLogger("ollang.transport")


#: What each engine was not told, said once per (host, option) in this process.
_SAID: set[tuple[str, str]] = set()


def say_unmapped(url: str, names: Iterable[str]) -> None:
    """Say once per host and option, in the log, what an engine was not told (an option
    it has no counterpart for: ``num_ctx``, ``keep_alive``...)."""
    for name in names:
        if (url, name) not in _SAID:
            _SAID.add((url, name))
            log.warning(
                "%s (an OpenAI-compatible engine) has no %r option: not sent (said once per host)",
                url,
                name,
            )


class EventFrames:
    """Server-Sent Events read from the bytes of a response body, as they arrive.

    Each event's ``data`` lines are joined and parsed as JSON; ``data: [DONE]`` ends the
    stream (:attr:`done`); comments (``:``), ``event:``, ``id:`` and ``retry:`` lines say
    nothing here. Lines may end in ``\n`` or ``\r\n`` and pieces may split anywhere.
    """

    def __init__(self) -> None:
        self.done = False
        self.error: OllangError | None = None  # an engine says errors by status, not here
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> list[dict[str, Any]]:
        """The events a piece of the body completes, in order (none after ``[DONE]``)."""
        if self.done:
            return []
        *complete, self._pending = (self._pending + piece).split(b"\n")
        batch: list[dict[str, Any]] = []
        for raw in complete:
            line = raw.rstrip(b"\r")
            if line.startswith(b"data:"):
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and self._data:  # a blank line ends an event
                payload, self._data = b"\n".join(self._data), []
                if payload.strip() == b"[DONE]":
                    self.done = True
                    break
                batch.append(orjson.loads(payload))
        return batch

    def end(self) -> list[dict[str, Any]]:
        """The body ended: a last event that lacked its blank line, if any."""
        if self.done:
            return []
        tail = self._pending.rstrip(b"\r")
        if tail.startswith(b"data:"):
            self._data.append(tail[6:] if tail[5:6] == b" " else tail[5:])
        payload = b"\n".join(self._data).strip()
        self._pending, self._data = b"", []
        if not payload or payload == b"[DONE]":
            self.done = self.done or payload == b"[DONE]"
            return []
        return [orjson.loads(payload)]


class _HeadedConnection(_Connection):
    """A connection that also keeps the response's ``Retry-After`` header (a 429's wait)."""

    def __init__(self) -> None:
        super().__init__()
        self.retry_after: str | None = None

    def start(self, request: bytes) -> None:
        """Send a request, forgetting the last response's header."""
        self.retry_after = None
        super().start(request)

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools' callback, once per response header."""
        if name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")


class OpenAIWire(OllamaWire):
    """One OpenAI-compatible engine's API (see the module docstring).

    Args:
        url: The base URL where ``/models`` and ``/chat/completions`` live
            (``http://gpu2:8000/v1``).
        key: The engine's API key, sent as ``Authorization: Bearer`` (never shown).
        connect_timeout: Seconds to connect (a missing engine fails fast).
        read_timeout: Seconds to wait for the next piece of an answer.
    """

    kind = "openai"
    _protocol = _HeadedConnection

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
    ) -> None:
        super().__init__(
            url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            headers=auth_headers(key),
        )

    def _status_error(self, conn: _Connection, body: bytes, model: str | None) -> OllangError:
        """An error answer as ours, with a 429's ``Retry-After``."""
        return status_error(
            conn.status,
            body.decode("utf-8", "replace"),
            model,
            url=self.url,
            kind=self.kind,
            retry_after=getattr(conn, "retry_after", None),
        )

    # -- models -------------------------------------------------------------------------
    async def models(self, *, timeout: float | None = None) -> list[EngineModel]:
        """The engine's models (``GET /models``): its health check.

        Raises:
            OllangError: down, a refused key, or an answer that is not a model list.
        """
        return engine_models(self.url, await self.get_json("/models", timeout=timeout))

    # -- chat ---------------------------------------------------------------------------

    async def chat(self, body: Mapping[str, Any]) -> AsyncGenerator[list[Line], None]:
        """An ``/api/chat`` body sent as ``POST /chat/completions``, answered in batches
        of Ollama stream lines (the last batch ends with the ``done`` line).

        Raises:
            OllangError: before or during the stream; a stream that ends before the
                engine said why (no ``finish_reason``) is a cut connection.
        """
        request, unmapped = chat_request(body)
        if unmapped:
            say_unmapped(self.url, unmapped)
        reader = ChatStream(str(body.get("model") or ""))
        events = self.events("/chat/completions", request)
        try:
            async for batch in events:
                lines = reader.read(batch)
                if lines:
                    yield lines
        finally:
            await events.aclose()
        if not reader.finished:
            raise ConnectionCutError(self.url, "the stream ended unfinished", kind=self.kind)
        yield reader.end()

    def events(
        self, path: str, body: Mapping[str, Any]
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """``POST path`` and yield its Server-Sent Events' ``data``, parsed, in the batches
        they arrived in, up to ``data: [DONE]``. Closing the iterator closes the
        connection (the engine stops generating).

        Raises:
            OllangError: before or during the stream.
        """
        return self._framed(path, body, EventFrames())
