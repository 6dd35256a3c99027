"""The Python examples marked ``<!-- example:NAME -->`` in README.md and in the docs pages
(``docs/**/*.md``) run as written (they carry their own asserts), so the documentation
cannot drift from the code."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_EXAMPLE = re.compile(r"<!-- example:([\w-]+) -->\n```python\n(.*?)```", re.S)


def _found() -> list[tuple[str, str, str]]:
    """``(name, page, code)`` for every marked example, in page order."""
    return [
        (name, str(page.relative_to(ROOT)), code)
        for page in PAGES
        for name, code in _EXAMPLE.findall(page.read_text(encoding="utf-8"))
    ]


def examples() -> dict[str, tuple[str, str]]:
    """``{name: (page, code)}``."""
    return {name: (page, code) for name, page, code in _found()}


def test_the_docs_have_their_examples():
    names = [name for name, _page, _code in _found()]
    assert len(names) == len(set(names)), f"example names must be unique: {names}"
    assert {"langgraph", "agent"} <= set(names)
    assert any(page == "README.md" for _name, page, _code in _found())


@pytest.mark.parametrize("name", sorted(examples()))
def test_readme_example_runs(name, monkeypatch):
    page, code = examples()[name]
    # A real module: LangGraph reads the state's type hints from the module it lives in.
    module = types.ModuleType(f"readme_{name.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, f"{page}:{name}", "exec"), module.__dict__)
