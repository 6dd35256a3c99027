"""Logging for ``ollang serve``: uvicorn's configuration, with query strings kept out of
the access log (they can carry a user's message, or a key pasted into a URL)."""

from __future__ import annotations

import copy
import logging
from typing import Any

__all__ = ["StripQuery", "log_config"]


class StripQuery(logging.Filter):
    """Drops the query string from uvicorn access-log records (``/chat?message=...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client, method, path with query, http version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, sep, _query = args[2].partition("?")
            if sep:
                record.args = (args[0], args[1], f"{path}?…", args[3], args[4])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging config plus :class:`StripQuery` on the access handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["strip_query"] = {"()": StripQuery}
    config["handlers"]["access"].setdefault("filters", []).append("strip_query")
    return config
