"""The package tree is the architecture: each layer imports only the layers below it.

Read from the source (every import, function-local ones included), so a lazy import
that reaches up a layer is caught as surely as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ollang"

#: From the bottom up; a module may import its own layer and those before it.
LAYERS: list[tuple[str, ...]] = [
    ("ollang", "ollang._lazy", "ollang.errors", "ollang.settings", "ollang.iterators"),
    ("ollang.memory",),
    ("ollang.turns",),
    ("ollang.transport", "ollang.embedded", "ollang.catalog"),
    ("ollang.routing",),
    ("ollang.chains", "ollang.evaluation"),
    ("ollang.server", "ollang.cli", "ollang.commands", "ollang.__main__"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best, level = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "ollang" and module.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, level = len(prefix), index
    if level < 0 and module.startswith("ollang."):
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")
    return level


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("ollang")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("ollang")
        ):
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if not p.is_symlink())


def test_every_module_is_a_real_file_and_belongs_to_a_layer():
    assert SOURCES, "no sources found"
    assert not [p for p in PACKAGE.rglob("*") if p.is_symlink()], "symlinks inside ollang/"
    for path in SOURCES:
        _layer(_module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_point_down_the_layers(path: Path):
    me = _module_name(path)
    mine = _layer(me)
    upward = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if name != "ollang" and _layer(name) > mine
    ]
    assert not upward, f"{me} (layer {mine}) imports from above: {upward}"


@pytest.mark.parametrize(
    ("module", "expected"),
    [("ollang.errors", 0), ("ollang.memory.sqlite.store", 1), ("ollang.server.routes.chat", 6)],
)
def test_layer_lookup(module: str, expected: int):
    assert _layer(module) == expected
