"""Session ids: the one rule for what a session id may be, shared by the CLI, the server
and imports, so an id accepted in one place is usable in all of them."""

from __future__ import annotations

import re

__all__ = ["SESSION_ID_HINT", "SESSION_ID_PATTERN", "fork_parent", "is_valid_session_id"]

#: Letters, digits and ``. _ : @ -``, starting with a letter or digit, at most 128
#: characters: safe in a URL path segment, a file name and a terminal.
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
#: What to tell a user whose id was refused.
SESSION_ID_HINT = "use 1-128 letters, digits and . _ : @ - (starting with a letter or digit)"

_SESSION_ID = re.compile(SESSION_ID_PATTERN)
_FORK = re.compile(r"(.+)@[0-9]+")


def is_valid_session_id(value: object) -> bool:
    """Whether ``value`` is a usable session id (``..`` is refused anywhere in it)."""
    return isinstance(value, str) and bool(_SESSION_ID.fullmatch(value)) and ".." not in value


def fork_parent(session_id: str) -> str | None:
    """The session ``session_id`` is a fork name of: ``"abc"`` for ``"abc@2"``, ``None``
    for an id not ending in ``@<digits>``.

    The server copies a recorded session whose client's history diverged to ``<id>@<n>``
    (:mod:`ollang.server.recording`): with API keys, such names are only ever created
    for the owner of ``<id>``.
    """
    match = _FORK.fullmatch(session_id)
    return match.group(1) if match else None
