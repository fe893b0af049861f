"""A mock LLM upstream fast enough not to be the bottleneck of the benchmark.

    python -m bench.mock_upstream --port 0 --chunks 20 [--delay-ms 100 | --one-write]

prints its URL on one line and serves until SIGTERM (the bytes of every answer
are in bench/mock_replies.py):

- OpenAI `POST /v1/chat/completions` (and `/chat/completions`): a JSON
  `chat.completion`, or with `"stream": true` an SSE stream of N content
  chunks, a finish chunk, a usage chunk when `stream_options.include_usage`
  is set, and `data: [DONE]`;
- Ollama `POST /api/chat`: a JSON reply, or (the default, as Ollama) NDJSON of
  N lines and a final `"done": true` line with token counts and timings;
- Anthropic `POST /v1/messages`: a JSON `message`, or with `"stream": true`
  the named SSE events of a text answer with N text deltas, ending in
  `message_stop`;
- OpenAI Responses `POST /v1/responses` (and `/responses`): a JSON
  `response`, or with `"stream": true` its numbered SSE events with N text
  deltas, ending in `response.completed` with usage;
- `GET /stats`: `{"requests": n, "open_streams": m, "by_api": {api: n}}`.

Every response is rendered once at start-up: a request costs a header scan, an
`orjson.loads` of its body and one socket write per frame. The server is raw
asyncio Protocols (HTTP/1.1 keep-alive, Content-Length or chunked) because it
serves the same load with less CPU than aiohttp's low-level server (see
bench/README.md). Stream frames (one SSE event or NDJSON line each) go out one
per event-loop turn, or `--delay-ms` apart, so a proxy receives them as separate
reads, as it would from a model generating tokens; `--one-write` sends each
stream whole instead, so how a proxy's reads split it cannot vary from run to
run (bench.instructions).
"""

from __future__ import annotations

import argparse
import asyncio

import orjson

from . import aio
from .mock_replies import (anthropic_events, anthropic_json, ollama_json, ollama_lines, openai_events, openai_json,
                           responses_events, responses_json)

MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
           431: "Request Header Fields Too Large"}
OPENAI, OLLAMA, ANTHROPIC, RESPONSES = "openai", "ollama", "anthropic", "responses"
ROUTES = {b"/v1/chat/completions": OPENAI, b"/chat/completions": OPENAI, b"/api/chat": OLLAMA,
          b"/v1/messages": ANTHROPIC, b"/v1/responses": RESPONSES, b"/responses": RESPONSES}


