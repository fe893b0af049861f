"""One chat request → the first provider of its chain that answers → the client.

For each entry of a resolution's chain, chatd asks the provider (again, after a
backoff, on connection errors, 429 and 502/503/504), then falls back to the next
entry on any upstream failure but a rejected request — for as long as no content
has reached the client (see exchange.py). Each attempt first takes a lease from
the shared state (admission.py): an entry at a limit of its provider is skipped,
a client at its own limit gets 429 at once. A client that leaves, or a deadline
that passes, cancels the work (see guard.py) and closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from .access import CLIENT_LEFT, REQUEST_ID, Call
from .admission import Admission, outcome_of
from .asgi import JSON, header_value
from .canonical import ChatRequest
from .errors import (
    LimitReached, ProviderNotRegistered, RequestError, UpstreamError, UpstreamTimeout, from_upstream_status,
    redact,
)
from .exchange import Attempt, Exchange
from .guard import DISCONNECT, Guard
from .leg import Leg
from .metrics import fell_back
from .render import Renderer
from .resilience import retry_delay
from .routing import Target
from .settings import Config, ProviderConfig, Timeouts
from .state import Outcome, State
from .streams import StreamDecoder
from .telemetry import Telemetry
from .types import Receive, Send
from .upstream import TRANSPORT_ERRORS, Upstreams, transport_error

log = logging.getLogger("chatd")


class ClientLeft(Exception):
    """The client disconnected; nobody is left to answer."""


def timeout_error(provider: str, reason: str, timeouts: Timeouts) -> UpstreamTimeout:
    what = {
        "first_byte": f"sent nothing within {timeouts.first_byte:g}s",
        "idle": f"went silent for {timeouts.idle:g}s mid-response",
        "total": f"did not finish within {timeouts.total:g}s",
    }[reason]
    return UpstreamTimeout(f"{provider} {what}")


class Relay:
    """Runs requests against the providers of one Config."""

    def __init__(self, config: Config, upstreams: Upstreams, telemetry: Telemetry, state: State) -> None:
        self._providers = config.providers
        self._admission = Admission(config, state)
        self._legs: dict[tuple[str, str], Leg] = {}
        self._provider_headers = {name: (b"x-chatd-provider", name.encode()) for name in config.providers}
        self._upstreams = upstreams
        self._telemetry = telemetry
        self._secrets = config.keys

    async def run(
        self, request: ChatRequest, chain: tuple[Target, ...], renderer: Renderer,
        receive: Receive, send: Send, call: Call,
    ) -> None:
        """Answer `request` from the first entry of `chain` that can, filling in `call` on the way."""
        exchange = Exchange(send, renderer, call)
        call.stream = request.stream
        guard = Guard(receive, exchange.keepalive if request.stream and hasattr(renderer, "ping") else None)
        guard.start()
        try:
            error = await self._serve(request, chain, renderer, exchange, guard)
        except ClientLeft:
            error = None
            if not exchange.finished:
                call.status = CLIENT_LEFT
        finally:
            guard.stop()
            if exchange.attempt is not None:
                call.tokens_in, call.tokens_out = exchange.attempt.tokens_in, exchange.attempt.tokens_out
        if error is not None and not exchange.finished:
            log.warning("%r: %d %r (after %d attempt(s))", call.model, error.status, error.message,
                        call.attempts)
            await exchange.fail(error)

    def leg(self, provider: ProviderConfig, api: str) -> Leg:
        """How `provider` serves clients of `api`, made on first use."""
        leg = self._legs.get((provider.name, api))
        if leg is None:
            leg = self._legs[provider.name, api] = Leg(provider, api)
        return leg

    async def _serve(
        self, request: ChatRequest, chain: tuple[Target, ...], renderer: Renderer, exchange: Exchange,
        guard: Guard,
    ) -> RequestError | None:
        """Walk the chain; the error to tell the client, or None once answered."""
        skipped: RequestError | None = None
        failed: RequestError | None = None
        failed_at = ""
        admitted = False
        for index, target in enumerate(chain):
            if not target.registered:
                skipped = ProviderNotRegistered(
                    f"model {exchange.call.model!r} routes to provider {target.provider!r}, "
                    "which is not registered (no API key configured)")
                continue
            provider = self._providers[target.provider]
            stats = self._telemetry.providers[provider.name]
            policy = provider.resilience
            leg = self.leg(provider, request.api)
            try:
                payload = leg.build(request, target.upstream_model)
            except RequestError as exc:  # a body this provider's API cannot carry
                return exc
            tries = 0
            while True:
                grant = await self._admission.admit(provider.name, exchange.call.client, again=admitted,
                                                    skip_cooling=index < len(chain) - 1)
                if isinstance(grant, RequestError):
                    if not isinstance(grant, LimitReached) or grant.scope == "client":
                        return grant  # the client's own limit holds for every provider
                    if not exchange.call.attempts:  # the log and metrics name the provider that was full
                        exchange.call.provider, exchange.call.upstream_model = provider.name, target.upstream_model
                    skipped = grant
                    break
                if not tries and failed is not None:
                    stats.fallbacks += 1
                    fell_back(failed_at, provider.name)
                admitted = True
                renderer.serving(target, leg.passthrough)
                outcome: Outcome = "neutral"
                try:
                    error = await self._attempt(target, leg, payload, request, renderer, exchange, guard)
                    outcome = outcome_of(error)
                finally:
                    await self._admission.release(grant, exchange.attempt, outcome)
                if error is None:
                    return None
                if exchange.response_started or not isinstance(error, UpstreamError):
                    return error  # too late, or the client's own fault: nowhere else to go
                failed, failed_at = error, provider.name
                delay = retry_delay(error, tries, policy)
                if delay is None:
                    break
                tries += 1
                Telemetry.retried(stats)
                await _pause(delay, guard)
            if failed is not None and not failed.fallback:
                return failed
        return failed or skipped

    async def _attempt(
        self, target: Target, leg: Leg, payload: bytes, request: ChatRequest, renderer: Renderer,
        exchange: Exchange, guard: Guard,
    ) -> RequestError | None:
        """One upstream call under the guard; the error it ended in, or None once answered."""
        provider = leg.provider
        attempt = exchange.attempt = Attempt(self._telemetry.providers[provider.name])
        call = exchange.call
        call.attempts += 1
        exchange.held.clear()
        call.provider, call.upstream_model = provider.name, target.upstream_model
        exchange.head = [
            self._provider_headers[provider.name],
            (b"x-chatd-model", header_value(target.upstream_model)),
            (b"x-chatd-attempts", str(call.attempts).encode()),
            (REQUEST_ID, call.request_id),
        ]
        guard.arm(provider.timeouts, request.stream)
        try:
            response = await self._upstreams.post(provider.name, leg.path, payload,
                                                  _request_headers(leg.forwarded, call))
            try:
                guard.chunk()
                if response.status >= 400:
                    raw = await response.read()
                    retry_after = response.headers.get("Retry-After")
                    raise from_upstream_status(provider.name, response.status, raw, retry_after)
                if request.stream:
                    decoder = leg.decoder(request.include_usage)
                    await _stream(response, decoder, renderer, guard, exchange, attempt)
                else:
                    await _complete(response, leg, renderer, guard, exchange, attempt)
            finally:
                response.release()
        except asyncio.CancelledError:
            reason = guard.claim()
            if reason is None:
                attempt.record(CLIENT_LEFT, "cancelled")
                raise
            if reason == DISCONNECT:
                attempt.record(CLIENT_LEFT, "client_gone")
                if exchange.finished:
                    return None
                raise ClientLeft from None
            error: RequestError = timeout_error(provider.name, reason, provider.timeouts)
        except TRANSPORT_ERRORS as exc:
            error = redact(transport_error(provider.name, exc), self._secrets)
        except RequestError as exc:
            error = redact(exc, self._secrets)
        else:
            return None
        finally:
            guard.disarm()
        if exchange.finished:
            return None  # the answer was complete; only the drain after it failed
        attempt.record(200 if exchange.response_started else error.status, error.kind)
        return error


def _request_headers(names: frozenset[bytes], call: Call) -> dict[str, str]:
    """The request id, and the client headers `names` lists (forward_headers), unchanged."""
    headers = {"X-Request-Id": call.request_id.decode()}
    if names:
        forwarded = [(name.decode(), value.decode("latin-1")) for name, value in call.headers if name in names]
        headers.update(forwarded)
        call.forwarded = [name for name, _ in forwarded] or None
    return headers


async def _pause(seconds: float, guard: Guard) -> None:
    """Wait before a retry, still watching for the client leaving."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if guard.claim() != DISCONNECT:
            raise
        raise ClientLeft from None


