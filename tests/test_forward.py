"""Remote mode end to end: client → host gateway (hypercorn) → Forwarder → standalone chatd → fake upstream.

Every hop is a real loopback socket, so incremental delivery and disconnects are
observed as a client sees them. Where a real chatd cannot be made to misbehave
(a connection cut mid-body, a client leaving mid-upload), a small recording
stand-in plays chatd.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Iterator

import httpx
import orjson
import pytest
from aiohttp import web

from chat_middleware.forward import Forwarder
from chat_middleware.types import Receive, Scope, Send
from tests.fakes import BackgroundServer, Reply
from tests.harness import ASGIServer

HI = [{"role": "user", "content": "Hi there"}]


class HostApp:
    """A tiny host gateway: /v1/chat* goes to the Forwarder, everything else answers "host"."""

    def __init__(self, forwarder: Forwarder, *, lifespan: bool = True) -> None:
        self.forwarder = forwarder
        self.lifespan = lifespan
        self.body_messages = 0  # http.request messages the forwarder read, to prove a body was streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["path"] == "/v1/chat" or scope["path"].startswith("/v1/chat/"):
            await self.forwarder(scope, self._counting(receive), send)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"host"})

    def _counting(self, receive: Receive) -> Receive:
        async def counted():
            message = await receive()
            self.body_messages += message["type"] == "http.request"
            return message
        return counted

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.lifespan:
                    self.forwarder.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.forwarder.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


@contextlib.contextmanager
def host_gateway(chatd_url: str, **kwargs) -> Iterator[ASGIServer]:
    with ASGIServer(HostApp(Forwarder(chatd_url), **kwargs)) as server:
        yield server


@pytest.fixture
def chatd(make_chatd):
    return make_chatd()


@pytest.fixture
def host(chatd) -> Iterator[ASGIServer]:
    with host_gateway(chatd.url) as server:
        yield server


class StandIn:
    """Plays chatd where the real one cannot be made to misbehave; records what reached it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.started = threading.Event()
        self.aborted = threading.Event()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/v1/chat/cut", self.cut)
        app.router.add_route("*", "/{tail:.*}", self.record)
        self.server = BackgroundServer(app)

    async def record(self, request: web.Request) -> web.StreamResponse:
        self.started.set()
        try:
            body = await request.read()
        except BaseException:
            self.aborted.set()
            raise
        self.requests.append((request.method, request.raw_path, dict(request.headers), body))
        return web.Response(body=b'{"ok":true}', content_type="application/json",
                            headers={"X-Up": "yes", "Keep-Alive": "timeout=99", "Set-Cookie": "s=1"})

    async def cut(self, request: web.Request) -> web.StreamResponse:
        """Starts an SSE stream, then drops the connection as a crashing chatd would."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"delta": "one"}\n\n')
        await response.drain()
        assert request.transport is not None
        request.transport.close()
        return response


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    fake = StandIn()
    with fake.server:
        yield fake


# -- round trips through a real chatd -------------------------------------------------


def test_non_stream_round_trips_keep_chatd_headers(host, ollama):
    ollama.replies["qwen3:8b"] = ollama.replies["qwen3:4b"] = Reply(text="The sky is blue.")
    native = httpx.post(host.url + "/v1/chat", json={"model": "qwen3:8b", "messages": HI}, timeout=10)
    assert native.status_code == 200
    assert native.json()["content"] == "The sky is blue." and native.json()["provider"] == "ollama"
    assert (native.headers["x-chatd-provider"], native.headers["x-chatd-model"]) == ("ollama", "qwen3:8b")

    openai = httpx.post(host.url + "/v1/chat/completions", json={"model": "ollama/qwen3:4b", "messages": HI},
                        timeout=10)
    assert openai.status_code == 200
    assert openai.json()["choices"][0]["message"]["content"] == "The sky is blue."
    assert (openai.headers["x-chatd-provider"], openai.headers["x-chatd-model"]) == ("ollama", "qwen3:4b")
    assert httpx.get(host.url + "/hello").text == "host"  # the rest stays the host's


def test_get_with_query_string(host, chatd):
    via_host = httpx.get(host.url + "/v1/chat/resolve", params={"model": "smart"})
    direct = httpx.get(chatd.url + "/v1/chat/resolve", params={"model": "smart"})
    assert via_host.status_code == 200 and via_host.json() == direct.json()
    assert via_host.json()["provider"] == "kimi"
    assert httpx.get(host.url + "/v1/chat/resolve").status_code == 400


def test_error_status_and_body_pass_through(make_chatd):
    chatd = make_chatd(environ={})  # dev mode: ollama_cloud is configured but not registered
    request = {"model": "kimi-k2.6:cloud", "messages": HI}
    direct = httpx.post(chatd.url + "/v1/chat/completions", json=request, timeout=10)
    with host_gateway(chatd.url) as host:
        response = httpx.post(host.url + "/v1/chat/completions", json=request, timeout=10)
    assert response.status_code == direct.status_code == 404
    assert response.content == direct.content
    assert response.headers["content-type"] == "application/json"


def test_stream_arrives_while_the_upstream_is_still_writing(host, ollama):
    ollama.replies["qwen3:8b"] = Reply(text="one two three four five", delay_chunks=0.05)
    with httpx.stream("POST", host.url + "/v1/chat/completions", timeout=10,
                      json={"model": "qwen3:8b", "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = (line for line in response.iter_lines() if line.startswith("data: "))
        first = next(lines)
        assert ollama.open_streams == 1  # the client has a chunk; the upstream is still writing
        rest = list(lines)
    assert rest[-1] == "data: [DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in map(orjson.loads, (line[6:] for line in [first, *rest[:-1]])) if c["choices"])
    assert text == "one two three four five"


def test_client_disconnect_mid_stream_reaches_the_upstream(host, ollama):
    ollama.replies["qwen3:8b"] = Reply(text=" ".join(["tick"] * 100), delay_chunks=0.05)
    with httpx.stream("POST", host.url + "/v1/chat", timeout=10,
                      json={"model": "qwen3:8b", "messages": HI, "stream": True}) as response:
        assert next(response.iter_lines()).startswith("data: ")
        assert ollama.open_streams == 1
    # leaving the block closes the client's connection mid-stream
    assert ollama.wait_open_streams(0, timeout=3)


async def test_client_disconnect_while_waiting_reaches_the_upstream(host, ollama):
    ollama.replies["qwen3:8b"] = Reply(hang=True)
    async with httpx.AsyncClient(timeout=10) as http:
        task = asyncio.ensure_future(http.post(host.url + "/v1/chat", json={"model": "qwen3:8b", "messages": HI}))
        assert await asyncio.to_thread(ollama.wait_open_requests, 1, 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await asyncio.to_thread(ollama.wait_open_requests, 0, 3)


def test_large_request_body_is_streamed_upstream_intact(host, ollama):
    big = "0123456789" * 100_000  # 1 MB (chatd's own upstream call warns about raw bodies over 1 MiB)
    body = orjson.dumps({"model": "qwen3:8b", "messages": [{"role": "user", "content": big}]})
    pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
    response = httpx.post(host.url + "/v1/chat", content=pieces, timeout=10,  # chunked upload
                          headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert ollama.requests[-1].json["messages"][0]["content"] == big
    assert host.app.body_messages > 1  # it came through the forwarder in pieces, not as one message


def test_session_opens_lazily_without_lifespan(chatd, ollama):
    with host_gateway(chatd.url, lifespan=False) as host:
        assert host.app.forwarder._session is None
        response = httpx.post(host.url + "/v1/chat", json={"model": "qwen3:8b", "messages": HI}, timeout=10)
        assert response.status_code == 200 and host.app.forwarder._session is not None
    assert host.app.forwarder._session is None  # closed at shutdown all the same


# -- chatd down or misbehaving ---------------------------------------------------------


def test_chatd_down_is_a_502_in_the_openai_shape():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with host_gateway(url) as host:
        response = httpx.post(host.url + "/v1/chat/completions", json={"model": "qwen3:8b", "messages": HI})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error" and error["code"] == "chatd_unreachable"
    assert f"chatd at {url} is unreachable" in error["message"]


def test_chatd_cut_mid_stream_cuts_the_client_too(stand_in):
    with host_gateway(stand_in.server.url) as host:
        with httpx.stream("POST", host.url + "/v1/chat/cut", json={}, timeout=10) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines) == 'data: {"delta": "one"}'
            with pytest.raises(httpx.RemoteProtocolError):  # never a clean end of a truncated stream
                list(lines)


def test_hop_by_hop_headers_stay_on_their_hop(stand_in):
    with host_gateway(stand_in.server.url) as host:
        response = httpx.get(host.url + "/v1/chat/a%2Fb?model=x%20y&n=1", headers={
            "X-Custom": "kept", "Connection": "keep-alive, x-hop", "X-Hop": "dropped",
            "Proxy-Authorization": "Basic c2VjcmV0", "TE": "trailers", "Accept-Encoding": "identity",
        })
    assert response.status_code == 200 and response.json() == {"ok": True}
    method, raw_path, headers, _ = stand_in.requests[-1]
    assert (method, raw_path) == ("GET", "/v1/chat/a%2Fb?model=x%20y&n=1")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-custom"] == "kept" and lowered["accept-encoding"] == "identity"
    assert not {"x-hop", "proxy-authorization", "te"} & lowered.keys()
    assert lowered["host"] == stand_in.server.url.removeprefix("http://")
    assert lowered["x-forwarded-host"] == host.url.removeprefix("http://")
    assert (lowered["x-forwarded-for"], lowered["x-forwarded-proto"]) == ("127.0.0.1", "http")
    assert response.headers["x-up"] == "yes" and response.headers["set-cookie"] == "s=1"
    assert "keep-alive" not in response.headers
    assert len(response.headers.get_list("date")) == 1 and len(response.headers.get_list("server")) == 1


def test_client_leaving_mid_upload_aborts_the_upstream_request(stand_in):
    with host_gateway(stand_in.server.url) as host:
        with socket.create_connection(("127.0.0.1", host.port)) as client:
            client.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100000\r\n\r\n" + b"[" * 1000)
            assert stand_in.started.wait(3)  # chatd has the head and part of the body
        assert stand_in.aborted.wait(3)
    assert stand_in.requests == []
