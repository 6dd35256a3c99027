"""Streaming answers as plain text, SSE or NDJSON, with disconnects that cancel upstream.

Routes turn what they stream into batches of :class:`StreamItem` values (tokens,
reasoning, pull progress, the final summary); a :class:`StreamFormat` encodes them;
:class:`LiveStream` sends each batch as one write (tokens that queued up upstream leave
together, one event each).

:class:`LiveStream` differs from Starlette's ``StreamingResponse`` in two ways
that matter here:

* **Errors before the first item are real HTTP errors.** It waits (briefly) for
  the first item before sending headers, so "Ollama is down" or "model not
  found" arrive as a 503/404 JSON answer, not as a 200 stream holding an error.
  If nothing arrives within :data:`HEADERS_AFTER` seconds (a model loading), the
  headers go out anyway and a later error becomes an in-stream error.
* **A disconnect cancels the producer within milliseconds**, whatever the ASGI
  spec version the server reports: the producer task is cancelled, so the chat
  chain's model stream (and its HTTP request to Ollama) is closed and the
  partial reply is stored as ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sse_starlette import ServerSentEvent
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from ollang.errors import OllangError
from ollang.server.errors import error_body, to_ollang_error

__all__ = [
    "FORMATS",
    "HEADERS_AFTER",
    "ClientDisconnected",
    "LiveStream",
    "StreamFormat",
    "StreamItem",
    "cancel_on_disconnect",
    "choose_format",
]

log = logging.getLogger("ollang.server")

#: Longest wait for the first item before the headers are sent anyway.
HEADERS_AFTER = 2.0

Kind = Literal["token", "reasoning", "done", "progress"]


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One thing to send: ``token``/``reasoning`` carry text; ``done``/``progress`` data."""

    kind: Kind
    text: str = ""
    data: dict[str, Any] | None = None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StreamFormat:
    """How items become bytes. Subclasses: plain text, SSE, NDJSON."""

    name = ""
    media_type = ""

    def encode(self, item: StreamItem) -> bytes:
        """Bytes for one item (may be empty: nothing to send)."""
        raise NotImplementedError

    def encode_all(self, items: Sequence[StreamItem]) -> bytes:
        """Bytes for a batch of items, in order."""
        if len(items) == 1:
            return self.encode(items[0])
        return b"".join(self.encode(item) for item in items)

    def error(self, err: OllangError) -> bytes:
        """Bytes for an error that happens after the headers were sent."""
        raise NotImplementedError


class PlainText(StreamFormat):
    """The answer's text as it arrives; reasoning and the summary are left out.

    An error mid-stream ends the text with a line ``[error] message (hint)``.
    """

    name = "text"
    media_type = "text/plain; charset=utf-8"

    def encode(self, item: StreamItem) -> bytes:
        return item.text.encode("utf-8") if item.kind == "token" else b""

    def error(self, err: OllangError) -> bytes:
        hint = f" ({err.hint})" if err.hint else ""
        return f"\n[error] {err.message}{hint}\n".encode()


class ServerSentEvents(StreamFormat):
    """SSE: events ``token`` and ``reasoning`` (data: the text), ``done`` and ``error`` (JSON)."""

    name = "sse"
    media_type = "text/event-stream; charset=utf-8"

    def encode(self, item: StreamItem) -> bytes:
        if item.kind in ("token", "reasoning"):
            text = item.text
            # One event per token: the common single-line piece is formatted directly
            # (what sse_starlette produces, without its per-event buffer and regex);
            # anything with a line break goes through sse_starlette.
            if "\n" not in text and "\r" not in text:
                return f"event: {item.kind}\r\ndata: {text}\r\n\r\n".encode()
            return ServerSentEvent(data=text, event=item.kind).encode()
        return ServerSentEvent(data=_json(item.data), event=item.kind).encode()

    def error(self, err: OllangError) -> bytes:
        return ServerSentEvent(data=_json(error_body(err)), event="error").encode()


