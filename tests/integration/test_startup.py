"""The CLI's start-up trimming keeps httpx whole."""

from __future__ import annotations

import subprocess
import sys


def test_httpx_cli_is_deferred_but_still_works():
    code = (
        "import cli, sys, httpx; "
        "assert 'pygments' not in sys.modules, 'httpx._main was imported'; "
        ""
        "sys.argv = ['httpx', '--help']; httpx.main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # The real httpx CLI ran (its --help), loaded on first use.
    assert out.returncode == 0, out.stderr
    assert "Usage: httpx" in out.stdout
