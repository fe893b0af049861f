"""A real redis-server on 127.0.0.1 for the tests of the shared state, and its pytest fixtures.

    with RedisServer() as server:   # a free port, no persistence, answering PING
        server.url                  # redis://127.0.0.1:<port>/0
        server.stop()               # as if Redis went away…
        server.start()              # …and came back on the same port

`redis_server` is one server for the session (each test keeps to its own key
prefix); `own_redis_server` is a test's own, to stop and start. Both skip the
test when redis-server is not installed (CI: apt-get install redis-server).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


def installed() -> bool:
    return shutil.which(BINARY) is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server as a child process: loopback only, nothing saved, DEBUG allowed from loopback."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="chatd-redis-")
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        command = [BINARY, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                   "--dir", self._dir.name, "--logfile", "", "--loglevel", "warning"]
        version = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"v=(\d+)", version)
        if found and int(found.group(1)) >= 7:
            command += ["--enable-debug-command", "local"]  # DEBUG SLEEP stands for a slow Redis
        return command

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (again, on the same port) and wait until it answers PING."""
        self._process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not _pong(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._process.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _server() -> Iterator[RedisServer]:
    if not installed():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'chatd[redis]')")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _server()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    yield from _server()
