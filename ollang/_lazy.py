"""Lazy re-exports for package ``__init__`` modules (PEP 562), standard library only.

A package names its public objects in ``__all__`` and where each lives; the module
holding one is imported on first use. So ``import ollang.chains.structured`` does not
import LangChain, and ``ollang --help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose names live in ``where``.

    Args:
        package: The package's ``__name__`` (for the error message).
        namespace: The package's ``globals()``: a name, once imported, is cached there.
        where: Public name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
