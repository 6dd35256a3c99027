"""The README's Python examples marked ``<!-- example:NAME -->`` run as written (they carry
their own asserts), so the documentation cannot drift from the code."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
_EXAMPLE = re.compile(r"<!-- example:([\w-]+) -->\n```python\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return dict(_EXAMPLE.findall(README.read_text(encoding="utf-8")))


def test_the_readme_has_its_examples():
    assert {"langgraph", "agent"} <= set(examples())


@pytest.mark.parametrize("name", sorted(examples()))
def test_readme_example_runs(name, monkeypatch):
    # A real module: LangGraph reads the state's type hints from the module it lives in.
    module = types.ModuleType(f"readme_{name}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(examples()[name], f"README.md:{name}", "exec"), module.__dict__)
