"""Work the server does every few seconds in the background, from start-up to shutdown.

The managed keys are re-read every few seconds (:mod:`ollang.server.auth`) and usage is
handed to the store in batches (:mod:`ollang.server.usage`): each is an action on a
timer on the server's event loop, started when the app starts and stopped when it
stops. A failing run is logged and the next one goes on: a store outage must not end
the timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Periodic"]

log = logging.getLogger("ollang.server")


class Periodic:
    """``action`` every ``every`` seconds on the running loop, from :meth:`start` to
    :meth:`stop`.

    Args:
        action: The work; a coroutine function (blocking work goes through
            ``asyncio.to_thread`` inside it).
        every: Seconds between the end of one run and the start of the next.
        what: What the action does, for the log line of a failed run ("re-read the
            managed keys").
    """

    def __init__(self, action: Callable[[], Awaitable[None]], every: float, what: str) -> None:
        self.action = action
        self.every = every
        self.what = what
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.action()
            except Exception as err:  # the next run goes on
                log.warning("could not %s: %s", self.what, err)

    def start(self) -> None:
        """Start the timer on the running loop (once: a second call does nothing)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.what)

    async def stop(self) -> None:
        """Stop the timer (a run under way is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
