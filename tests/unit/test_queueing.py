"""The waiting room (ollang.routing.queueing) and the router's use of it: who gets a freed
slot under each policy, the keys' caps, the queue limits, and waiters that give up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ollang.routing.hosts import OllamaHost
from ollang.routing.queueing import KeyShare, QueueFullError, Waiter, WaitingRoom
from ollang.routing.router import Router
from ollang.settings import HostSpec, Settings
from ollang.transport.manage import ModelDetails

A = KeyShare("a")
B = KeyShare("b")


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Slots:
    """Hosts as the room sees them: a count of free slots per name."""

    def __init__(self, **free: int) -> None:
        self.free = dict(free)

    def picker(self, *allowed: str) -> Callable[[], str | None]:
        def pick() -> str | None:
            names = allowed or tuple(self.free)
            return next((n for n in names if self.free.get(n, 0) > 0), None)

        return pick

    def take(self, name: str) -> None:
        self.free[name] -= 1


def _lease(room: WaitingRoom[str], slots: Slots, key: KeyShare, *allowed: str) -> int:
    got = room.try_now(key, slots.picker(*allowed), slots.take)
    assert got is not None
    return got[1]


def _wait(room: WaitingRoom[str], slots: Slots, key: KeyShare, *allowed: str) -> Waiter[str]:
    return room.enqueue(key, slots.picker(*allowed), slots.take)


def _served(waiters: list[Waiter[str]]) -> list[int]:
    return [i for i, w in enumerate(waiters) if w.future.done()]


def _free_one(room: WaitingRoom[str], slots: Slots, key: KeyShare, lease: int, host: str) -> None:
    slots.free[host] += 1
    room.release(key, lease)
    room.dispatch()


def test_fair_gives_the_slot_to_the_key_with_less_recent_use() -> None:
    async def main() -> None:
        clock = Clock()
        room: WaitingRoom[str] = WaitingRoom("fair", clock=clock)
        slots = Slots(h=1)
        lease = _lease(room, slots, A)
        waiters = [_wait(room, slots, A) for _ in range(5)]
        clock.now = 3.0
        late = _wait(room, slots, B)  # arrived last, but B has used nothing
        clock.now = 5.0
        _free_one(room, slots, A, lease, "h")
        assert late.future.done() and late.future.result() == "h"
        assert _served(waiters) == []  # exactly one waiter was given the slot
        assert room.held("b") == 1 and room.usage("a") == pytest.approx(5.0)

    asyncio.run(main())


def test_fifo_serves_in_arrival_order_across_keys() -> None:
    async def main() -> None:
        room: WaitingRoom[str] = WaitingRoom("fifo", clock=Clock())
        slots = Slots(h=1)
        lease = _lease(room, slots, A)
        first, second, late = _wait(room, slots, A), _wait(room, slots, A), _wait(room, slots, B)
        _free_one(room, slots, A, lease, "h")
        assert (first.future.done(), second.future.done(), late.future.done()) == (
            True,
            False,
            False,
        )

    asyncio.run(main())


def test_fair_is_first_come_first_served_within_a_key() -> None:
    async def main() -> None:
        clock = Clock()
        room: WaitingRoom[str] = WaitingRoom("fair", clock=clock)
        slots = Slots(h=1)
        lease = _lease(room, slots, B)
        waiters = [_wait(room, slots, A) for _ in range(4)]
        order: list[int] = []
        for _ in range(4):
            clock.now += 1
            key = B if not order else A
            _free_one(room, slots, key, lease, "h")
            served = [i for i in _served(waiters) if i not in order]
            assert len(served) == 1
            order += served
            lease = waiters[served[0]].lease or 0
        assert order == [0, 1, 2, 3]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("weight_b", "expected"),
    [(1.0, "a"), (4.0, "b")],  # B used 2x A's time: served first only with weight 4
)
def test_weights_divide_the_recent_use(weight_b: float, expected: str) -> None:
    async def main() -> None:
        clock = Clock()
        room: WaitingRoom[str] = WaitingRoom("fair", clock=clock, half_life=1e9)
        b = KeyShare("b", weight=weight_b)
        slots = Slots(h=1)
        lease = _lease(room, slots, A)
        clock.now = 1.0
        _free_one(room, slots, A, lease, "h")  # A used 1 s
        lease = _lease(room, slots, b)
        wa, wb = _wait(room, slots, A), _wait(room, slots, b)
        clock.now = 3.0
        _free_one(room, slots, b, lease, "h")  # B used 2 s
        assert {"a": wa, "b": wb}[expected].future.done()
        assert not {"a": wb, "b": wa}[expected].future.done()

    asyncio.run(main())


def test_recent_use_decays_with_the_half_life() -> None:
    async def main() -> None:
        clock = Clock()
        room: WaitingRoom[str] = WaitingRoom("fair", clock=clock, half_life=10.0)
        slots = Slots(h=1)
        lease = _lease(room, slots, A)
        clock.now = 8.0
        assert room.usage("a") == pytest.approx(8.0)  # running leases count as they run
        room.release(A, lease)
        clock.now = 18.0
        assert room.usage("a") == pytest.approx(4.0)

    asyncio.run(main())


def test_a_key_at_its_max_concurrent_waits_while_others_are_served() -> None:
    async def main() -> None:
        room: WaitingRoom[str] = WaitingRoom("fifo", clock=Clock())
        capped = KeyShare("a", max_concurrent=1)
        slots = Slots(h=3)
        lease = _lease(room, slots, capped)
        assert room.try_now(capped, slots.picker(), slots.take) is None  # at its cap
        held_back = _wait(room, slots, capped)
        other = _wait(room, slots, B)
        assert not held_back.future.done() and other.future.done()
        room.release(capped, lease)
        room.dispatch()
        assert held_back.future.done()

    asyncio.run(main())


def test_a_waiter_only_takes_a_host_it_can_use() -> None:
    async def main() -> None:
        room: WaitingRoom[str] = WaitingRoom("fifo", clock=Clock())
        slots = Slots(x=0, y=0)
        on_x, on_y = _wait(room, slots, A, "x"), _wait(room, slots, B, "y")
        slots.free["y"] = 1
        room.dispatch()
        assert not on_x.future.done() and on_y.future.result() == "y"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("limits", "who"),
    [({"max_queue": 2}, "overall"), ({"max_queue_per_key": 2}, "per key")],
)
def test_a_full_queue_is_a_429_with_retry_after(limits: dict[str, int], who: str) -> None:
    async def main() -> None:
        clock = Clock()
        room: WaitingRoom[str] = WaitingRoom("fair", clock=clock, **limits)  # type: ignore[arg-type]
        slots = Slots(h=1)
        lease = _lease(room, slots, A)
        clock.now = 4.0
        _free_one(room, slots, A, lease, "h")
        _lease(room, slots, A)
        _wait(room, slots, A), _wait(room, slots, A)
        with pytest.raises(QueueFullError) as caught:
            _wait(room, slots, A)
        err = caught.value
        assert err.http_status == 429
        assert err.retry_after >= 4 and err.headers["Retry-After"] == str(err.retry_after)
        if who == "per key":
            _wait(room, slots, B)  # another key still has room

    asyncio.run(main())


def test_policy_must_be_known() -> None:
    with pytest.raises(ValueError, match="unknown queue policy"):
        WaitingRoom("lifo")  # type: ignore[arg-type]


# -- the router -------------------------------------------------------------------
def _router(policy: str = "fair", **limits: int) -> Router:
    url = "http://h1:11434"
    host = OllamaHost(HostSpec(url, max_concurrent=1), Settings(ollama_url=url))
    host.state.up = True
    host.state.version = "0.12.0"
    host.state.models = {"m:latest": ModelDetails(name="m:latest", size=1)}
    return Router([host], queue=WaitingRoom(policy, **limits))  # type: ignore[arg-type]


def test_router_hands_a_freed_slot_to_exactly_one_waiter_in_fair_order() -> None:
    async def main() -> None:
        router = _router()
        first = await router.lease("m", key=A)
        tasks = [asyncio.create_task(router.lease("m", key=A)) for _ in range(3)]
        await asyncio.sleep(0.01)
        b_task = asyncio.create_task(router.lease("m", key=B))
        await asyncio.sleep(0.01)
        assert len(router.queue.waiters) == 4
        first.release()
        await asyncio.sleep(0.01)
        assert b_task.done() and not any(t.done() for t in tasks)
        assert router.hosts[0].in_flight == 1
        (await b_task).release()
        await asyncio.sleep(0.01)
        assert [t.done() for t in tasks] == [True, False, False]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_queue_at_once() -> None:
    async def main() -> None:
        router = _router()
        held = await router.lease("m", key=A)
        gone = asyncio.create_task(router.lease("m", key=B))
        stays = asyncio.create_task(router.lease("m", key=A))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert [w.key.name for w in router.queue.waiters] == ["a"]
        held.release()
        await asyncio.sleep(0.01)
        assert stays.done() and router.hosts[0].in_flight == 1
        (await stays).release()
        assert router.hosts[0].in_flight == 0

    asyncio.run(main())


def test_a_slot_given_as_the_waiter_is_cancelled_passes_on() -> None:
    async def main() -> None:
        router = _router()
        held = await router.lease("m", key=A)
        gone = asyncio.create_task(router.lease("m", key=B))
        nxt = asyncio.create_task(router.lease("m", key=A))
        await asyncio.sleep(0.01)
        held.release()  # given to B's waiter ...
        gone.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(gone, return_exceptions=True)
        await asyncio.sleep(0.01)
        assert nxt.done() and router.hosts[0].in_flight == 1
        assert router.queue.held("b") == 0

    asyncio.run(main())


def test_router_queue_limit_raises_429() -> None:
    async def main() -> None:
        router = _router(max_queue_per_key=1)
        held = await router.lease("m", key=A)
        waiting = asyncio.create_task(router.lease("m", key=A))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await router.lease("m", key=A)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        held.release()

    asyncio.run(main())
