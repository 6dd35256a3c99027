"""Start-up trimming for the ``ollang`` command (not used by the library or the server).

``import httpx`` also imports httpx's own command-line tool (``httpx._main``: click,
pygments' lexers, rich.syntax), about 100 ms here, on every ``ollang models`` and
``ollang ask``. ollang never runs that tool, so :func:`defer_httpx_cli` puts a stand-in
module in its place that loads the real one only if ``httpx.main()`` is ever called.
No library offers this; it is the one hand-written start-up trick in the CLI.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["defer_httpx_cli"]


def defer_httpx_cli() -> None:
    """Make ``import httpx`` skip ``httpx._main`` until ``httpx.main()`` is called."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main", "Loads httpx's CLI on first use (ollang).")

    def main(*args: Any, **kwargs: Any) -> Any:
        sys.modules.pop("httpx._main", None)
        from httpx._main import main as real_main

        return real_main(*args, **kwargs)

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in
