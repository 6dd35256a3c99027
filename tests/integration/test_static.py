"""Lint, format and types: the checks CI makes on the code itself, in the one test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import ROOT

BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", ".")],
    ids=["ruff check", "ruff format"],
)
def test_ruff(command):
    out = _run(str(BIN / command[0]), *command[1:])
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_no_errors_in_the_package():
    """mypy over the whole ``ollang`` package, untyped definitions refused (pyproject)."""
    out = _run(str(BIN / "mypy"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout
