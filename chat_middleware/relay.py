"""One chat request → one upstream call → the client, streamed as it arrives.

The response head is held until the first chunk a client would see, so a
failure before it is still an honest HTTP status; after it, a failure is an SSE
error event that ends the stream. A client that leaves, or a deadline that
passes, cancels the work (see guard.py) and closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Protocol

import aiohttp

from .asgi import JSON, SSE_HEADERS, header_value, send_error
from .config import Config, ProviderConfig, Timeouts
from .errors import RequestError, UpstreamError, UpstreamTimeout, from_upstream_status, redact
from .guard import DISCONNECT, Guard
from .render import sse_error
from .routing import Target
from .shapes import count
from .streams import Chunk, StreamDecoder
from .telemetry import ProviderStats, Telemetry
from .transforms import TRANSFORMS, Transform
from .types import Headers, Receive, Send
from .upstream import Upstreams, transport_errors

log = logging.getLogger("chatd")

CLIENT_GONE = 499
_ONE_ATTEMPT = (b"x-chatd-attempts", b"1")


class Renderer(Protocol):
    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes: ...

    def chunks(self, chunks: list[Chunk]) -> bytes: ...

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes: ...


def timeout_error(provider: str, reason: str, timeouts: Timeouts) -> UpstreamTimeout:
    what = {
        "first_byte": f"sent nothing within {timeouts.first_byte:g}s",
        "idle": f"went silent for {timeouts.idle:g}s mid-response",
        "total": f"did not finish within {timeouts.total:g}s",
    }[reason]
    return UpstreamTimeout(f"{provider} {what}")


class Exchange:
    """The client side of one request: what has been sent, and what it cost.

    Telemetry is written just before the last byte goes out, so whoever has the
    whole answer also sees it counted.
    """

    __slots__ = ("send", "head", "stats", "started_at", "response_started", "finished",
                 "tokens_in", "tokens_out")

    def __init__(self, send: Send, head: Headers, stats: ProviderStats) -> None:
        self.send = send
        self.head = head
        self.stats = stats
        self.started_at = perf_counter()
        self.response_started = False
        self.finished = False
        self.tokens_in = 0
        self.tokens_out = 0

    def latency_ms(self) -> float:
        return 1000 * (perf_counter() - self.started_at)

    def record(self, status: int, error_kind: str | None = None) -> None:
        if not self.finished:
            self.finished = True
            Telemetry.finished(self.stats, status, perf_counter() - self.started_at,
                               self.tokens_in, self.tokens_out, error_kind)

    async def body(self, data: bytes, headers: Headers = SSE_HEADERS, more: bool = True) -> None:
        """Send part of the answer; the head goes with the first part that has bytes."""
        if not data and more:
            return
        if not more:
            self.record(200)
        if not self.response_started:
            self.response_started = True
            await self.send({"type": "http.response.start", "status": 200, "headers": [*headers, *self.head]})
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def fail(self, error: RequestError) -> None:
        """Tell the client, in whatever form it can still receive."""
        if self.finished:
            return
        kind = error.kind if isinstance(error, UpstreamError) else "request"
        if self.response_started:
            self.record(200, kind)
            await self.send({"type": "http.response.body", "body": sse_error(error), "more_body": False})
        else:
            self.record(error.status, kind)
            await send_error(self.send, error, self.head)


class Relay:
    """Runs requests against the providers of one Config."""

    def __init__(self, config: Config, upstreams: Upstreams, telemetry: Telemetry) -> None:
        self._providers = config.providers
        self._transforms: dict[str, Transform] = {
            name: TRANSFORMS[p.transform] for name, p in config.providers.items()
        }
        self._provider_headers = {name: (b"x-chatd-provider", name.encode()) for name in config.providers}
        self._upstreams = upstreams
        self._telemetry = telemetry
        self._secrets = config.keys

    async def run(
        self, body: dict, target: Target, renderer: Renderer, include_usage: bool,
        receive: Receive, send: Send,
    ) -> None:
        provider = self._providers[target.provider]
        transform = self._transforms[target.provider]
        stream = body.get("stream") is True
        payload = transform.build(body, target.upstream_model, provider, stream)
        exchange = Exchange(send, [
            self._provider_headers[provider.name],
            (b"x-chatd-model", header_value(target.upstream_model)),
            _ONE_ATTEMPT,
        ], self._telemetry.started(provider.name))
        try:
            error = await self._call(provider, transform, payload, stream, include_usage, renderer, exchange,
                                     receive)
            if error is not None and not exchange.finished:
                log.warning("%s %s: %d %s", provider.name, target.upstream_model, error.status, error.message)
                await exchange.fail(error)
        finally:
            exchange.record(500, "internal")  # only when nothing above finished it

    async def _call(
        self, provider: ProviderConfig, transform: Transform, payload: bytes, stream: bool,
        include_usage: bool, renderer: Renderer, exchange: Exchange, receive: Receive,
    ) -> RequestError | None:
        """The upstream call under the guard; returns the error the client must be told of."""
        guard = Guard(receive, provider.timeouts)
        guard.start()
        try:
            with transport_errors(provider.name):
                response = await self._upstreams.post(provider.name, payload)
                try:
                    guard.chunk()
                    if response.status >= 400:
                        raw = await response.read()
                        retry_after = response.headers.get("Retry-After")
                        raise from_upstream_status(provider.name, response.status, raw, retry_after)
                    if stream:
                        decoder = transform.decoder(include_usage)
                        await self._stream(response, decoder, renderer, guard, exchange)
                    else:
                        await self._complete(response, transform, renderer, guard, exchange)
                finally:
                    response.release()
        except asyncio.CancelledError:
            reason = guard.claim()
            if reason is None:
                raise
            if reason == DISCONNECT:
                exchange.record(CLIENT_GONE, "client_gone")
                return None
            return timeout_error(provider.name, reason, provider.timeouts)
        except RequestError as exc:
            return redact(exc, self._secrets)
        finally:
            guard.stop()
        return None

    @staticmethod
    async def _complete(
        response: aiohttp.ClientResponse, transform: Transform, renderer: Renderer, guard: Guard,
        exchange: Exchange,
    ) -> None:
        parts = []
        while data := await response.content.readany():
            guard.chunk()  # some upstreams send keep-alive whitespace while they think
            parts.append(data)
        raw = b"".join(parts)
        completion = transform.completion(raw)
        usage = completion.get("usage")
        if isinstance(usage, dict):
            exchange.tokens_in = count(usage.get("prompt_tokens"))
            exchange.tokens_out = count(usage.get("completion_tokens"))
        data = renderer.completion(completion, raw, transform.passthrough, exchange.latency_ms())
        await exchange.body(data, [JSON], more=False)

    @staticmethod
    async def _stream(
        response: aiohttp.ClientResponse, decoder: StreamDecoder, renderer: Renderer, guard: Guard,
        exchange: Exchange,
    ) -> None:
        content = response.content
        while True:
            data = await content.readany()
            if not data:
                break
            guard.chunk()
            chunks = decoder.feed(data)
            if chunks and not exchange.finished:
                await exchange.body(renderer.chunks(chunks))
            if decoder.failure is not None:
                raise decoder.failure
            if decoder.done and not exchange.finished:
                await _finish(decoder, renderer, exchange)
            # after the end, keep reading to EOF so the connection can be reused
        chunks = decoder.close()
        if not exchange.finished:
            if chunks:
                await exchange.body(renderer.chunks(chunks))
            await _finish(decoder, renderer, exchange)


async def _finish(decoder: StreamDecoder, renderer: Renderer, exchange: Exchange) -> None:
    exchange.tokens_in = decoder.prompt_tokens
    exchange.tokens_out = decoder.completion_tokens
    await exchange.body(renderer.finish(decoder, exchange.latency_ms()), more=False)
