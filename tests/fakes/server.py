"""Run an aiohttp app on loopback from a private thread, for sync tests and shell scripts.

Sync tests (httpx, the openai and ollama SDKs) block the calling thread, so
the fake upstreams live on their own event loop in their own thread. The
socket is bound once, on port 0, and the kernel's choice is read back from
the listening socket: no "find a free port, close it, bind again" race.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import TracebackType

from aiohttp import web

SECONDS = 1.0


class BackgroundServer:
    """An `aiohttp.web.Application` served on 127.0.0.1 by a dedicated thread.

    Example::

        with BackgroundServer(app) as server:
            httpx.get(server.url + "/api/version")

    `handler_cancellation=True` makes aiohttp cancel a handler when its client
    disconnects, so a fake notices (and counts) an abandoned stream at once.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 1 * SECONDS,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, the real bound port (only once started)."""
        if not self.running:
            raise RuntimeError("server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._ready.is_set() and self._error is None

    def start(self) -> BackgroundServer:
        """Start serving; returns once the socket is listening (raises if binding failed)."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name=f"fake-upstream-{id(self):x}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Close the socket and every connection, then join the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None
        self._loop = None
        self._stopping = None
        self._ready.clear()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), which re-raises it
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            shutdown_timeout=self.shutdown_timeout,
            access_log=None,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()


def serve_until_signalled(server: BackgroundServer) -> None:
    """Start `server`, print its URL as one flushed line, serve until SIGTERM or SIGINT.

    Used by the fakes' `python -m` entry points so shell scripts can read the
    URL from stdout and stop the fake with `kill`.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server:
            print(server.url, flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
