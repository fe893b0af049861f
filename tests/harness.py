"""chatd under hypercorn on a real loopback socket, in a thread of its own; or as a process.

    with ChatdServer(config) as chatd:
        httpx.get(chatd.url + "/v1/chat/health")
        chatd.app.telemetry.snapshot()

The socket is bound before hypercorn starts (port 0, handed over as fd://), so
there is no free-port race; stop() shuts hypercorn down and joins the thread.
`ServerProcess` runs a command (`chatd`, `hypercorn app:app`) the way an
operator would, for what only a real process shows: signals, workers, exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
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


def this_checkout(env: dict[str, str] | os._Environ) -> dict[str, str]:
    """`env` with this checkout first on PYTHONPATH: a command (`chatd`, `hypercorn app:app`) imports the
    chat_middleware under test, not whichever one the environment has installed."""
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


def free_port() -> int:
    """A port free right now on 127.0.0.1, for commands that take --bind HOST:PORT."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server command in a session of its own, output to `log`, the whole group killed at exit.

        with ServerProcess([chatd, "--bind", f"127.0.0.1:{port}"], port, tmp_path / "chatd.log") as server:
            server.wait_healthy()
            assert server.stop() == 0, server.output()
    """

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = this_checkout(os.environ if env is None else env)
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Poll /v1/chat/health until it answers 200; fail with the output if it exits or the time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/v1/chat/health", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.popen.wait(0.05)
                raise AssertionError(f"exited with status {code} before answering:\n{self.output()}")
        raise AssertionError(f"no answer from {self.url} within {timeout:g} s:\n{self.output()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status; a process still running after `timeout` is killed and fails."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running {timeout:g} s after SIGTERM:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL to the whole group: the server and any worker it left behind."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