async def _complete(
    response: aiohttp.ClientResponse, leg: Leg, renderer: Renderer, guard: Guard, exchange: Exchange,
    attempt: Attempt,
) -> None:
    parts = []
    while data := await response.content.readany():
        guard.chunk()  # some upstreams send keep-alive whitespace while they think
        parts.append(data)
    raw = b"".join(parts)
    completion, attempt.tokens_in, attempt.tokens_out = leg.answer(raw)
    data = renderer.completion(completion, raw, leg.passthrough, exchange.latency_ms())
    await exchange.body(data, [JSON], more=False)


async def _stream(
    response: aiohttp.ClientResponse, decoder: StreamDecoder, renderer: Renderer, guard: Guard,
    exchange: Exchange, attempt: Attempt,
) -> None:
    content = response.content
    while data := await content.readany():
        guard.chunk()
        if exchange.finished:
            continue  # after the end, read to EOF so the connection can be reused
        chunks = decoder.feed(data)
        if decoder.done:  # the last chunks and the end go out together
            await _finish(decoder, renderer, exchange, attempt, renderer.chunks(chunks) if chunks else b"")
        elif chunks:
            await exchange.body(renderer.chunks(chunks), content=decoder.started)
        if decoder.failure is not None:
            raise decoder.failure
    chunks = decoder.close()
    if not exchange.finished:
        await _finish(decoder, renderer, exchange, attempt, renderer.chunks(chunks) if chunks else b"")


async def _finish(
    decoder: StreamDecoder, renderer: Renderer, exchange: Exchange, attempt: Attempt, last: bytes
) -> None:
    attempt.tokens_in = decoder.prompt_tokens
    attempt.tokens_out = decoder.completion_tokens
    await exchange.body(last + renderer.finish(decoder, exchange.latency_ms()), more=False)
