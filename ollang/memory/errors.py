"""Errors of the session stores: opening, reading and writing them, and session ids."""

from __future__ import annotations

from collections.abc import Sequence

from ollang.errors import OllangError, with_detail

__all__ = [
    "NotAnOllangDatabaseError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownStoreURLError",
]


class StoreError(OllangError):
    """The session store cannot be opened, read or written."""

    exit_code = 1
    http_status = 500


class StoreUnavailableError(StoreError):
    """The store's server (PostgreSQL) does not answer; retrying later may work."""

    http_status = 503


class NotAnOllangDatabaseError(StoreError):
    """A file at the store path exists but is not an ollang database."""

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        super().__init__(
            with_detail(f"{path} is not an ollang database", detail),
            "it was left untouched; point OLLANG_HOME or OLLANG_STORE_URL somewhere else, "
            "or move the file",
        )


class UnknownStoreURLError(StoreError, ValueError):
    """A store URL whose scheme ollang does not know."""

    exit_code = 2
    http_status = 500

    def __init__(self, url: str, schemes: Sequence[str]) -> None:
        self.url = url
        super().__init__(
            f"unknown store URL {url!r}",
            "accepted schemes: " + ", ".join(schemes),
        )


class SessionNotFoundError(StoreError, LookupError):
    """No session with that id exists."""

    exit_code = 1
    http_status = 404

    def __init__(
        self, session_id: str, hint: str = "list sessions with `ollang sessions list`"
    ) -> None:
        self.session_id = session_id
        super().__init__(f"no session {session_id!r}", hint)


class SessionExistsError(StoreError):
    """A session with that id already exists (e.g. as a rename, fork or import target)."""

    exit_code = 1
    http_status = 409

    def __init__(self, session_id: str, hint: str = "choose another name") -> None:
        self.session_id = session_id
        super().__init__(f"a session named {session_id!r} already exists", hint)
