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
    "HostAuthError",
    "HostBusyError",
    "InvalidInputError",
    "InvalidResponseError",
    "ModelNotFoundError",
    "NotSupportedError",
    "OllamaResponseError",
    "OllamaTimeoutError",
    "OllamaUnavailableError",
    "OllangError",
    "SettingsError",
    "engine_at",
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


def engine_at(url: str, kind: str = "ollama") -> str:
    """How messages name a model host of ``kind``: ``Ollama at URL``, or ``the
    OpenAI-compatible engine at URL`` for an ``openai`` host."""
    return f"the OpenAI-compatible engine at {url}" if kind == "openai" else f"Ollama at {url}"


def _engine(kind: str) -> str:
    return "the OpenAI-compatible engine" if kind == "openai" else "Ollama"


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

    def __init__(self, url: str, detail: str = "", *, kind: str = "ollama") -> None:
        self.url = url
        self.kind = kind
        hint = "start it with `ollama serve`, or set OLLAMA_HOST to where it runs"
        if kind == "openai":
            hint = "is the engine running there? check the host's URL (with its /v1)"
        super().__init__(with_detail(f"cannot reach {engine_at(url, kind)}", detail), hint)


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

    def __init__(self, url: str, detail: str = "", *, kind: str = "ollama") -> None:
        self.url = url
        self.kind = kind
        super().__init__(
            with_detail(f"{engine_at(url, kind)} did not answer in time", detail),
            "the model may still be loading; retry, or raise OLLANG_READ_TIMEOUT (seconds)",
        )


class OllamaResponseError(OllangError):
    """Ollama answered with an error (other than a missing model), before or mid-stream."""

    exit_code = 1
    http_status = 502

    def __init__(
        self, detail: str, status_code: int | None = None, *, kind: str = "ollama"
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        self.kind = kind
        where = "mid-answer" if status_code in (None, -1) else f"HTTP {status_code}"
        hint = "Ollama's log says more (where `ollama serve` runs); try again"
        if kind == "openai":
            hint = "the engine's log says more; try again"
        super().__init__(f"{_engine(kind)} reported an error ({where}): {detail}", hint)


class ConnectionCutError(OllamaResponseError):
    """The connection to a model host closed before its answer was complete.

    ``status_code`` is ``None``: no status tells why, so the host may have died (the
    router checks it again at once, and a turn that has no token yet fails over).
    """

    def __init__(
        self, url: str, detail: str = "connection closed", *, kind: str = "ollama"
    ) -> None:
        OllangError.__init__(
            self,
            f"the connection to {engine_at(url, kind)} was cut mid-response",
            "is the engine still running? try again"
            if kind == "openai"
            else "is Ollama still running (`ollama serve`)? try again",
        )
        self.status_code = None
        self.detail = detail
        self.url = url
        self.kind = kind


class InvalidResponseError(OllamaResponseError):
    """What came back is not Ollama's HTTP and JSON (the address is something else)."""

    def __init__(
        self, url: str, detail: str, *, kind: str = "ollama", what: str = "not HTTP and JSON"
    ) -> None:
        OllangError.__init__(
            self,
            f"{engine_at(url, kind)} sent an invalid response ({what}: {detail})",
            "check that the host's URL points at an OpenAI-compatible API (its /v1)"
            if kind == "openai"
            else "check that OLLAMA_HOST points at an Ollama server",
        )
        self.status_code = -1
        self.detail = detail
        self.url = url
        self.kind = kind


class HostAuthError(OllamaResponseError):
    """The host refused ollang's credentials (HTTP 401 or 403): its ``key=`` is wrong or
    missing. The request goes to another host; this one is down until it is fixed."""

    def __init__(self, url: str, detail: str, status_code: int, *, kind: str = "ollama") -> None:
        OllangError.__init__(
            self,
            f"{engine_at(url, kind)} refused ollang's key (HTTP {status_code}): {detail}",
            "set the host's key: openai+http://host:port/v1?key=YOUR_KEY "
            "(OLLANG_OLLAMA_HOSTS or --ollama-host)",
        )
        self.status_code = status_code
        self.detail = detail
        self.url = url
        self.kind = kind


class HostBusyError(OllamaResponseError):
    """The host is rate-limited or full (HTTP 429): another host takes the request, and
    this one rests for its ``Retry-After`` seconds. When no host is left, the client
    gets the 429 (and the wait)."""

    http_status = 429

    def __init__(
        self, url: str, detail: str, retry_after: float | None = None, *, kind: str = "ollama"
    ) -> None:
        wait = f"retry after {retry_after:g} s" if retry_after is not None else "retry shortly"
        OllangError.__init__(
            self,
            f"{engine_at(url, kind)} is busy (HTTP 429): {detail}",
            f"{wait}, or add hosts (several may serve one model)",
        )
        self.status_code = 429
        self.detail = detail
        self.url = url
        self.kind = kind
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        """What every dialect's 429 carries: the host's ``Retry-After`` (whole seconds)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, int(-(-self.retry_after // 1))))}


class NotSupportedError(OllangError):
    """The host a request is for has no such operation (an OpenAI-compatible engine
    neither pulls, removes, copies, creates nor pushes models, nor says what is loaded):
    a bad request for that host, never a failure of the server."""

    exit_code = 2
    http_status = 400

    def __init__(self, what: str, host: str, kind: str) -> None:
        super().__init__(
            f"{what} is not supported by this host ({kind} kind): {host}",
            "manage its models with the engine's own tools; ollang pulls, removes and "
            "lists loaded models on Ollama hosts only",
        )
        self.host = host
        self.kind = kind


class ContextWindowError(OllangError):
    """The input alone does not fit the model's context window."""

    exit_code = 1
    http_status = 413
