"""One thread per process that does the server's store work, in batches.

Hundreds of concurrent turns each write the question, a flush of the answer every
second, and the final answer. Done one ``asyncio.to_thread`` call at a time, every
write pays a thread hop and queues behind the others on the store's write lock. Here
every store call goes on one queue; a single thread takes whatever has queued while
it was busy and runs it inside one :meth:`~ollang.memory.ChatStore.batch` (one
transaction, a savepoint per call, so one failing call changes nothing else).

* :meth:`StoreWriter.call` awaits the result: what must be on disk before the turn goes
  on (the claim and the question, before the model is called; the final answer, before
  the client hears "done") is awaited, so the data-loss rule is unchanged.
* :meth:`StoreWriter.submit` does not wait: the once-a-second flushes of a streaming
  answer, and the partial answer of a turn that was cancelled (it is written even
  though the task that asked is gone).

A transaction's commit was a third of the writer's time at 200 streaming clients, and
most batches held one call. So a batch of submitted calls only *lingers* up to
``linger`` seconds for company: it goes with the next awaited call (which never
waits: it ends the linger at once), or alone when the linger is over. A flush is
thus at most ``linger`` late; the turn engine flushes that much more often, so a
crash still loses at most a second of an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ollang.errors import OllangError
from ollang.memory import ChatStore

__all__ = ["StoreWriter"]

log = logging.getLogger("ollang.server")

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None"]
_STOP = object()


def _deliver(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class StoreWriter:
    """Runs store calls on one thread, batching those that queue up.

    Args:
        store: The session store.
        max_batch: Most calls in one transaction.
        linger: Seconds a batch of submitted (unawaited) calls may wait for more.
    """

    def __init__(self, store: ChatStore, *, max_batch: int = 256, linger: float = 0.1) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.calls = 0

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="ollang-store-writer", daemon=True
                    )
                    self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the writer thread and wait for it (committed) to finish."""
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((lambda: fn(*args), future, loop))
        return await future

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the writer thread without waiting (failures are logged)."""
        self._ensure_thread()
        self._queue.put((lambda: fn(*args), None, None))

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs: list[_Job] = [first]  # type: ignore[list-item]
            stop = self._gather(jobs)
            self._execute(jobs)
            if stop:
                return

    def _gather(self, jobs: list[_Job]) -> bool:
        """Add what queued to ``jobs``; while none is awaited, wait up to ``linger`` for
        more. True when the writer was asked to stop."""
        deadline = time.monotonic() + self.linger
        awaited = jobs[0][1] is not None
        while len(jobs) < self.max_batch:
            wait = 0.0 if awaited else deadline - time.monotonic()
            try:
                more = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            jobs.append(more)  # type: ignore[arg-type]
            awaited = awaited or more[1] is not None  # type: ignore[index]
        return False

    def _execute(self, jobs: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with self.store.batch():
                for fn, _future, _loop in jobs:
                    try:
                        outcomes.append((fn(), None))
                    except BaseException as err:  # this call only; the others go on
                        outcomes.append((None, err))
        except BaseException as err:  # the commit failed: nothing of the batch is stored
            outcomes = [(None, own or err) for _, own in outcomes]
            outcomes += [(None, err)] * (len(jobs) - len(outcomes))
        self.batches += 1
        self.calls += len(jobs)
        for (_fn, future, loop), (value, error) in zip(jobs, outcomes, strict=True):
            if future is not None and loop is not None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                    loop.call_soon_threadsafe(_deliver, future, value, error)
            elif error is not None:
                # A store error (PostgreSQL down, disk full) is a known condition, said in
                # one line; anything else is a bug, with its traceback.
                known = isinstance(error, OllangError)
                log.error(
                    "a background store write failed: %s", error, exc_info=None if known else error
                )
