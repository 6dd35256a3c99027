"""The base of every error ollang reports to a user (standard library only).

Every error a user can see derives from :class:`OllangError`. Each carries a
one-line ``message`` (what went wrong) and a ``hint`` (what to do about it), so
the CLI can print ``error: ...`` plus a hint line and the server can answer
``{"error": ..., "hint": ...}`` without knowing the details. Each class also
names the CLI exit code and the HTTP status it stands for.

The errors of talking to a model host live here too, since every layer reports
them (the transport raises them, routing fails over on them, the CLI and each HTTP
dialect answer them); :mod:`ollang.transport.errors` is the one place that turns raw
transport errors into them. Store errors live in :mod:`ollang.memory.errors`,
HTTP-only ones in :mod:`ollang.server.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConnectionCutError",
    "ContextWindowError",
    "InvalidInputError",
    "InvalidResponseError",
    "ModelNotFoundError",
    "OllamaResponseError",
    "OllamaTimeoutError",
    "OllamaUnavailableError",
    "OllangError",
    "SettingsError",
    "with_detail",
]


class OllangError(Exception):
    """Base class of every error ollang reports to a user.

    Attributes:
        message: What went wrong, one line.
        hint: What the user can do about it, or ``""``.
    """

    #: Process exit code the CLI uses for this kind of error.
    exit_code: int = 1
    #: HTTP status the server uses for this kind of error.
    http_status: int = 500

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


def with_detail(message: str, detail: str) -> str:
    """``message``, then ``detail`` in parentheses when there is one."""
    return f"{message} ({detail})" if detail else message


class InvalidInputError(OllangError, ValueError):
    """The caller's input cannot be used (e.g. empty text, a malformed id or option)."""

    exit_code = 2
    http_status = 422


class SettingsError(OllangError, ValueError):
    """An environment variable (or option standing for one) has a value ollang cannot read."""

    exit_code = 2
    http_status = 500


class OllamaUnavailableError(OllangError, ConnectionError):
    """No Ollama server answers at the configured address."""

    exit_code = 3
    http_status = 503

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        super().__init__(
            with_detail(f"cannot reach Ollama at {url}", detail),
            "start it with `ollama serve`, or set OLLAMA_HOST to where it runs",
        )


class ModelNotFoundError(OllangError, LookupError):
    """The requested model is not installed on the Ollama server."""

    exit_code = 4
    http_status = 404

    def __init__(
        self,
        model: str,
        installed: Sequence[str] | None = None,
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        """``message``/``hint``: say where the model was looked for, when that is not a
        model host (a GGUF path, the registry); by default, the pull hint."""
        self.model = model
        self.installed = list(installed) if installed is not None else None
        if hint is None:
            hint = f"pull it with `ollama pull {model}` (or `ollang models pull {model}`)"
            if self.installed:
                hint += "; installed: " + ", ".join(self.installed)
            elif self.installed == []:
                hint += "; no models are installed yet"
        super().__init__(message or f"model {model!r} not found", hint)


class OllamaTimeoutError(OllangError, TimeoutError):
    """Ollama accepted the request but did not answer in time."""

    exit_code = 1
    http_status = 504

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        super().__init__(
            with_detail(f"Ollama at {url} did not answer in time", detail),
            "the model may still be loading; retry, or raise OLLANG_READ_TIMEOUT (seconds)",
        )


class OllamaResponseError(OllangError):
    """Ollama answered with an error (other than a missing model), before or mid-stream."""

    exit_code = 1
    http_status = 502

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        where = "mid-answer" if status_code in (None, -1) else f"HTTP {status_code}"
        super().__init__(
            f"Ollama reported an error ({where}): {detail}",
            "Ollama's log says more (where `ollama serve` runs); try again",
        )


class ConnectionCutError(OllamaResponseError):
    """The connection to a model host closed before its answer was complete.

    ``status_code`` is ``None``: no status tells why, so the host may have died (the
    router checks it again at once, and a turn that has no token yet fails over).
    """

    def __init__(self, url: str, detail: str = "connection closed") -> None:
        OllangError.__init__(
            self,
            f"the connection to Ollama at {url} was cut mid-response",
            "is Ollama still running (`ollama serve`)? try again",
        )
        self.status_code = None
        self.detail = detail
        self.url = url


class InvalidResponseError(OllamaResponseError):
    """What came back is not Ollama's HTTP and JSON (the address is something else)."""

    def __init__(self, url: str, detail: str) -> None:
        OllangError.__init__(
            self,
            f"Ollama at {url} sent an invalid response (not HTTP and JSON: {detail})",
            "check that OLLAMA_HOST points at an Ollama server",
        )
        self.status_code = -1
        self.detail = detail
        self.url = url


class ContextWindowError(OllangError):
    """The input alone does not fit the model's context window."""

    exit_code = 1
    http_status = 413
