"""Standalone chatd under hypercorn, uvicorn or granian: what `chatd --server … --workers N` runs.

All three serve the same plain ASGI app with lifespan on, stop gracefully on
SIGINT or SIGTERM, and write no access log of their own (chatd logs each
request on `chatd.access`). One hypercorn or uvicorn process serves the app
object `chatd` built; worker processes, and granian (which always serves from
processes it spawns), import `WORKER_APP` instead and find the config through
$LAKEHOUSE_CONFIG.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator

from .version import __version__
from .middleware import ChatMiddleware

log = logging.getLogger("chatd")

SECONDS = 1.0
GRACEFUL_TIMEOUT = 5 * SECONDS  # in-flight requests get this long to finish at a stop
WORKER_APP = "chat_middleware.standalone:worker_app"  # a factory: called once in each worker
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
INSTALL = {
    "hypercorn": "pip install hypercorn",
    "uvicorn": "pip install 'chatd[uvicorn]'",
    "granian": "pip install 'chatd[granian]'",
}
SERVERS = tuple(INSTALL)


class ServeError(Exception):
    """chatd cannot serve as asked (server not installed, a bind it cannot use): exit 2."""


def require(server: str) -> None:
    """Import the server now, so that a missing one is a one-line message, not a traceback."""
    try:
        importlib.import_module(server)
    except ImportError:
        raise ServeError(f"--server {server}: {server} is not installed; {INSTALL[server]}") from None


def host_port(bind: str, server: str) -> tuple[str, int]:
    """`127.0.0.1:3220` or `[::1]:3220` → (host, port), for servers that take them apart."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ServeError(f"--server {server} needs a bind of the form HOST:PORT, not {bind!r}")
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def multiproc_dir(workers: int) -> Iterator[None]:
    """One $PROMETHEUS_MULTIPROC_DIR for every worker, so that /v1/chat/metrics counts them all.

    An operator's directory is used as it is (created if missing); otherwise a
    fresh one is made for this run and removed at exit, so that no old files
    are counted again. Workers inherit it from this process's environment.
    """
    if workers == 1:
        yield
        return
    path = os.environ.get(MULTIPROC_DIR)
    if path:
        os.makedirs(path, exist_ok=True)
        log.info("metrics directory %s (%s)", path, MULTIPROC_DIR)
        yield
        return
    path = os.environ[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="chatd-metrics.")
    log.info("metrics directory %s (%s, removed at exit)", path, MULTIPROC_DIR)
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)
        del os.environ[MULTIPROC_DIR]


def run(server: str, app: ChatMiddleware, *, bind: str, workers: int = 1) -> int:
    """Serve `app` (or, in workers, the same app from its config file) until SIGINT or SIGTERM; the exit status."""
    if server != "hypercorn":
        host_port(bind, server)  # a bind the server cannot take fails before anything starts
    path = app.config.path
    if (workers > 1 or server == "granian") and os.path.isfile(path):  # else built-in defaults, as here
        os.environ["LAKEHOUSE_CONFIG"] = os.path.abspath(path)
    with multiproc_dir(workers):
        log.info("chatd %s listening on http://%s (%s, %d worker%s)", __version__, bind, server, workers,
                 "s" if workers > 1 else "")
        return _RUNNERS[server](app, bind, workers)


def _hypercorn(app: ChatMiddleware, bind: str, workers: int) -> int:
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.run import run as run_workers

    options = HypercornConfig()  # accesslog is None: off
    options.bind = [bind]
    options.graceful_timeout = GRACEFUL_TIMEOUT
    if workers > 1:  # hypercorn's main process handles the signals and tells the workers
        options.workers = workers
        options.application_path = f"asgi:{WORKER_APP}()"
        return run_workers(options)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, options, shutdown_trigger=stop.wait)

    asyncio.run(main())
    return 0


def _uvicorn(app: ChatMiddleware, bind: str, workers: int) -> int:
    import uvicorn

    host, port = host_port(bind, "uvicorn")
    # After a graceful stop uvicorn raises the signal again, to the handler that
    # was in place before it: this one, so that the stop ends in exit status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app if workers == 1 else WORKER_APP, factory=workers > 1, host=host, port=port, workers=workers,
                lifespan="on", access_log=False, timeout_graceful_shutdown=int(GRACEFUL_TIMEOUT), log_level="info")
    return 0


def _granian(app: ChatMiddleware, bind: str, workers: int) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    host, port = host_port(bind, "granian")
    Granian(WORKER_APP, factory=True, address=host, port=port, interface=Interfaces.ASGI, workers=workers,
            log_access=False, workers_kill_timeout=int(GRACEFUL_TIMEOUT)).serve()
    return 0


_RUNNERS: dict[str, Callable[[ChatMiddleware, str, int], int]] = {
    "hypercorn": _hypercorn, "uvicorn": _uvicorn, "granian": _granian,
}
