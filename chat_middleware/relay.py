"""One chat request → one upstream call → the client, streamed as it arrives.

The response head is held until the first chunk a client would see, so a
failure before it is still an honest HTTP status; after it, a failure is an SSE
error event that ends the stream. A client that leaves, or a deadline that
passes, cancels the work (see guard.py) and closes the upstream connection.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Protocol

import aiohttp

from .asgi import JSON, SSE_HEADERS, header_value, send_error
from .config import Config, Timeouts
from .errors import RequestError, UpstreamError, UpstreamTimeout, from_upstream_status, redact
from .guard import DISCONNECT, Guard
from .render import sse_error
from .routing import Target
from .shapes import count
from .streams import Chunk, StreamDecoder
from .telemetry import Telemetry
from .transforms import TRANSFORMS, Transform
from .types import Headers, Receive, Send
from .upstream import Upstreams, transport_errors

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
    """The client side of one request: what has been sent, and what it cost."""

    __slots__ = ("send", "head", "started_at", "response_started", "finished", "status",
                 "tokens_in", "tokens_out")

    def __init__(self, send: Send, head: Headers) -> None:
        self.send = send
        self.head = head
        self.started_at = perf_counter()
        self.response_started = False
        self.finished = False
        self.status = 200
        self.tokens_in = 0
        self.tokens_out = 0

    def latency_ms(self) -> float:
        return 1000 * (perf_counter() - self.started_at)

    async def body(self, data: bytes, headers: Headers = SSE_HEADERS, more: bool = True) -> None:
        """Send part of the answer; the head goes with the first part that has bytes."""
        if not data and more:
            return
        if not self.response_started:
            self.response_started = True
            await self.send({"type": "http.response.start", "status": 200, "headers": [*headers, *self.head]})
        await self.send({"type": "http.response.body", "body": data, "more_body": more})
        self.finished = not more

    async def fail(self, error: RequestError) -> None:
        """Tell the client, in whatever form it can still receive."""
        if self.finished:
            return
        self.finished = True
        if self.response_started:
            await self.send({"type": "http.response.body", "body": sse_error(error), "more_body": False})
        else:
            self.status = error.status
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
        ])
        stats = self._telemetry.started(provider.name)
        guard = Guard(receive, provider.timeouts)
        error: RequestError | None = None
        error_kind: str | None = None
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
                        await self._complete(response, transform, renderer, exchange)
                finally:
                    response.release()
        except asyncio.CancelledError:
            reason = guard.claim()
            if reason is None:
                raise
            if reason == DISCONNECT:
                if not exchange.finished:
                    exchange.status, error_kind = CLIENT_GONE, "client_gone"
            else:
                error = timeout_error(provider.name, reason, provider.timeouts)
        except RequestError as exc:
            error = redact(exc, self._secrets)
        finally:
            guard.stop()
        if error is not None and not exchange.finished:
            error_kind = error.kind if isinstance(error, UpstreamError) else "request"
            await exchange.fail(error)
        self._telemetry.finished(
            stats, exchange.status, perf_counter() - exchange.started_at,
            exchange.tokens_in, exchange.tokens_out, error_kind,
        )

    @staticmethod
    async def _complete(
        response: aiohttp.ClientResponse, transform: Transform, renderer: Renderer, exchange: Exchange
    ) -> None:
        raw = await response.read()
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
