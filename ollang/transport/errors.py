"""The one place where raw errors of talking to a model host become ollang's errors.

Raw errors come from the ``ollama`` client and httpx (probes, model management,
ChatOllama), from the hot-path client :mod:`ollang.transport.wire` (a cut connection,
bytes that are not HTTP, an error status), and from Python's socket layer.
:func:`translate_error` turns each into an :class:`~ollang.errors.OllangError`
subclass; call sites use the :func:`translating` context manager or call it directly,
and always chain the cause (``raise ... from err``). :func:`status_error` is the one
reading of an error status, with Ollama's ``{"error": "..."}`` body or an OpenAI-compatible
engine's ``{"error": {"message": ...}}``.

Each call names the *kind* of host (``ollama`` or ``openai``): the same raw error becomes
the same class of error for both, worded for the host it came from — so failover
(:mod:`ollang.routing.failover`) treats an engine's 404, 429, 5xx or cut stream exactly
as Ollama's. The OpenAI SDK's errors (``ChatOpenAI``, the CLI's path to an ``openai``
host) are read here too.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ollang.errors import (
    ConnectionCutError,
    HostAuthError,
    HostBusyError,
    InvalidResponseError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnavailableError,
    OllangError,
)

__all__ = [
    "ConnectionClosed",
    "GarbledResponse",
    "retry_after_seconds",
    "status_error",
    "translate_error",
    "translating",
]


class ConnectionClosed(Exception):
    """Raw: the connection closed before the response was complete (hot-path client)."""


class GarbledResponse(Exception):
    """Raw: the response could not be parsed as HTTP or JSON (hot-path client)."""


def _error_text(text: str) -> str:
    """The server's own message from an error body: Ollama's ``error`` field, an
    OpenAI-compatible engine's ``error.message`` (or a framework's ``detail``)."""
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            found = parsed.get("error", parsed.get("detail", parsed.get("message", text)))
            if isinstance(found, dict):
                found = found.get("message", found)
            text = str(found)
    return str(text)


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's seconds (``None``: absent, or an HTTP date we ignore)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def status_error(
    status: int,
    detail: str,
    model: str | None,
    list_models: Callable[[], Sequence[str]] | None = None,
    *,
    url: str = "",
    kind: str = "ollama",
    retry_after: str | None = None,
) -> OllangError:
    """An error status from a model host (``detail``: the body or its ``error`` field).

    Args:
        url: The host (named in the messages of a refused key or a busy host).
        kind: ``ollama`` or ``openai``: how the messages name the host. An engine's
            401/403 is :class:`HostAuthError` (its ``key=``).
        retry_after: The answer's ``Retry-After`` header (a 429's wait).
    """
    detail = _error_text(detail)
    if status == 429:
        return HostBusyError(url, detail, retry_after_seconds(retry_after), kind=kind)
    if status in (401, 403) and kind == "openai":
        return HostAuthError(url, detail, status, kind=kind)
    if status == 404 and model is not None:
        installed: list[str] | None = None
        if list_models is not None:
            try:
                installed = list(list_models())
            except Exception:  # naming installed models is best effort
                installed = None
        return ModelNotFoundError(model, installed)
    if status == 404 and model is None and "not found" in detail and kind == "ollama":
        return ModelNotFoundError(detail.split('"')[1] if '"' in detail else detail)
    return OllamaResponseError(detail or f"HTTP {status}", status, kind=kind)


def translate_error(
    err: BaseException,
    *,
    url: str,
    model: str | None = None,
    list_models: Callable[[], Sequence[str]] | None = None,
    kind: str = "ollama",
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
        kind: The host's kind, ``ollama`` or ``openai`` (how messages name it).

    Returns:
        The translated error, or ``None`` if ``err`` is not one we know (the
        caller then re-raises the original).
    """
    if isinstance(err, OllangError):
        return err
    if isinstance(err, ConnectionClosed):
        return ConnectionCutError(url, str(err) or "connection closed", kind=kind)
    if isinstance(err, (GarbledResponse, json.JSONDecodeError)):  # orjson's is one too
        return InvalidResponseError(url, getattr(err, "msg", None) or str(err), kind=kind)
    import httpx  # local: keep `import ollang.transport.errors` cheap for the CLI
    import ollama

    openai = sys.modules.get("openai")  # its errors can only come from where it is loaded
    if openai is not None and isinstance(err, openai.OpenAIError):
        return _openai_sdk_error(err, openai, url=url, model=model, kind=kind)

    # httpx, and httpx2 when it is loaded (the openai SDK's own fork, from openai 3.x):
    # the same classes under two names.
    for http in (httpx, sys.modules.get("httpx2")):
        if http is not None and (ours := _http_error(err, http, url=url, kind=kind)):
            return ours
    if isinstance(err, (ConnectionError, OSError)):
        return OllamaUnavailableError(url, type(err).__name__, kind=kind)
    if isinstance(err, ollama.ResponseError):
        detail = getattr(err, "error", None) or str(err)
        return status_error(err.status_code, str(detail), model, list_models)
    return None


def _http_error(err: BaseException, http: Any, *, url: str, kind: str) -> OllangError | None:
    """An error of an httpx-shaped library (``http``: httpx or httpx2) as ours."""
    if isinstance(err, http.TimeoutException):
        which = {
            http.ConnectTimeout: "connect timeout",
            http.ReadTimeout: "no data within the read timeout",
            http.WriteTimeout: "write timeout",
            http.PoolTimeout: "connection pool timeout",
        }.get(type(err), "timeout")
        if isinstance(err, http.ConnectTimeout):
            return OllamaUnavailableError(url, which, kind=kind)
        return OllamaTimeoutError(url, which, kind=kind)
    if isinstance(err, http.RemoteProtocolError):
        return ConnectionCutError(url, str(err), kind=kind)
    if isinstance(err, (http.ConnectError, ConnectionError)):
        return OllamaUnavailableError(url, kind=kind)
    if isinstance(err, http.TransportError):
        return OllamaUnavailableError(url, type(err).__name__, kind=kind)
    return None


def _openai_sdk_error(
    err: Exception, openai: Any, *, url: str, model: str | None, kind: str
) -> OllangError | None:
    """An error of the ``openai`` SDK (under ``ChatOpenAI``) as the wire's would be."""
    if isinstance(err, openai.APITimeoutError):
        return OllamaTimeoutError(url, "no data within the read timeout", kind=kind)
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__
        if cause is not None and (ours := translate_error(cause, url=url, kind=kind)):
            return ours
        return OllamaUnavailableError(url, kind=kind)
    if isinstance(err, openai.APIStatusError):
        response = err.response
        return status_error(
            err.status_code,
            response.text if response is not None else str(err),
            model,
            url=url,
            kind=kind,
            retry_after=response.headers.get("retry-after") if response is not None else None,
        )
    return None


@contextlib.contextmanager
def translating(
    *,
    url: str,
    model: str | None = None,
    list_models: Callable[[], Sequence[str]] | None = None,
    kind: str = "ollama",
) -> Iterator[None]:
    """Context manager: raise raw transport errors inside it as OllangErrors."""
    try:
        yield
    except OllangError:
        raise
    except Exception as err:
        ours = translate_error(err, url=url, model=model, list_models=list_models, kind=kind)
        if ours is None:
            raise
        raise ours from err
