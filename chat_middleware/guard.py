"""Stops a request's work when its client leaves or one of its deadlines passes.

Under hypercorn a client that leaves shows only as `http.disconnect` from
`receive()`; a `send` to it does not fail. So while chatd waits on an upstream,
a watcher awaits `receive()` and cancels the request task when the client goes,
which closes the upstream at once. Deadlines use the same cancellation.

Both cost almost nothing per request and per chunk: one timer per request
serves every deadline, and is moved only when it fires (a chunk just notes the
time); the watcher task starts only once a request has run for WATCH_AFTER
seconds, since a request that ends sooner has nothing worth cancelling.

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

from .config import Timeouts
from .types import Receive

DISCONNECT = "disconnect"
WATCH_AFTER = 0.05
"""Seconds into a request before its client is watched: a disconnect is noticed at most this late."""


class Guard:
    __slots__ = ("_receive", "_loop", "_now", "_task", "_watcher", "_watch_at", "_timer", "_timer_at",
                 "_armed", "_idle", "_first_byte_at", "_total_at", "_last_chunk", "reason")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watcher: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed = False
        self.reason: str | None = None

    def start(self) -> None:
        """Begin guarding; call after the request body has been read."""
        self._loop = asyncio.get_running_loop()
        self._now: Callable[[], float] = self._loop.time
        self._task = asyncio.current_task()
        self._watch_at = self._now() + WATCH_AFTER
        self._schedule(self._watch_at)

    def arm(self, timeouts: Timeouts) -> None:
        """Deadlines for one upstream attempt: first byte and total, from now; idle once bytes flow."""
        now = self._now()
        self._armed = True
        self._idle = timeouts.idle
        self._first_byte_at = now + timeouts.first_byte
        self._total_at = now + timeouts.total
        self._last_chunk: float | None = None
        self._reschedule()

    def chunk(self) -> None:
        """An upstream chunk arrived: the idle deadline starts again."""
        now = self._last_chunk = self._now()
        if now + self._idle < self._timer_at:  # the first chunk, when idle is shorter than first_byte
            self._reschedule()

    def disarm(self) -> None:
        """No deadline until the next arm(); the client is still watched."""
        self._armed = False

    def stop(self) -> None:
        """Stop guarding. Synchronous, so no cancel can land after it."""
        self._armed = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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

    def _deadline(self) -> tuple[float, str]:
        if self._last_chunk is None:
            at, reason = self._first_byte_at, "first_byte"
        else:
            at, reason = self._last_chunk + self._idle, "idle"
        if at >= self._total_at:
            return self._total_at, "total"
        return at, reason

    def _reschedule(self) -> None:
        at = self._deadline()[0] if self._armed else float("inf")
        if self._watcher is None and self._watch_at < at:
            at = self._watch_at
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at == float("inf"):
            self._timer_at = at
        else:
            self._schedule(at)

    def _schedule(self, at: float) -> None:
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._now()
        if self._watcher is None and now >= self._watch_at:
            self._watcher = self._loop.create_task(self._watch())
        if self._armed:
            at, reason = self._deadline()
            if now >= at:
                self._fire(reason)
                return
        self._reschedule()

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
