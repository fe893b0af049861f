"""chatd under hypercorn on a real loopback socket, in a thread of its own.

    with ChatdServer(config) as chatd:
        httpx.get(chatd.url + "/v1/chat/health")
        chatd.app.telemetry.snapshot()

The socket is bound before hypercorn starts (port 0, handed over as fd://), so
there is no free-port race; stop() shuts hypercorn down and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable, TypeVar

import httpx

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from chat_middleware import ChatMiddleware, Config, load_config
from chat_middleware.standalone import create_app
from chat_middleware.types import ASGIApp

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def spawn(args: list[str], config_path: Path, **environ: str) -> subprocess.Popen:
    """A chatd process from the repository root, with no provider keys from this environment."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
    env.update(LAKEHOUSE_CONFIG=str(config_path), **environ)
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def free_port() -> int:
    """For servers that bind by themselves (a separate process cannot take an fd://)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(process: subprocess.Popen, url: str) -> None:
    """Until GET /v1/chat/health answers 200; the process's output if it dies first."""
    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode())
        try:
            if httpx.get(url + "/v1/chat/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)
    raise AssertionError("server did not become healthy")


def write_config(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "lakehouse.toml"
    path.write_text(text)
    return load_config(path, environ=environ or {})


class ASGIServer:
    """Any ASGI app under hypercorn on 127.0.0.1:<ephemeral>."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._fd = sock.detach()  # hypercorn owns and closes it
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        config = HypercornConfig()
        config.bind = [f"fd://{self._fd}"]
        config.graceful_timeout = 2.0
        config.loglevel = "WARNING"
        config.accesslog = None

        async def main() -> None:
            self.loop.call_soon(self._ready.set)
            await serve(self.app, config, shutdown_trigger=self._stop.wait)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> "ASGIServer":
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error
        return self

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the server's event loop (where the app lives) and return its result."""
        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        if self._error:
            raise self._error

    def __enter__(self) -> "ASGIServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ChatdServer(ASGIServer):
    """Standalone chatd (the app `hypercorn app:app` serves) for one Config."""

    app: ChatMiddleware

    def __init__(self, config: Config | str | Path) -> None:
        super().__init__(create_app(config))
