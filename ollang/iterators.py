"""Closing streams early, and opening them again until one starts (standard library only).

``closing_iter``/``aclosing_iter`` do what ``contextlib.closing``/``aclosing`` do, for any
iterator; ``first_success``/``afirst_success`` are the one loop that retries or fails over
a stream that broke before its first item.

LangChain's ``stream``/``astream`` are typed as plain iterators, though they are
generators; closing them when a consumer stops is what closes the HTTP request to
the model server (and stops generation there), so it must never be skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

__all__ = [
    "aclose_iter",
    "aclosing_iter",
    "afirst_success",
    "close_iter",
    "closing_iter",
    "first_success",
]

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


def close_iter(iterator: Iterator[object]) -> None:
    """Close ``iterator`` if it can be closed."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


async def aclose_iter(iterator: AsyncIterator[object]) -> None:
    """``aclose`` ``iterator`` if it can be closed."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def first_success(
    open_stream: Callable[[int], Iterator[T]], retry: Callable[[Exception, int], bool]
) -> Iterator[T]:
    """Stream from ``open_stream(attempt)``, opening another while one fails before its
    first item: ``retry(err, attempt)`` says whether to (else ``err`` is raised; it may
    raise an error of its own). After the first item, errors are the stream's own.

    The one loop behind retries (``with_retry``) and failover over hosts: what counts is
    what happened before anything was shown or stored.
    """
    attempt = 0
    while True:
        attempt += 1
        stream = open_stream(attempt)
        try:
            first = next(stream)
        except StopIteration:
            return
        except Exception as err:
            close_iter(stream)
            if not retry(err, attempt):
                raise
            continue
        with closing_iter(stream):
            yield first
            yield from stream
        return


async def afirst_success(
    open_stream: Callable[[int], AsyncIterator[T]],
    retry: Callable[[Exception, int], Awaitable[bool]],
) -> AsyncIterator[T]:
    """Async :func:`first_success` (``retry`` is awaited: it may sleep)."""
    attempt = 0
    while True:
        attempt += 1
        stream = open_stream(attempt)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            return
        except Exception as err:
            await aclose_iter(stream)
            if not await retry(err, attempt):
                raise
            continue
        async with aclosing_iter(stream):
            yield first
            async for item in stream:
                yield item
        return
