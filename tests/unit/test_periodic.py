"""The server's background timers: a failing run is logged and the next one goes on."""

from __future__ import annotations

import asyncio
import logging

from ollang.server.periodic import Periodic


def test_a_failing_run_is_logged_and_the_timer_goes_on_until_stopped(caplog):
    runs: list[int] = []

    async def action() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("store down")

    async def main() -> int:
        timer = Periodic(action, 0.01, "do the thing")
        timer.start()
        timer.start()  # once
        while len(runs) < 3:
            await asyncio.sleep(0.01)
        await timer.stop()
        stopped_at = len(runs)
        await asyncio.sleep(0.05)
        assert len(runs) == stopped_at  # nothing after stop
        return stopped_at

    with caplog.at_level(logging.WARNING, logger="ollang.server"):
        assert asyncio.run(main()) >= 3
    assert [r.getMessage() for r in caplog.records] == ["could not do the thing: store down"]
