"""Errors of talking to a model server, and the one place where raw errors become ours.

Raw errors from the ``ollama`` client, httpx and Python's socket layer are
turned into :class:`~ollang.errors.OllangError` subclasses by
:func:`translate_error` only; call sites use the :func:`translating` context
manager and always chain the cause (``raise ... from err``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence

from ollang.errors import InvalidInputError, OllangError

__all__ = [
    "ContextWindowError",
    "InvalidInputError",
    "ModelNotFoundError",
    "OllamaResponseError",
    "OllamaTimeoutError",
    "OllamaUnavailableError",
    "OllangError",
    "translate_error",
    "translating",
]


class OllamaUnavailableError(OllangError, ConnectionError):
    """No Ollama server answers at the configured address."""

    exit_code = 3
    http_status = 503

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        message = f"cannot reach Ollama at {url}"
        if detail:
            message += f" ({detail})"
        super().__init__(
            message,
            "start it with `ollama serve`, or set OLLAMA_HOST to where it runs",
        )


class ModelNotFoundError(OllangError, LookupError):
    """The requested model is not installed on the Ollama server."""

    exit_code = 4
    http_status = 404

    def __init__(self, model: str, installed: Sequence[str] | None = None) -> None:
        self.model = model
        self.installed = list(installed) if installed is not None else None
        hint = f"pull it with `ollama pull {model}` (or `ollang models pull {model}`)"
        if self.installed:
            hint += "; installed: " + ", ".join(self.installed)
        elif self.installed == []:
            hint += "; no models are installed yet"
        super().__init__(f"model {model!r} not found", hint)


class OllamaTimeoutError(OllangError, TimeoutError):
    """Ollama accepted the request but did not answer in time."""

    exit_code = 1
    http_status = 504

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        message = f"Ollama at {url} did not answer in time"
        if detail:
            message += f" ({detail})"
        super().__init__(
            message,
            "the model may still be loading; retry, or raise OLLANG_READ_TIMEOUT (seconds)",
        )


class OllamaResponseError(OllangError):
    """Ollama answered with an error (other than a missing model), before or mid-stream."""

    exit_code = 1
    http_status = 502

    def __init__(
        self,
        detail: str,
        status_code: int | None = None,
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        if message is None:
            where = "mid-answer" if status_code in (None, -1) else f"HTTP {status_code}"
            message = f"Ollama reported an error ({where}): {detail}"
        super().__init__(
            message, hint or "Ollama's log says more (where `ollama serve` runs); try again"
        )


class ContextWindowError(OllangError):
    """The input alone does not fit the model's context window."""

    exit_code = 1
    http_status = 413


def _error_text(err: BaseException) -> str:
    """The server's own message of an ``ollama.ResponseError`` (its ``error`` field)."""
    text = getattr(err, "error", None) or str(err)
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "error" in parsed:
            text = str(parsed["error"])
    return str(text)


def translate_error(
    err: BaseException,
    *,
    url: str,
    model: str | None = None,
    list_models: Callable[[], Sequence[str]] | None = None,
) -> OllangError | None:
    """Turn a raw error from talking to Ollama into an :class:`OllangError`.

    This is the single translation point: the model wrappers, the model
    manager and the server all call it.

    Args:
        err: The raw exception.
        url: The Ollama base URL the request went to (named in messages).
        model: The model the request was for, if any.
        list_models: Called to name installed models in a ModelNotFoundError;
            failures in it are ignored.

    Returns:
        The translated error, or ``None`` if ``err`` is not one we know (the
        caller then re-raises the original).
    """
    if isinstance(err, OllangError):
        return err
    import httpx  # local: keep `import chains.errors` cheap for the CLI
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
        return OllamaResponseError(
            str(err),
            message=f"the connection to Ollama at {url} was cut mid-response",
            hint="is Ollama still running (`ollama serve`)? try again",
        )
    if isinstance(err, (httpx.ConnectError, ConnectionError)):
        return OllamaUnavailableError(url)
    if isinstance(err, httpx.TransportError):
        return OllamaUnavailableError(url, type(err).__name__)
    if isinstance(err, json.JSONDecodeError):
        return OllamaResponseError(
            err.msg,
            message=f"Ollama at {url} sent an invalid response (not JSON: {err.msg})",
            hint="check that OLLAMA_HOST points at an Ollama server",
        )
    if isinstance(err, ollama.ResponseError):
        detail = _error_text(err)
        if err.status_code == 404 and model is not None:
            installed: list[str] | None = None
            if list_models is not None:
                try:
                    installed = list(list_models())
                except Exception:  # naming installed models is best effort
                    installed = None
            return ModelNotFoundError(model, installed)
        if err.status_code == 404 and "not found" in detail:
            return ModelNotFoundError(detail.split('"')[1] if '"' in detail else detail)
        return OllamaResponseError(detail, err.status_code)
    return None


@contextlib.contextmanager
def translating(
    *,
    url: str,
    model: str | None = None,
    list_models: Callable[[], Sequence[str]] | None = None,
) -> Iterator[None]:
    """Context manager: raise raw Ollama/httpx errors inside it as OllangErrors."""
    try:
        yield
    except OllangError:
        raise
    except Exception as err:
        ours = translate_error(err, url=url, model=model, list_models=list_models)
        if ours is None:
            raise
        raise ours from err
