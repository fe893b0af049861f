"""The client side of one request, and the cost of each upstream attempt made for it.

The response head is held until the first part that carries content, so a
failure before it can still be retried, fall back, or be told as an honest
HTTP status; after it, a failure is an SSE error event that ends the stream.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from .access import Call
from .asgi import content_length, send_error
from .errors import RequestError
from .render import Renderer
from .telemetry import ProviderStats, Telemetry
from .types import Headers, Send


class Attempt:
    """One upstream call: counted in its provider's telemetry exactly once."""

    __slots__ = ("stats", "started_at", "recorded", "tokens_in", "tokens_out")

    def __init__(self, stats: ProviderStats) -> None:
        Telemetry.started(stats)
        self.stats = stats
        self.started_at = perf_counter()
        self.recorded = False
        self.tokens_in = 0
        self.tokens_out = 0

    def record(self, status: int, error_kind: str | None = None) -> None:
        if not self.recorded:
            self.recorded = True
            Telemetry.finished(self.stats, status, perf_counter() - self.started_at,
                               self.tokens_in, self.tokens_out, error_kind)


class Exchange:
    """What the client has been sent so far; telemetry is written before its last byte."""

    __slots__ = ("send", "renderer", "call", "head", "held", "attempt", "response_started", "finished", "pinging")

    def __init__(self, send: Send, renderer: Renderer, call: Call) -> None:
        self.send = send
        self.renderer = renderer
        self.call = call
        self.head: Headers = []
        self.held: list[bytes] = []
        self.attempt: Attempt | None = None
        self.response_started = False
        self.finished = False
        self.pinging: asyncio.Task | None = None

    def latency_ms(self) -> float:
        return 1000 * (perf_counter() - self.call.started_at)

    async def body(
        self, data: bytes, headers: Headers | None = None, more: bool = True, content: bool = True
    ) -> None:
        """Send part of the answer; parts without content wait for the first part with some.

        `headers` defaults to the renderer's stream headers.
        """
        if not self.response_started:
            if headers is None:
                headers = self.renderer.stream_headers
            if more and not content:
                if data:
                    self.held.append(data)
                return
            self.response_started = True
            self.call.status = 200
            self.call.first_byte()
            if self.held:
                data, self.held = b"".join(self.held) + data, []
            head = [*headers, *self.head, content_length(data)] if not more else [*headers, *self.head]
            await self.send({"type": "http.response.start", "status": 200, "headers": head})
        if not more:
            self.finished = True
            if self.attempt is not None:
                self.attempt.record(200)
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    def keepalive(self) -> None:
        """The upstream is silent: send the surface's keep-alive event, once the answer has begun."""
        if self.response_started and not self.finished and self.pinging is None:
            self.pinging = asyncio.get_running_loop().create_task(self._ping(self.renderer.ping()))

    async def _ping(self, data: bytes) -> None:
        try:
            if not self.finished:  # the answer may have ended since the clock asked
                await self.send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            self.pinging = None

    async def fail(self, error: RequestError) -> None:
        """Tell the client, in whatever form it can still receive."""
        if self.finished:
            return
        self.finished = True
        self.call.error = error.kind
        if self.response_started:
            await self.send({"type": "http.response.body", "body": self.renderer.stream_error(error),
                             "more_body": False})
        else:
            self.call.status = error.status
            await send_error(self.send, error, self.head, self.renderer.error_body(error))
