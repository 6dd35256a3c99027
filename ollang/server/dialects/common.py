"""What the OpenAI and Ollama dialects share: images, limits, streams and error answers.

The two dialects (:mod:`ollang.server.dialects.openai`, :mod:`ollang.server.dialects.ollama`)
translate a client's request into a :class:`~ollang.server.turns.TurnRequest` and the
turn engine's :class:`~ollang.server.turns.TurnChunk` / :class:`~ollang.server.turns.TurnDone`
back into the client's wire format. This module holds what both need (and ollang's own
``/chat`` routes use the turn helpers too):

* images as LangChain v1 content blocks (``{"type": "image", "base64", "mime_type"}``),
  checked by :mod:`ollang.turns.images` as every image ollang takes, which
  :func:`ollang.transport.wire.wire_messages` sends as Ollama's ``images``;
* the message-length limit applied to every message a client sends;
* :func:`line_items` (a batch's text as stream items) and :func:`run_to_end` (a turn
  answered when complete, cancelled if the client leaves);
* :class:`DialectStream`, a :class:`~ollang.server.streaming.LiveStream` whose error
  answer before the first item is in the dialect's own shape;
* :func:`install_error_shapes`: the app's one exception handler, answering the
  dialects' paths in their shape and every other path exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from langchain_core.messages import BaseMessage
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ollang.errors import InvalidInputError, OllangError
from ollang.iterators import aclosing_iter
from ollang.server.body import check_length
from ollang.server.errors import InternalServerError, handle_error, to_ollang_error
from ollang.server.streaming import (
    ClientDisconnected,
    LiveStream,
    StreamFormat,
    StreamItem,
    cancel_on_disconnect,
)
from ollang.server.turns import TurnChunk, TurnDone
from ollang.turns.images import MAX_IMAGES, image_block_from_base64
from ollang.turns.recorder import TurnResult

__all__ = [
    "INT64_MAX",
    "DialectStream",
    "ErrorRenderer",
    "check_message_lengths",
    "image_blocks",
    "install_error_shapes",
    "line_items",
    "run_to_end",
]

log = logging.getLogger("ollang.server")

#: Largest integer Ollama (Go's int64) and the JSON encoder on the way there accept.
INT64_MAX = 2**63 - 1

#: Renders an error as a dialect's HTTP answer.
ErrorRenderer = Callable[[OllangError], Response]


def image_blocks(images: Sequence[str], where: str) -> list[dict[str, Any]]:
    """Base64 images (or ``data:`` URLs) as content blocks, checked as every image ollang
    takes is (:mod:`ollang.turns.images`: PNG, JPEG, GIF or WebP, the size and count limits).

    Raises:
        InvalidInputError: not a base64 image of those formats, or too many (a 400 here).
        ImageTooLargeError: an image over the size limit (413).
    """
    if len(images) > MAX_IMAGES:
        raise InvalidInputError(
            f"{where} has {len(images)} images; at most {MAX_IMAGES} per message are accepted",
            "send fewer images",
        )
    return [
        image_block_from_base64("".join(data.split()), f"{where}[{index}]")
        for index, data in enumerate(images)
    ]


def check_message_lengths(limit: int, messages: Sequence[BaseMessage]) -> None:
    """413 if any message's text is longer than ``limit`` characters."""
    for index, message in enumerate(messages):
        check_length(limit, **{f"messages[{index}]": message.text})


def line_items(chunk: TurnChunk) -> list[StreamItem]:
    """A batch's reasoning and answer text, one item per upstream line (in order)."""
    items: list[StreamItem] = []
    for line in chunk.lines:
        message = line.get("message")
        if not message:
            continue
        thinking = message.get("thinking")
        if thinking:
            items.append(StreamItem("reasoning", thinking))
        content = message.get("content")
        if content:
            items.append(StreamItem("token", content))
    return items


async def run_to_end(
    request: Request, turns: AsyncIterator[TurnChunk | TurnDone]
) -> TurnResult | None:
    """The turn's result once it ends, for an answer sent when complete; ``None`` when
    the client went away first (the turn is cancelled, its partial answer kept): the
    caller answers 499, with nobody to read it."""
    try:
        result: TurnResult = await cancel_on_disconnect(request.receive, _result(turns))
    except ClientDisconnected:
        return None
    return result


async def _result(turns: AsyncIterator[TurnChunk | TurnDone]) -> TurnResult:
    async with aclosing_iter(turns):
        async for part in turns:
            if isinstance(part, TurnDone):
                return part.result
    raise AssertionError("a turn always ends with TurnDone or raises")


class DialectStream(LiveStream):
    """A :class:`LiveStream` whose error answer before the first item is the dialect's.

    ``LiveStream`` answers an error raised before the first item with ollang's
    ``{"error", "hint"}``. Here that answer is replaced by ``render_error``'s (OpenAI's
    ``{"error": {"message", "type", "code"}}``, say); everything after the first item,
    in-stream errors included, is the format's as usual.
    """

    def __init__(
        self,
        items: AsyncIterator[Sequence[StreamItem]],
        fmt: StreamFormat,
        render_error: ErrorRenderer,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(self._watched(items), fmt, headers)
        self.render_error = render_error
        self.failure: BaseException | None = None

    async def _watched(
        self, items: AsyncIterator[Sequence[StreamItem]]
    ) -> AsyncIterator[Sequence[StreamItem]]:
        async with aclosing_iter(items):
            try:
                async for batch in items:
                    yield batch
            except Exception as exc:  # kept for the error answer, then raised on as usual
                self.failure = exc
                raise

    async def _pump(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced = False

        async def reshaped(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # LiveStream's own error body: already answered in our shape
            if (
                message["type"] == "http.response.start"
                and message["status"] >= 400
                and self.failure is not None
            ):
                replaced = True
                await self.render_error(to_ollang_error(self.failure))(scope, receive, send)
                return
            await send(message)

        await super()._pump(scope, receive, reshaped)


def install_error_shapes(app: FastAPI, shapes: Mapping[str, ErrorRenderer]) -> None:
    """Answer errors on paths under each prefix of ``shapes`` with its renderer.

    Replaces the app's handlers (:func:`ollang.server.errors.install_error_handler`) by
    one that dispatches on the path: other paths go to
    :func:`~ollang.server.errors.handle_error`, so their answers do not change.
    """
    prefixes = tuple(shapes.items())

    async def dispatch(request: Request, exc: Exception) -> Response:
        path = request.url.path
        for prefix, render in prefixes:
            if path.startswith(prefix):
                err = to_ollang_error(exc)
                if isinstance(err, InternalServerError) and err is not exc:
                    log.error("unhandled error on %s %s", request.method, path, exc_info=exc)
                response = render(err)
                if isinstance(exc, StarletteHTTPException) and exc.headers:
                    response.headers.update(exc.headers)
                return response
        return await handle_error(request, exc)

    for kind in (OllangError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, dispatch)
