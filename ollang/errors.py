"""The base of every error ollang reports to a user (standard library only).

Every error a user can see derives from :class:`OllangError`. Each carries a
one-line ``message`` (what went wrong) and a ``hint`` (what to do about it), so
the CLI can print ``error: ...`` plus a hint line and the server can answer
``{"error": ..., "hint": ...}`` without knowing the details. Each class also
names the CLI exit code and the HTTP status it stands for.

The families live with the layer that raises them: store errors in
:mod:`ollang.memory.errors`, model-server errors in :mod:`ollang.chains.errors`,
HTTP-only ones in :mod:`ollang.server.errors`.
"""

from __future__ import annotations

__all__ = ["InvalidInputError", "OllangError", "SettingsError"]


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


class InvalidInputError(OllangError, ValueError):
    """The caller's input cannot be used (e.g. empty text, a malformed id or option)."""

    exit_code = 2
    http_status = 422


class SettingsError(OllangError, ValueError):
    """An environment variable (or option standing for one) has a value ollang cannot read."""

    exit_code = 2
    http_status = 500
