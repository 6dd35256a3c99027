"""Closing streams early: what ``contextlib.closing``/``aclosing`` do, for any iterator.

LangChain's ``stream``/``astream`` are typed as plain iterators, though they are
generators; closing them when a consumer stops is what closes the HTTP request to
the model server (and stops generation there), so it must never be skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

__all__ = ["aclosing_iter", "closing_iter"]

T = TypeVar("T")


@contextlib.contextmanager
def closing_iter(iterator: Iterator[T]) -> Iterator[Iterator[T]]:
    """Yield ``iterator``; close it on exit if it can be closed."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


@contextlib.asynccontextmanager
async def aclosing_iter(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Yield ``iterator``; ``aclose`` it on exit if it can be closed."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
