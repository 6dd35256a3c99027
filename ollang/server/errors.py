"""The server's errors and the one place where any exception becomes an HTTP answer.

Every error answer is JSON ``{"error": message, "hint": hint}`` with the status
of the error's class (:attr:`chains.errors.OllangError.http_status`).
Validation failures add ``fields`` (where and what, never the rejected value).
Unexpected exceptions are logged with their traceback and answered with a
generic 500: no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ollang.errors import OllangError
from ollang.memory.errors import SessionNotFoundError

__all__ = [
    "AddressInUseError",
    "BadRequestError",
    "ForbiddenError",
    "InternalServerError",
    "PayloadTooLargeError",
    "UnauthorizedError",
    "ValidationFailedError",
    "error_body",
    "handle_error",
    "install_error_handler",
    "session_not_found",
    "to_ollang_error",
]

log = logging.getLogger("ollang.server")


class BadRequestError(OllangError):
    """The request cannot be read (e.g. malformed JSON)."""

    http_status = 400


class UnauthorizedError(OllangError):
    """No API key, or one the server does not accept."""

    http_status = 401

    def __init__(
        self,
        message: str = "missing or invalid API key",
        hint: str = "send the header `Authorization: Bearer YOUR_KEY`",
    ) -> None:
        super().__init__(message, hint)


class ForbiddenError(OllangError):
    """The server's configuration forbids this (a model not allowed, pulls off)."""

    http_status = 403


class PayloadTooLargeError(OllangError):
    """The body or a message exceeds the configured limits."""

    http_status = 413


class AddressInUseError(OllangError):
    """``ollang serve`` cannot listen where it was told: another program has the port."""

    exit_code = 5

    def __init__(self, host: str, port: int, detail: str) -> None:
        super().__init__(
            f"cannot listen on {host}:{port}: the address is in use ({detail})",
            "stop whatever listens there, or choose another port with --port",
        )


class EndpointError(OllangError):
    """Starlette's own answer (no such route, a method it does not take) in our shape."""

    _SAID = {
        404: ("no such endpoint", "see /docs for the API"),
        405: ("method not allowed", "see /docs for the API"),
    }

    def __init__(self, status: int, detail: str) -> None:
        message, hint = self._SAID.get(status, (detail, ""))
        super().__init__(message, hint)
        self.http_status = status


class InternalServerError(OllangError):
    """Something unexpected; details go to the server log only."""

    http_status = 500


class ValidationFailedError(OllangError):
    """The request is well-formed JSON but its fields are wrong."""

    http_status = 422

    def __init__(self, message: str, hint: str = "", fields: list[dict[str, Any]] | None = None):
        super().__init__(message, hint)
        self.fields = fields or []


def session_not_found(session_id: str) -> SessionNotFoundError:
    """The 404 for a session that does not exist *or belongs to another key* (same answer)."""
    return SessionNotFoundError(
        session_id, "GET /sessions lists your sessions; omit session_id to start a new one"
    )


def _fields(errors: list[Any]) -> list[dict[str, Any]]:
    # loc and msg only: the rejected input may be huge or sensitive.
    out = []
    for item in errors:
        loc = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
        problem = str(item.get("msg", "")).removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "body", "problem": problem})
    return out


def validation_error(errors: list[Any]) -> ValidationFailedError:
    """A 422 from pydantic-style error dicts."""
    fields = _fields(errors)
    summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:5])
    return ValidationFailedError(
        f"invalid request ({summary})" if summary else "invalid request",
        "see /docs for the request schema",
        fields,
    )


def to_ollang_error(exc: BaseException) -> OllangError:
    """Any exception as an :class:`OllangError` with the right ``http_status``."""
    if isinstance(exc, OllangError):
        return exc
    if isinstance(exc, (RequestValidationError, ValidationError)):
        return validation_error(list(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        return EndpointError(exc.status_code, str(exc.detail))
    return InternalServerError("internal server error", "the server log has the details")


def error_body(err: OllangError) -> dict[str, Any]:
    """The JSON body of an error answer (also used for in-stream error events)."""
    body: dict[str, Any] = {"error": err.message, "hint": err.hint}
    fields = getattr(err, "fields", None)
    if fields:
        body["fields"] = fields
    return body


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler: any exception → ``{"error", "hint"}`` with its status."""
    err = to_ollang_error(exc)
    if isinstance(err, InternalServerError) and err is not exc:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    headers: dict[str, str] = {}
    if err.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, StarletteHTTPException) and exc.headers:
        headers.update(exc.headers)
    headers.update(getattr(err, "headers", None) or {})  # a 429's Retry-After
    return JSONResponse(error_body(err), status_code=err.http_status, headers=headers)


def install_error_handler(app: FastAPI) -> None:
    """Route every kind of exception through :func:`handle_error`."""
    for kind in (OllangError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle_error)