class NDJSON(StreamFormat):
    """One JSON object per line, shaped like Ollama's own stream.

    Chat: ``{"message": {"role": "assistant", "content": "..."}, "done": false}``
    (reasoning in ``message.thinking``). Generate (``key="response"``):
    ``{"response": "...", "done": false}``. The last line is the summary with
    ``"done": true``, or ``{"error", "hint", "done": true}``.
    """

    name = "ndjson"
    media_type = "application/x-ndjson"

    def __init__(self, key: Literal["message", "response"] = "message") -> None:
        self.key = key

    def _text(self, item: StreamItem) -> dict[str, Any]:
        if self.key == "response":
            field = "response" if item.kind == "token" else "thinking"
            return {field: item.text, "done": False}
        message = {"role": "assistant", "content": item.text if item.kind == "token" else ""}
        if item.kind == "reasoning":
            message["thinking"] = item.text
        return {"message": message, "done": False}

    def encode(self, item: StreamItem) -> bytes:
        if item.kind in ("token", "reasoning"):
            line = self._text(item)
        elif item.kind == "done":
            line = {**(item.data or {}), "done": True}
        else:
            line = dict(item.data or {})
        return (_json(line) + "\n").encode("utf-8")

    def error(self, err: OllangError) -> bytes:
        return (_json({**error_body(err), "done": True}) + "\n").encode("utf-8")


FORMATS: dict[str, type[StreamFormat]] = {
    "text/event-stream": ServerSentEvents,
    "application/x-ndjson": NDJSON,
    "application/ndjson": NDJSON,
    "application/jsonl": NDJSON,
    "text/plain": PlainText,
}


def choose_format(
    accept: str | None, *, ndjson_key: Literal["message", "response"] = "message"
) -> StreamFormat:
    """The format an ``Accept`` header asks for; plain text when it names none we know.

    The first listed type we support wins (q-values are ignored: clients that
    list several mean "any of these").
    """
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        kind = FORMATS.get(media)
        if kind is NDJSON:
            return NDJSON(ndjson_key)
        if kind is not None:
            return kind()
    return PlainText()


class ClientDisconnected(Exception):
    """The client went away before the answer was complete."""


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(receive: Receive, work: Awaitable[Any]) -> Any:
    """Await ``work``, cancelling it if the client goes away first (then raise :class:`ClientDisconnected`)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise ClientDisconnected()
    return task.result()


class LiveStream(StreamingResponse):
    """A streamed answer: first-item priming, in-stream errors, cancel on disconnect.

    One task iterates ``items`` from start to end (LangChain keeps context
    variables across a stream's steps, so the steps must not move between
    tasks); a timer task sends the headers if the first item is slow.

    Args:
        items: The producer (an async generator of batches); cancelled on disconnect.
        fmt: How to encode items.
    """

    def __init__(
        self,
        items: AsyncIterator[Sequence[StreamItem]],
        fmt: StreamFormat,
        headers: dict[str, str] | None = None,
    ) -> None:
        # StreamingResponse sets the headers (and no Content-Length); the body is sent by
        # __call__ below from `items`, never by StreamingResponse's own iterator.
        super().__init__(
            (),
            media_type=fmt.media_type,
            # X-Accel-Buffering: proxies must not buffer the stream.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
        )
        self.items = items
        self.fmt = fmt
        self.started = False
        self._start_lock = asyncio.Lock()

    async def _start(self, send: Send) -> bool:
        """Send the headers unless already sent; ``True`` if they are (now) sent."""
        async with self._start_lock:
            if not self.started:
                self.started = True
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
        return True

    async def _late_start(self, send: Send) -> None:
        await asyncio.sleep(HEADERS_AFTER)
        await self._start(send)

    async def _pump(self, scope: Scope, receive: Receive, send: Send) -> None:
        fmt = self.fmt
        timer = asyncio.ensure_future(self._late_start(send))
        try:
            async for batch in self.items:
                if not self.started:
                    await self._start(send)
                    timer.cancel()
                chunk = fmt.encode_all(batch)
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception as exc:
            timer.cancel()
            err = to_ollang_error(exc)
            if err is not exc:
                log.error("unhandled error in a stream", exc_info=exc)
            async with self._start_lock:
                if not self.started:
                    # Nothing sent yet: a real HTTP error answer.
                    self.started = True
                    response = JSONResponse(
                        error_body(err),
                        status_code=err.http_status,
                        headers=getattr(err, "headers", None),  # a 429's Retry-After
                    )
                    await response(scope, receive, send)
                    return
            await send({"type": "http.response.body", "body": fmt.error(err), "more_body": True})
        finally:
            timer.cancel()
        await self._start(send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await cancel_on_disconnect(receive, self._pump(scope, receive, send))
        except (ClientDisconnected, OSError):
            pass  # the client left; the producer was cancelled and kept what it had
        finally:
            aclose = getattr(self.items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
