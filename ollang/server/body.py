"""Reading request bodies: size limits, JSON whatever the Content-Type, typed validation.

The tutorial's ``curl -X POST .../chat -d '{"message": "Hello"}'`` sends
``Content-Type: application/x-www-form-urlencoded`` with a JSON body, so bodies
are parsed as JSON whatever the header says; a real form body
(``message=Hello&model=llama3``) is read as a form. Query parameters fill in
fields the body does not give (``POST /chat?message=Hello``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollang.errors import OllangError
from ollang.server.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ValidationFailedError,
    error_body,
    validation_error,
)

__all__ = [
    "BODY_MODELS",
    "BodyLimit",
    "body_schema",
    "check_length",
    "parse_request",
    "read_object",
]

M = TypeVar("M", bound=BaseModel)

#: Models of bodies documented with :func:`body_schema`; their schemas are added
#: to the OpenAPI components by the app.
BODY_MODELS: dict[str, type[BaseModel]] = {}


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body is larger than {limit} bytes", "send a shorter message"
    )


#: Routes whose bodies may carry images: they get the larger ``max_image_body_bytes``.
IMAGE_PATHS = frozenset(
    {
        "/chat",
        "/chat/stream",
        "/generate",
        "/generate/stream",
        "/v1/chat/completions",
        "/api/chat",
        "/api/generate",
    }
)


#: Routes whose bodies are passed on as they are read, never held: no limit here (Ollama's
#: blob uploads, model files of gigabytes; their route refuses them unless the server
#: allows model management, before reading a byte).
STREAMED_PREFIXES = ("/api/blobs/",)


#: 20 digits in a row: maybe an integer orjson would read as an inexact float.
_LONG_DIGITS = re.compile(rb"\d{20}")


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with a 413 JSON error.

    A declared ``Content-Length`` over the limit is refused before anything is
    read; a chunked body is counted as it is read, and the read that crosses the
    limit raises :class:`PayloadTooLargeError` (answered 413 by the error handler).
    Model requests (:data:`IMAGE_PATHS`), which may carry images, get ``image_bytes``.
    ``shapes`` maps path prefixes (``/v1/``, ``/api/``) to the API's own error answer.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        image_bytes: int | None = None,
        shapes: Mapping[str, Callable[[OllangError], ASGIApp]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.image_bytes = max(image_bytes or max_bytes, max_bytes)
        self.shapes = tuple((shapes or {}).items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path", "").startswith(STREAMED_PREFIXES):
            await self.app(scope, receive, send)
            return
        limit = self.image_bytes if scope.get("path") in IMAGE_PATHS else self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                path = scope.get("path", "")
                render = next((r for prefix, r in self.shapes if path.startswith(prefix)), None)
                if render is not None:
                    await render(_too_large(limit))(scope, receive, send)
                else:
                    await _send_json(send, 413, error_body(_too_large(limit)))
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty), whatever the Content-Type says.

    Raises:
        BadRequestError: not UTF-8, or malformed JSON (400).
        ValidationFailedError: JSON, but not an object, or holding NaN, Infinity or
            lone surrogates (422).
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded" and not _LONG_DIGITS.search(raw):
        # The common case, fast: orjson refuses NaN, Infinity, numbers out of range and
        # lone surrogates by itself; anything it refuses takes the careful path below,
        # which says which of those it was (400 or 422). It reads integers beyond 64 bits
        # as floats, so bodies with 20 digits in a row take the careful path too.
        try:
            fast = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(fast, dict):
                return fast
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequestError("the request body is not UTF-8 text", "send JSON") from err
    looks_like_json = text.lstrip()[:1] in ("{", "[", '"') or text.strip() in ("null", "true")
    if content_type == "application/x-www-form-urlencoded" and "=" in text and not looks_like_json:
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        detail = (
            f" (line {err.lineno}, column {err.colno})"
            if isinstance(err, json.JSONDecodeError)
            else ""
        )
        raise BadRequestError(
            f"the request body is not valid JSON{detail}",
            'send a JSON object such as {"message": "Hello"}',
        ) from err
    if not isinstance(value, dict):
        raise ValidationFailedError(
            f"the request body must be a JSON object, not {type(value).__name__}",
            'send a JSON object such as {"message": "Hello"}',
        )
    try:
        # Python's parser accepts NaN, Infinity, 1e400 and lone surrogates ("\\ud800"),
        # none of which can be stored or sent on to Ollama: refuse them here, once.
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        orjson.dumps(value)  # and integers beyond 64 bits (Ollama's Go reads none either)
    except (ValueError, UnicodeEncodeError, orjson.JSONEncodeError) as err:
        raise ValidationFailedError(
            "the request body holds a value that cannot be passed on: "
            "NaN, Infinity, a number out of range, or a lone surrogate (\\ud800-\\udfff)",
            "send finite numbers and valid Unicode text",
        ) from err
    return value


async def parse_request(
    request: Request, model: type[M], query: Mapping[str, Any] | None = None
) -> M:
    """The body (and query fields it lacks) validated as ``model``.

    Raises:
        BadRequestError, ValidationFailedError, PayloadTooLargeError: 400/422/413.
    """
    data = await read_object(request)
    if query:
        data = {**{k: v for k, v in query.items() if v is not None}, **data}
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(list(err.errors())) from err


def check_length(limit: int, **fields: str | None) -> None:
    """413 if any text field is longer than ``limit`` characters."""
    for name, value in fields.items():
        if value is not None and len(value) > limit:
            raise PayloadTooLargeError(
                f"{name} is {len(value)} characters long; this server accepts at most {limit}",
                "shorten it",
            )


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a body read by hand as ``model`` (see ``app._openapi``)."""
    BODY_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": ref}},
        }
    }
