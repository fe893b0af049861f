"""Guard: the deadlines and the disconnect watch that cancel a request's upstream work.

`asyncio.sleep` here stands in for an upstream taking its time, not for synchronisation.
"""

from __future__ import annotations

import asyncio

import pytest

from chat_middleware.config import Timeouts
from chat_middleware.guard import TICK, Guard, clock_of


async def never_disconnects() -> dict:
    await asyncio.Event().wait()
    return {}


async def guarded(timeouts: Timeouts, work, receive=never_disconnects) -> str | None:
    """Run `work(guard)` under a guard; the reason it was cancelled, or None if it finished."""
    guard = Guard(receive)
    guard.start()
    guard.arm(timeouts)
    try:
        await work(guard)
    except asyncio.CancelledError:
        reason = guard.claim()
        assert reason is not None, "cancelled by something other than the guard"
        return reason
    finally:
        guard.stop()
    return None


def run(coroutine):
    return asyncio.run(coroutine)


def test_first_byte_deadline_fires_when_nothing_arrives():
    assert run(guarded(Timeouts(first_byte=0.05, idle=5, total=5), lambda g: asyncio.sleep(2))) == "first_byte"


def test_chunks_keep_a_stream_alive_past_its_idle_deadline_then_idle_fires():
    async def trickle(guard: Guard) -> None:
        for _ in range(8):  # 8 × 0.03 s: well past one idle period, never idle for one
            await asyncio.sleep(0.03)
            guard.chunk()
        await asyncio.sleep(2)

    loop_time = []

    async def timed() -> str | None:
        start = asyncio.get_running_loop().time()
        reason = await guarded(Timeouts(first_byte=5, idle=0.1, total=5), trickle)
        loop_time.append(asyncio.get_running_loop().time() - start)
        return reason

    assert run(timed()) == "idle"
    assert loop_time[0] >= 0.24 + 0.1  # not before the last chunk plus one idle period


def test_idle_shorter_than_first_byte_applies_from_the_first_chunk():
    async def one_chunk(guard: Guard) -> None:
        guard.chunk()
        await asyncio.sleep(2)

    assert run(guarded(Timeouts(first_byte=5, idle=0.05, total=5), one_chunk)) == "idle"


def test_total_deadline_caps_a_stream_that_never_goes_idle():
    async def endless(guard: Guard) -> None:
        while True:
            await asyncio.sleep(0.01)
            guard.chunk()

    assert run(guarded(Timeouts(first_byte=5, idle=1, total=0.1), endless)) == "total"


def test_work_that_finishes_is_not_cancelled_and_no_timer_outlives_it():
    async def quick(guard: Guard) -> None:
        guard.chunk()

    async def scenario() -> str | None:
        reason = await guarded(Timeouts(first_byte=0.05, idle=0.05, total=0.05), quick)
        await asyncio.sleep(0.1)  # past every deadline: a leftover timer would cancel this task
        return reason

    assert run(scenario()) is None


def test_many_requests_share_one_clock_and_each_meets_its_own_deadline():
    async def scenario() -> list[tuple[str | None, float]]:
        loop = asyncio.get_running_loop()

        async def one(first_byte: float) -> tuple[str | None, float]:
            start = loop.time()
            reason = await guarded(Timeouts(first_byte=first_byte, idle=5, total=5), lambda g: asyncio.sleep(5))
            return reason, loop.time() - start

        results = await asyncio.gather(*(one(0.1 + 0.1 * (n % 3)) for n in range(300)))
        assert clock_of(loop).guards == set()  # every stopped guard has left the clock
        return results

    for n, (reason, took) in enumerate(run(scenario())):
        deadline = 0.1 + 0.1 * (n % 3)
        assert reason == "first_byte"
        assert deadline <= took < deadline + 2 * TICK + 0.1  # two ticks late at most, plus a loaded CI


def test_a_quick_request_never_reads_from_the_client():
    calls = []

    async def receive() -> dict:
        calls.append(1)
        return await never_disconnects()

    async def quick(guard: Guard) -> None:
        await asyncio.sleep(0)

    assert run(guarded(Timeouts(), quick, receive)) is None
    assert calls == []
    assert TICK <= 0.05


@pytest.mark.parametrize("disarmed", [False, True])
@pytest.mark.parametrize("after", [0.0, TICK * 3])
def test_a_client_that_leaves_is_noticed_armed_or_between_attempts(disarmed, after):
    left = asyncio.Event()

    async def receive() -> dict:
        await left.wait()
        return {"type": "http.disconnect"}

    async def waits_for_upstream(guard: Guard) -> None:
        if disarmed:
            guard.disarm()
        await asyncio.sleep(after)
        left.set()
        await asyncio.sleep(2)

    assert run(guarded(Timeouts(first_byte=0.5), waits_for_upstream, receive)) == "disconnect"
