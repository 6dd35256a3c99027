"""The real ``ollang`` CLI as a subprocess, for the CLI tests and the reliability suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["OLLANG", "ROOT", "cli", "cli_popen"]

ROOT = Path(__file__).resolve().parent.parent
#: The command line that runs the installed CLI: ``python -m ollang`` (the same as ``ollang``).
OLLANG = [sys.executable, "-m", "ollang"]


def cli(
    *args: str, env: dict, input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run ``ollang ARGS`` to completion, stdin from ``input`` (empty by default)."""
    return subprocess.run(
        [*OLLANG, *args],
        input=input if input is not None else b"",
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def cli_popen(*args: str, env: dict) -> subprocess.Popen:
    """Start ``ollang ARGS`` with piped stdout/stderr and no stdin."""
    return subprocess.Popen(
        [*OLLANG, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
