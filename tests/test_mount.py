"""Three ways to run: mounted in a host gateway, `hypercorn app:app`, and the `chatd` command."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from chat_middleware import ChatMiddleware
from tests.harness import ASGIServer, ServerProcess, free_port, write_config

HI = [{"role": "user", "content": "Hi"}]


def host_gateway(events: list[str], **kwargs) -> Starlette:
    """A host gateway with its own routes, websocket and lifespan."""

    async def hello(request):
        return PlainTextResponse("host says hello")

    async def echo(websocket):
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield
        events.append("shutdown")

    return Starlette(routes=[Route("/hello", hello), WebSocketRoute("/ws", echo)], lifespan=lifespan, **kwargs)


@pytest.fixture
def config(tmp_path, ollama):
    return write_config(tmp_path, f'[chatd]\nollama_url = "{ollama.url}"\n')


def test_mounted_middleware_serves_chat_and_passes_everything_else(config):
    events: list[str] = []
    with ASGIServer(ChatMiddleware(host_gateway(events), config=config)) as server:
        assert httpx.get(server.url + "/hello").text == "host says hello"
        assert httpx.get(server.url + "/v1/chatter").status_code == 404  # the host's 404, not chatd's
        response = httpx.post(server.url + "/v1/chat", json={"model": "qwen3:8b", "messages": HI}, timeout=10)
        assert response.status_code == 200 and response.json()["provider"] == "ollama"
        assert events == ["startup"]
        assert server.app.runtime.upstreams._sessions  # opened with the lifespan
        with _websocket(server.port) as ws:
            assert ws == "ping"
    assert events == ["startup", "shutdown"]
    assert not server.app.runtime.upstreams._sessions  # closed with the lifespan


def test_starlette_middleware_style(config):
    app = host_gateway([], middleware=[Middleware(ChatMiddleware, config=config)])
    with ASGIServer(app) as server:
        assert httpx.get(server.url + "/hello").text == "host says hello"
        response = httpx.post(server.url + "/v1/chat", json={"model": "qwen3:8b", "messages": HI}, timeout=10)
        assert response.status_code == 200


async def test_works_when_the_server_sends_no_lifespan_events(config):
    app = ChatMiddleware(host_gateway([]), config=config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.post("/v1/chat", json={"model": "qwen3:8b", "messages": HI})
        assert response.status_code == 200 and response.json()["content"]
        assert (await http.get("/hello")).text == "host says hello"
    await app.aclose()


@contextlib.contextmanager
def _websocket(port: int):
    """A minimal websocket round trip with the stdlib, so no extra client is needed."""
    import base64
    import socket

    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1024)
        assert head.startswith(b"HTTP/1.1 101")
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"ping"))
        sock.sendall(bytes([0x81, 0x80 | 4]) + mask + payload)
        frame = head.split(b"\r\n\r\n", 1)[1]
        while len(frame) < 2 or len(frame) < 2 + frame[1]:
            frame += sock.recv(1024)
        yield frame[2:2 + frame[1]].decode()


@pytest.mark.parametrize("command", ["hypercorn", "chatd"])
def test_standalone_processes(tmp_path, ollama, command):
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd]\nollama_url = "{ollama.url}"\n')
    port = free_port()
    bin_dir = Path(sys.executable).parent
    if command == "hypercorn":
        args = [str(bin_dir / "hypercorn"), "app:app", "--bind", f"127.0.0.1:{port}"]
    else:
        args = [str(bin_dir / "chatd"), "--config", str(path), "--bind", f"127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
    env["LAKEHOUSE_CONFIG"] = str(path)
    with ServerProcess(args, port, tmp_path / f"{command}.log", env=env) as server:
        server.wait_healthy()
        response = httpx.post(server.url + "/v1/chat", json={"model": "ollama/qwen3:8b", "messages": HI},
                              timeout=10)
        assert response.status_code == 200 and response.json()["model"] == "qwen3:8b"
        assert httpx.get(server.url + "/v1/models").json()["object"] == "list"
        assert server.stop() == 0, server.output()


def test_chatd_reports_a_bad_config_and_exits_non_zero(tmp_path):
    path = tmp_path / "lakehouse.toml"
    path.write_text("[chatd]\nbogus = 1\n")
    result = subprocess.run([str(Path(sys.executable).parent / "chatd"), "--config", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{path}: [chatd] bogus: unknown key" in result.stderr
