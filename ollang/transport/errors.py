"""The one place where raw errors of talking to a model host become ollang's errors.

Raw errors come from the ``ollama`` client and httpx (probes, model management,
ChatOllama), from the hot-path client :mod:`ollang.transport.wire` (a cut connection,
bytes that are not HTTP, an error status), and from Python's socket layer.
:func:`translate_error` turns each into an :class:`~ollang.errors.OllangError`
subclass; call sites use the :func:`translating` context manager or call it directly,
and always chain the cause (``raise ... from err``). :func:`status_error` is the one
reading of an error status with Ollama's ``{"error": ...}`` body.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence

from ollang.errors import (
    ConnectionCutError,
    InvalidResponseError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
    OllangError,
)

__all__ = ["ConnectionClosed", "GarbledResponse", "status_error", "translate_error", "translating"]


class ConnectionClosed(Exception):
    """Raw: the connection closed before the response was complete (hot-path client)."""


class GarbledResponse(Exception):
    """Raw: the response could not be parsed as HTTP or JSON (hot-path client)."""


def _error_text(text: str) -> str:
    """The server's own message from an error body (Ollama's ``error`` field)."""
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "error" in parsed:
            text = str(parsed["error"])
    return str(text)


def status_error(
    status: int,
    detail: str,
    model: str | None,
    list_models: Callable[[], Sequence[str]] | None = None,
) -> OllangError:
    """An error status from a model host (``detail``: the body or its ``error`` field)."""
    detail = _error_text(detail)
    if status == 404 and model is not None:
        installed: list[str] | None = None
        if list_models is not None:
            try:
                installed = list(list_models())
            except Exception:  # naming installed models is best effort
                installed = None
        return ModelNotFoundError(model, installed)
    if status == 404 and model is None and "not found" in detail:
        return ModelNotFoundError(detail.split('"')[1] if '"' in detail else detail)
    return OllamaResponseError(detail or f"HTTP {status}", status)


def translate_error(
    err: BaseException,
    *,
    url: str,
    model: str | None = None,
    list_models: Callable[[], Sequence[str]] | None = None,
) -> OllangError | None:
    """Turn a raw error from talking to a model host into an :class:`OllangError`.

    This is the single translation point: the model wrappers, the model manager, the
    probes and the hot-path client all call it.

    Args:
        err: The raw exception.
        url: The host's base URL the request went to (named in messages).
        model: The model the request was for, if any.
        list_models: Called to name installed models in a ModelNotFoundError;
            failures in it are ignored.

    Returns:
        The translated error, or ``None`` if ``err`` is not one we know (the
        caller then re-raises the original).
    """
    if isinstance(err, OllangError):
        return err
    if isinstance(err, ConnectionClosed):
        return ConnectionCutError(url, str(err) or "connection closed")
    if isinstance(err, (GarbledResponse, json.JSONDecodeError)):  # orjson's is one too
        return InvalidResponseError(url, getattr(err, "msg", None) or str(err))
    import httpx  # local: keep `import ollang.transport.errors` cheap for the CLI
    import ollama

    if isinstance(err, httpx.TimeoutException):
        kind = {
            httpx.ConnectTimeout: "connect timeout",
            httpx.ReadTimeout: "no data within the read timeout",
            httpx.WriteTimeout: "write timeout",
            httpx.PoolTimeout: "connection pool timeout",
        }.get(type(err), "timeout")
        if isinstance(err, httpx.ConnectTimeout):
            return OllamaUnavailableError(url, kind)
        return OllamaTimeoutError(url, kind)
    if isinstance(err, httpx.RemoteProtocolError):
        return ConnectionCutError(url, str(err))
    if isinstance(err, (httpx.ConnectError, ConnectionError)):
        return OllamaUnavailableError(url)
    if isinstance(err, (httpx.TransportError, OSError)):
        return OllamaUnavailableError(url, type(err).__name__)
    if isinstance(err, ollama.ResponseError):
        detail = getattr(err, "error", None) or str(err)
        return status_error(err.status_code, str(detail), model, list_models)
    return None


@contextlib.contextmanager
def translating(
    *,
    url: str,
    model: str | None = None,
    list_models: Callable[[], Sequence[str]] | None = None,
) -> Iterator[None]:
    """Context manager: raise raw transport errors inside it as OllangErrors."""
    try:
        yield
    except OllangError:
        raise
    except Exception as err:
        ours = translate_error(err, url=url, model=model, list_models=list_models)
        if ours is None:
            raise
        raise ours from err