def http_head(status: int, content_type: str, length: int | None = None) -> bytes:
    """A response head: Content-Length when the size is known, else chunked."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"{framing}\r\nServer: bench-mock\r\n\r\n").encode()


def whole(status: int, content_type: str, body: bytes) -> bytes:
    return http_head(status, content_type, len(body)) + body


def chunked(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def error(status: int, message: str) -> bytes:
    return whole(status, "application/json", orjson.dumps({"error": {"message": message, "type": "mock"}}))


class Reply:
    """A precomputed answer: one write (`data`), or a head and frames for a stream."""

    __slots__ = ("data", "frames")

    def __init__(self, data: bytes = b"", frames: list[bytes] | None = None) -> None:
        self.data = data
        self.frames = frames or []


def stream_reply(content_type: str, parts: list[bytes]) -> Reply:
    frames = [chunked(part) for part in parts]
    frames[0] = http_head(200, content_type) + frames[0]  # head and first token in one write
    frames[-1] += b"0\r\n\r\n"
    return Reply(frames=frames)


class MockUpstream:
    """The replies and counters shared by all connections."""

    def __init__(self, chunks: int = 20, delay: float = 0.0, one_write: bool = False) -> None:
        self.delay = delay
        self.requests = 0
        self.open_streams = 0
        self.by_api = dict.fromkeys((OPENAI, OLLAMA, ANTHROPIC, RESPONSES), 0)
        self.connections: set[Connection] = set()
        self.replies = {
            (OPENAI, False, False): Reply(whole(200, "application/json", openai_json(chunks))),
            (OPENAI, True, False): stream_reply("text/event-stream", openai_events(chunks, False)),
            (OPENAI, True, True): stream_reply("text/event-stream", openai_events(chunks, True)),
            (OLLAMA, False, False): Reply(whole(200, "application/json", ollama_json(chunks))),
            (OLLAMA, True, False): stream_reply("application/x-ndjson", ollama_lines(chunks)),
            (ANTHROPIC, False, False): Reply(whole(200, "application/json", anthropic_json(chunks))),
            (ANTHROPIC, True, False): stream_reply("text/event-stream", anthropic_events(chunks)),
            (RESPONSES, False, False): Reply(whole(200, "application/json", responses_json(chunks))),
            (RESPONSES, True, False): stream_reply("text/event-stream", responses_events(chunks)),
        }
        self.replies[(OPENAI, False, True)] = self.replies[(OPENAI, False, False)]
        if one_write:
            self.replies = {key: Reply(b"".join(r.frames)) if r.frames else r for key, r in self.replies.items()}
        self.not_found = error(404, "no such endpoint")

    def reply(self, path: bytes, body: bytes) -> Reply | bytes:
        route = ROUTES.get(path)
        if route is None:
            return self.not_found
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error(400, "body is not JSON")
        if not isinstance(request, dict):
            return error(400, "body is not a JSON object")
        self.requests += 1
        self.by_api[route] += 1
        if route == OPENAI:
            options = request.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return self.replies[(OPENAI, request.get("stream") is True, usage)]
        if route == OLLAMA:
            return self.replies[(OLLAMA, request.get("stream", True) is not False, False)]
        return self.replies[(route, request.get("stream") is True, False)]

    def stats(self) -> bytes:
        body = orjson.dumps({"requests": self.requests, "open_streams": self.open_streams, "by_api": self.by_api})
        return whole(200, "application/json", body)


class Connection(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests, answers in order."""

    def __init__(self, mock: MockUpstream) -> None:
        self.mock = mock
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.frames: list[bytes] = []
        self.next_frame = 0
        self.close_after = False
        self.timer: asyncio.Handle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.mock.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.mock.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.mock.open_streams -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if self.timer is None:
            self.serve()

    def serve(self) -> None:
        """Answer every complete request in the buffer, stopping at a stream."""
        while self.transport is not None and self.timer is None:
            buffer = self.buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self.fail(error(431, "request head too large"))
                return
            head = buffer[:end].lower()
            if b"\r\ntransfer-encoding:" in head:
                self.fail(error(411, "send a Content-Length"))
                return
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17:stop if stop >= 0 else None])
            start = end + 4
            if len(buffer) - start < length:
                return
            self.buffer = buffer[start + length:]
            request_line = buffer[:buffer.find(b"\r\n")].split(b" ")
            self.close_after = b"\r\nconnection: close" in head or request_line[-1] == b"HTTP/1.0"
            method, path = request_line[0], request_line[1].split(b"?", 1)[0]
            if method == b"GET" and path == b"/stats":
                answer: Reply | bytes = self.mock.stats()
            elif method == b"POST":
                answer = self.mock.reply(path, buffer[start:start + length])
            else:
                answer = self.mock.not_found
            if isinstance(answer, bytes) or answer.data:
                self.transport.write(answer if isinstance(answer, bytes) else answer.data)
                if self.close_after:
                    self.transport.close()
            else:
                self.frames, self.next_frame = answer.frames, 0
                self.mock.open_streams += 1
                self.timer = self.loop.call_soon(self.step)

    def step(self) -> None:
        """Write the next stream frame; after the last, go back to the buffered requests."""
        if self.transport is None:
            return
        self.transport.write(self.frames[self.next_frame])
        self.next_frame += 1
        if self.next_frame < len(self.frames):
            delay = self.mock.delay
            self.timer = self.loop.call_later(delay, self.step) if delay else self.loop.call_soon(self.step)
            return
        self.timer = None
        self.mock.open_streams -= 1
        if self.close_after:
            self.transport.close()
        elif self.buffer:
            self.serve()

    def fail(self, answer: bytes) -> None:
        assert self.transport is not None
        self.transport.write(answer)
        self.transport.close()


async def start(host: str = "127.0.0.1", port: int = 0, chunks: int = 20,
                delay: float = 0.0, one_write: bool = False) -> tuple[asyncio.Server, MockUpstream]:
    """Listen on host:port (0: any free port) in the running loop."""
    mock = MockUpstream(chunks, delay, one_write)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(mock), host, port, backlog=4096)
    return server, mock


async def serve(host: str, port: int, chunks: int, delay: float, one_write: bool = False) -> None:
    """Print the URL, then serve until cancelled (aio.run cancels on SIGTERM or SIGINT)."""
    server, mock = await start(host, port, chunks, delay, one_write)
    print(f"http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Future()
    finally:
        server.close()
        for connection in list(mock.connections):
            if connection.transport is not None:
                connection.transport.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream (default 20)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause between stream frames (default 0)")
    parser.add_argument("--one-write", action="store_true", help="send each stream in one write")
    args = parser.parse_args(argv)
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    if args.one_write and args.delay_ms:
        parser.error("--one-write sends a stream at once: it takes no --delay-ms")
    try:
        aio.run(serve(args.host, args.port, args.chunks, args.delay_ms / 1000, args.one_write))
    except aio.Stopped:
        pass


if __name__ == "__main__":
    main()
