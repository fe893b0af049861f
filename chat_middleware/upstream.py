"""The one place upstream HTTP clients are made: a pooled aiohttp session per provider.

Sessions are opened with the lifespan (or on first use when the host server sends
no lifespan events) and closed at shutdown. Everything per provider that does
not change per request — URL, headers, timeouts, pool limits — is built here once.
Transport exceptions become chatd errors in exactly one place: `transport_error`.
"""

from __future__ import annotations

import asyncio
import io
from typing import Awaitable

import aiohttp
from yarl import URL

from .settings import Config, ProviderConfig
from .version import __version__
from .errors import UpstreamError, UpstreamTimeout
from .transforms import TRANSFORMS


_LARGE = 1 << 20


def request_body(body: bytes) -> bytes | io.BytesIO:
    """A whole body for aiohttp, which warns (ResourceWarning) about raw bytes over 1 MiB."""
    return io.BytesIO(body) if len(body) > _LARGE else body


def _headers(provider: ProviderConfig) -> dict[str, str]:
    """Every request's headers: chatd's, the key as the provider's API takes it, the provider's own."""
    headers = {"Content-Type": "application/json", "User-Agent": f"chatd/{__version__}"}
    headers.update(TRANSFORMS[provider.transform].headers(provider.api_key))
    headers.update(provider.headers)
    return headers


class Upstreams:
    """One aiohttp ClientSession per registered provider, and the URL of each endpoint it is sent to."""

    def __init__(self, config: Config) -> None:
        self._providers = {p.name: p for p in config.registered}
        self._urls: dict[tuple[str, str], URL] = {}
        for name, provider in self._providers.items():
            transform = TRANSFORMS[provider.transform]
            for path in {transform.path, *(p.path for p in transform.passages(provider).values())}:
                self._urls[name, path] = URL(provider.base_url + path)
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def open(self) -> None:
        """Create the sessions; must run inside the serving event loop."""
        for name, provider in self._providers.items():
            if name not in self._sessions:
                self._sessions[name] = self._session(provider)

    @staticmethod
    def _session(provider: ProviderConfig) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=provider.max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        # Only the connect deadline lives in aiohttp; first-byte, idle and total
        # deadlines are the relay's, so they can tell the client which one passed.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=provider.timeouts.connect)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=_headers(provider), raise_for_status=False
        )

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        await asyncio.gather(*(s.close() for s in sessions.values()), return_exceptions=True)

    def post(self, provider: str, path: str, body: bytes, headers: dict[str, str]
             ) -> Awaitable[aiohttp.ClientResponse]:
        """Send a request to one of the provider's endpoints with per-request `headers` (the request
        id, forwarded client headers): await it for the response head, catching TRANSPORT_ERRORS.

        Not a coroutine of its own, so every suspension of aiohttp's request
        passes through one frame fewer.
        """
        session = self._sessions.get(provider)
        if session is None:
            self.open()
            session = self._sessions[provider]
        return session.post(self._urls[provider, path], data=request_body(body), headers=headers)

    async def fetch(self, provider: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """One small call to another endpoint of the provider's API (Ollama's /api/show), read whole:
        its status and body. Transport failures and the deadline become chatd's errors."""
        if provider not in self._sessions:
            self.open()
        try:
            async def call() -> tuple[int, bytes]:
                async with self._sessions[provider].post(self._providers[provider].base_url + path,
                                                         data=body) as response:
                    return response.status, await response.read()

            return await asyncio.wait_for(call(), timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"{provider} did not answer within {timeout:g}s") from None
        except TRANSPORT_ERRORS as exc:
            raise transport_error(provider, exc) from None


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
"""What aiohttp raises when the connection to an upstream, not its answer, fails."""


def transport_error(provider: str, exc: BaseException) -> UpstreamError:
    """One of TRANSPORT_ERRORS as chatd's error, never echoing headers (keys live there).

        try:
            response = await upstreams.post("openrouter", "/chat/completions", payload, {"X-Request-Id": rid})
        except TRANSPORT_ERRORS as exc:
            error = transport_error("openrouter", exc)
    """
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return _retriable(UpstreamTimeout(f"{provider}: timed out connecting to the upstream"))
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or "refused"
        return _retriable(UpstreamError(f"{provider}: cannot connect to the upstream ({reason})"))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _retriable(UpstreamError(f"{provider}: the upstream closed the connection"))
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError(f"{provider}: the upstream response was cut off")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamError(f"{provider}: the upstream sent an invalid HTTP response")
    return UpstreamError(f"{provider}: upstream connection failed ({type(exc).__name__})")


def _retriable(error: UpstreamError) -> UpstreamError:
    error.retriable = True
    return error
