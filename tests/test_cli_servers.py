"""`chatd --server {hypercorn,uvicorn,granian} --workers N`: real processes on loopback, stopped by SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import openai
import orjson
import pytest

from chat_middleware import cli
from chat_middleware.serve import MULTIPROC_DIR, SERVERS, ServeError, host_port, multiproc_dir

from tests.conftest import KEYS
from tests.harness import ServerProcess, free_port

CHATD = str(Path(sys.executable).parent / "chatd")
GREETING = "Hello! How can I help you today?"  # the fake Ollama's default reply


def installed(server: str):
    return pytest.param(server, marks=pytest.mark.skipif(importlib.util.find_spec(server) is None,
                                                         reason=f"{server} is not installed"))


@pytest.fixture
def config_path(tmp_path: Path, upstreams) -> Path:
    """Local Ollama only (the fake); through `upstreams`, whose request logs are cleared after each test."""
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd]\nollama_url = "{upstreams["ollama"].url}"\n')
    return path


def start(config_path: Path, *args: str) -> ServerProcess:
    """`chatd --config … --bind 127.0.0.1:<free> ARGS` in an environment without keys or metrics dir."""
    port = free_port()
    hidden = {*KEYS, "LAKEHOUSE_CONFIG", MULTIPROC_DIR}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    argv = [CHATD, "--config", str(config_path), "--bind", f"127.0.0.1:{port}", *args]
    return ServerProcess(argv, port, config_path.parent / "chatd.log", env=env)


@pytest.mark.parametrize("server", [installed(name) for name in SERVERS])
def test_each_server_answers_the_openai_sdk_and_stops_cleanly_on_sigterm(config_path, server):
    with start(config_path, "--server", server) as chatd:
        chatd.wait_healthy()
        with openai.OpenAI(base_url=chatd.url + "/v1/chat", api_key="unused", max_retries=0, timeout=10) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(
                model="qwen3:8b", messages=[{"role": "user", "content": "Hi"}])
        reply = raw.parse()
        assert reply.choices[0].message.content == GREETING and reply.model == "qwen3:8b"
        assert chatd.stop() == 0, chatd.output()
    output = chatd.output()
    access = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [(a["path"], a["status"], a["provider"], a["request_id"]) for a in access] == [
        ("/v1/chat/chat/completions", 200, "ollama", raw.headers["x-request-id"])]
    assert f"({server}, 1 worker)" in output
    assert "GET /v1/chat/health" not in output  # no access log from the server itself
    assert "Logging error" not in output and "Traceback" not in output
    assert output.count("Running on http") <= 1  # the server's own start-up line, once


def worker_environments(pid: int) -> list[dict[str, str]]:
    """The environment each child of `pid` was started with (spawned workers exec a fresh Python)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.exists():
        pytest.skip("no /proc/<pid>/task/<pid>/children here")
    found = []
    for child in children.read_text().split():
        raw = Path(f"/proc/{child}/environ").read_bytes()
        found.append(dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry))
    return found


def test_workers_share_a_temporary_metrics_directory_removed_at_exit(config_path):
    with start(config_path, "--workers", "2") as chatd:
        chatd.wait_healthy()
        match = re.search(rf"metrics directory (\S+) \({MULTIPROC_DIR}, removed at exit\)", chatd.output())
        assert match, chatd.output()
        directory = Path(match.group(1))
        assert directory.is_dir()
        inherited = [env for env in worker_environments(chatd.popen.pid) if env.get(MULTIPROC_DIR)]
        assert len(inherited) >= 2 and all(env[MULTIPROC_DIR] == str(directory) for env in inherited)
        assert chatd.stop() == 0, chatd.output()
    assert "(hypercorn, 2 workers)" in chatd.output()
    assert not directory.exists()


def test_an_operator_metrics_directory_is_created_and_kept(monkeypatch, tmp_path):
    directory = tmp_path / "metrics"
    monkeypatch.setenv(MULTIPROC_DIR, str(directory))
    with multiproc_dir(2):
        assert directory.is_dir()
    assert directory.is_dir() and os.environ[MULTIPROC_DIR] == str(directory)


def test_one_worker_needs_no_metrics_directory(monkeypatch):
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    with multiproc_dir(1):
        assert MULTIPROC_DIR not in os.environ


def test_a_server_that_is_not_installed_exits_2_naming_the_pip_command(monkeypatch, capsys, config_path):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails, installed or not
    assert cli.main(["--server", "uvicorn", "--config", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert err == "chatd: --server uvicorn: uvicorn is not installed; pip install 'chatd[uvicorn]'\n"


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--server", "gunicorn"]])
def test_bad_server_options_are_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and "usage: chatd" in capsys.readouterr().err


@pytest.mark.parametrize("bind, expected", [("127.0.0.1:3220", ("127.0.0.1", 3220)),
                                            ("[::1]:3220", ("::1", 3220))])
def test_host_port_for_uvicorn_and_granian(bind, expected):
    assert host_port(bind, "uvicorn") == expected


@pytest.mark.parametrize("bind", ["unix:/run/chatd.sock", "3220", "localhost:"])
def test_a_bind_they_cannot_take_is_a_clear_error(bind):
    with pytest.raises(ServeError, match="HOST:PORT"):
        host_port(bind, "granian")
