"""Stops a request's work when its client leaves or one of its deadlines passes.

Under hypercorn a client that leaves shows only as `http.disconnect` from
`receive()`; a `send` to it does not fail. So while chatd waits on an upstream,
a watcher awaits `receive()` and cancels the request task when the client goes,
which closes the upstream at once. Deadlines use the same cancellation, with one
timer re-armed per chunk: the nearest of the total deadline and the next
first-byte or idle deadline.

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

from .config import Timeouts
from .types import Receive

DISCONNECT = "disconnect"


class Guard:
    __slots__ = ("_receive", "_timeouts", "_loop", "_task", "_watcher", "_timer", "_total_at", "reason")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watcher: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.reason: str | None = None

    def start(self) -> None:
        """Begin watching for the client leaving; call after the request body has been read."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._watcher = self._loop.create_task(self._watch())

    def arm(self, timeouts: Timeouts) -> None:
        """Deadlines for one upstream attempt: first byte and total, from now."""
        self.disarm()
        self._timeouts = timeouts
        self._total_at = self._loop.time() + timeouts.total
        self._arm(timeouts.first_byte, "first_byte")

    def chunk(self) -> None:
        """An upstream chunk arrived: the idle deadline starts again."""
        if self._timer is not None:
            self._timer.cancel()
        self._arm(self._timeouts.idle, "idle")

    def disarm(self) -> None:
        """No deadline until the next arm(); the client is still watched."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        """Stop watching. Synchronous, so no cancel can land after it."""
        self.disarm()
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

    def _arm(self, seconds: float, reason: str) -> None:
        at = self._loop.time() + seconds
        if at >= self._total_at:
            at, reason = self._total_at, "total"
        self._timer = self._loop.call_at(at, self._fire, reason)

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
