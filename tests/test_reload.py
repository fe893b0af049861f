"""Hot reload: new requests take the new config, in-flight streams finish on the old one."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import orjson

from chat_middleware.standalone import create_app
from tests.fakes import FakeOllama, Reply
from tests.harness import ASGIServer, ChatdServer, ServerProcess, free_port

HI = [{"role": "user", "content": "Hi"}]


def resolve(server, model: str) -> dict:
    return httpx.get(server.url + "/v1/chat/resolve", params={"model": model}).json()


def eventually(check, seconds: float = 5.0) -> bool:
    """Poll an observable effect until it shows, with a deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def write(path: Path, ollama_url: str, fast: str) -> None:
    path.write_text(f'[models]\nfast = "{fast}"\n[chatd]\nollama_url = "{ollama_url}"\n')


def test_reload_swaps_routes_and_lets_in_flight_streams_finish(tmp_path, ollama):
    path = tmp_path / "lakehouse.toml"
    write(path, ollama.url, "ollama/qwen3:4b")
    with FakeOllama(models=("llama3.2",)) as second, ChatdServer(path) as chatd:
        ollama.replies["qwen3:4b"] = Reply(text="old one two three", delay_chunks=0.1)
        with httpx.stream("POST", chatd.url + "/v1/chat/completions", timeout=10,
                          json={"model": "fast", "messages": HI, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            old_runtime = chatd.app.runtime
            write(path, second.url, "ollama/llama3.2")
            assert chatd.call(chatd.app.reload) is True
            new = httpx.post(chatd.url + "/v1/chat", json={"model": "fast", "messages": HI}, timeout=10)
            assert new.json()["model"] == "llama3.2" and len(second.requests) == 1
            rest = [orjson.loads(l[6:]) for l in lines if l.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in rest if c["choices"])
        assert text.strip() == "one two three"  # the old stream ran to its end on the old upstream
        assert eventually(lambda: old_runtime.upstreams._sessions == {})  # closed once it was done


def test_an_invalid_file_is_rejected_and_the_old_config_stays(tmp_path, ollama, caplog):
    path = tmp_path / "lakehouse.toml"
    write(path, ollama.url, "ollama/qwen3:4b")
    with ChatdServer(path) as chatd:
        path.write_text("[chatd]\nbogus = 1\n")
        with caplog.at_level(logging.ERROR, logger="chatd"):
            assert chatd.call(chatd.app.reload) is False
        assert "bogus: unknown key" in caplog.text
        assert resolve(chatd, "fast")["upstream_model"] == "qwen3:4b"


def test_a_changed_file_is_picked_up_by_itself(tmp_path, ollama):
    path = tmp_path / "lakehouse.toml"
    write(path, ollama.url, "ollama/qwen3:4b")
    app = create_app(path)
    app._watch_interval = 0.05
    with ASGIServer(app) as chatd:
        assert resolve(chatd, "fast")["upstream_model"] == "qwen3:4b"
        write(path, ollama.url, "ollama/llama3.2")
        os.utime(path, ns=(time.time_ns() + 10**9,) * 2)  # a different mtime even on coarse clocks
        assert eventually(lambda: resolve(chatd, "fast")["upstream_model"] == "llama3.2")


def test_sighup_reloads_the_chatd_process(tmp_path, ollama):
    path = tmp_path / "lakehouse.toml"
    write(path, ollama.url, "ollama/qwen3:4b")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
    argv = [str(Path(sys.executable).parent / "chatd"), "--config", str(path), "--bind", f"127.0.0.1:{port}"]
    with ServerProcess(argv, port, tmp_path / "chatd.log", env=env) as chatd:
        chatd.wait_healthy()
        path.write_text(path.read_text().replace("qwen3:4b", "llama3.2"))
        chatd.popen.send_signal(signal.SIGHUP)
        assert eventually(lambda: resolve(chatd, "fast")["upstream_model"] == "llama3.2")
        assert chatd.stop() == 0, chatd.output()
    assert "reloaded" in chatd.output()
