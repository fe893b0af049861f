"""The event loop for the benchmark's own processes (mock upstream, load generators).

uvloop when it is installed: these processes are not what is measured, and a
faster loop keeps them from becoming the bottleneck. The servers under test run
whatever loop their own CLI picks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from typing import Coroutine, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """SIGTERM or SIGINT arrived; the run was cancelled and has cleaned up."""


def loop_name() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[object, object, T]) -> T:
    """Run `main` to the end; SIGTERM or SIGINT cancel it (so its `finally` blocks run) and raise Stopped."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if stopped:
            raise Stopped from None
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
