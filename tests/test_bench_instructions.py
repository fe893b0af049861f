"""bench.instructions' parts that run without valgrind: the mock's --one-write and the counted server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time

import httpx
import pytest

from bench.instructions import parse_args
from bench.targets import ANTHROPIC, OLLAMA, RESPONSES, ROOT, body
from tests.harness import ServerProcess, free_port


def mock(tmp_path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", "0", "--chunks", "5", *flags],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def mocks(tmp_path):
    started = [mock(tmp_path), mock(tmp_path, "--one-write")]
    try:
        yield [process.stdout.readline().strip() for process in started]
    finally:
        for process in started:
            process.terminate()
            process.wait(10)
            process.stdout.close()


@pytest.mark.parametrize("path, request_body", [
    ("/v1/chat/completions", body("m", True)),
    ("/api/chat", body("m", True, OLLAMA)),
    ("/v1/messages", body("m", True, ANTHROPIC)),
    ("/v1/responses", body("m", True, RESPONSES)),
])
def test_one_write_sends_the_same_stream_bytes(mocks, path, request_body):
    framed, whole = (httpx.post(url + path, content=request_body, timeout=10) for url in mocks)
    assert framed.status_code == whole.status_code == 200
    assert whole.content == framed.content and len(whole.content) > 200


def test_the_counted_server_answers_n_chat_requests_then_exits_on_its_own(mocks, tmp_path):
    port = free_port()
    env = {"FLOOR_UPSTREAM": mocks[1] + "/v1/chat/completions", "PATH": ""}
    argv = [sys.executable, "-m", "bench.instructions", "--serve", "bench.floor:app", str(port), "3"]
    with ServerProcess(argv, port, tmp_path / "serve.log", env=env) as server:
        listening(port, server)
        for _ in range(3):
            answer = httpx.post(server.url + "/v1/chat/chat/completions", content=body("mock/m", False), timeout=10)
            assert answer.status_code == 200 and answer.json()["object"] == "chat.completion"
        assert server.popen.wait(10) == 0, server.output()


def listening(port: int, server: ServerProcess, timeout: float = 15.0) -> None:
    """Wait until the port accepts a connection (a probe request would be counted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):  # waits 50 ms for an exit while polling
            code = server.popen.wait(0.05)
            raise AssertionError(f"exited with status {code} before listening:\n{server.output()}")
    raise AssertionError(f"nothing listening on {port} within {timeout:g} s:\n{server.output()}")


@pytest.mark.parametrize("argv", [["--requests", "5"], ["--requests", "9,3"], ["--requests", "0,3"],
                                  ["--concurrency", "0"]])
def test_bad_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err
