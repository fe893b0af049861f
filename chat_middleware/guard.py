"""Stops a request's work when its client leaves or one of its deadlines passes.

Under hypercorn a client that leaves shows only as `http.disconnect` from
`receive()`; a `send` to it does not fail. So while chatd waits on an upstream,
a watcher awaits `receive()` and cancels the request task when the client goes,
which closes the upstream at once. Deadlines use the same cancellation.

Neither may cost a request anything worth measuring, so no request has a timer
of its own: one `Clock` per event loop ticks every TICK seconds while any
request is guarded and checks them all. A chunk only raises a flag the next
tick reads, and a request is watched for its client from its second tick on,
so one that ends within TICK seconds never creates a task. The price is
precision: a deadline passes up to two ticks late, and a disconnect is noticed
at most two ticks into a request.

    guard = Guard(receive)
    guard.start()
    try:
        guard.arm(timeouts)       # per upstream attempt
        ...                       # upstream work; guard.chunk() after each read
    except asyncio.CancelledError:
        reason = guard.claim()    # "disconnect", "first_byte", "idle" or "total"
        if reason is None:
            raise                 # cancelled by someone else: let it through
    finally:
        guard.stop()
"""

from __future__ import annotations

import asyncio
from typing import Callable

from .settings import Timeouts
from .types import Receive

DISCONNECT = "disconnect"
TICK = 0.05
"""Seconds between two checks of every guarded request."""
KEEPALIVE = 15.0
"""Seconds of upstream silence after which a stream that has begun gets its surface's keep-alive
(an Anthropic `ping`), so that proxies and clients waiting on an idle socket do not give up."""


class Clock:
    """The one timer of an event loop's guarded requests; it runs only while there are some."""

    __slots__ = ("loop", "guards", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.guards: set[Guard] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, guard: Guard) -> None:
        self.guards.add(guard)
        if self._timer is None:
            self._timer = self.loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        if not self.guards:
            self._timer = None
            return
        now = self.loop.time()
        for guard in tuple(self.guards):
            guard.check(now)
        self._timer = self.loop.call_later(TICK, self._tick)


_clock: Clock | None = None


def clock_of(loop: asyncio.AbstractEventLoop) -> Clock:
    """The loop's clock (almost always the one of the last call: one loop per process)."""
    global _clock
    clock = _clock
    if clock is None or clock.loop is not loop:
        clock = _clock = Clock(loop)
    return clock


class Guard:
    __slots__ = ("_receive", "_clock", "_task", "_watcher", "_ticks", "_armed", "_idle", "_first_byte_at",
                 "_total_at", "_last_chunk", "_quiet_since", "fresh", "reason", "keepalive")

    def __init__(self, receive: Receive, keepalive: Callable[[], None] | None = None) -> None:
        """`keepalive` is called after KEEPALIVE seconds of upstream silence, and again after each
        KEEPALIVE more, while an attempt is armed."""
        self._receive = receive
        self.keepalive = keepalive
        self._watcher: asyncio.Task | None = None
        self._ticks = 0
        self._armed = False
        self.fresh = False
        self.reason: str | None = None

    def start(self) -> None:
        """Begin guarding; call after the request body has been read."""
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task(loop)
        self._clock = clock_of(loop)
        self._clock.add(self)

    def arm(self, timeouts: Timeouts, stream: bool = True) -> None:
        """Deadlines for one upstream attempt: first byte and total, from now; idle once bytes flow.

        A non-streamed answer has no first-byte deadline: real upstreams send nothing, not even
        the response head, until the whole answer exists, so only the total deadline bounds it.
        """
        now = self._clock.loop.time()
        self._idle = timeouts.idle
        self._total_at = now + timeouts.total
        self._first_byte_at = now + timeouts.first_byte if stream else self._total_at
        self._last_chunk: float | None = None
        self._quiet_since = now
        self.fresh = False
        self._armed = True

    def chunk(self) -> None:
        """An upstream chunk arrived: the idle deadline starts again (from the next tick)."""
        self.fresh = True

    def disarm(self) -> None:
        """No deadline until the next arm(); the client is still watched."""
        self._armed = False

    def stop(self) -> None:
        """Stop guarding. Synchronous, so no cancel can land after it."""
        self._armed = False
        self._clock.guards.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def claim(self) -> str | None:
        """Inside `except CancelledError`: why the guard cancelled the work, or None.

        A deadline is claimed once (the next attempt may arm new ones); a
        disconnect stays, since the client does not come back.
        """
        reason = self.reason
        if reason is None:
            return None
        uncancel = getattr(self._task, "uncancel", None)
        if uncancel is not None:
            uncancel()
        if reason != DISCONNECT:
            self.reason = None
        return reason

    def check(self, now: float) -> None:
        """The clock's tick: start watching the client, or fire a deadline that has passed."""
        self._ticks += 1
        if self._ticks == 2:
            self._watcher = self._clock.loop.create_task(self._watch())
        if not self._armed:
            return
        if self.fresh:
            self.fresh = False
            self._last_chunk = self._quiet_since = now
        elif self.keepalive is not None and now - self._quiet_since >= KEEPALIVE:
            self._quiet_since = now
            self.keepalive()
        if self._last_chunk is None:
            at, reason = self._first_byte_at, "first_byte"
        else:
            at, reason = self._last_chunk + self._idle, "idle"
        if at >= self._total_at:
            at, reason = self._total_at, "total"
        if now >= at:
            self._fire(reason)

    def _fire(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._fire(DISCONNECT)
                return
