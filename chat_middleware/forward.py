"""Remote mode: a gateway's ChatMiddleware forwards /v1/chat/* to a standalone chatd.

    forwarder = Forwarder("http://127.0.0.1:3220")
    forwarder.open()                       # lifespan startup (else on first request)
    await forwarder(scope, receive, send)  # one HTTP request
    await forwarder.close()                # lifespan shutdown

A reverse proxy that stays out of the way: method, path, query and end-to-end
headers go to chatd as they are; the request body is streamed up as the client
sends it and the response body streamed back as chatd writes it, one ASGI
message per piece, never buffered whole. Bytes are not decoded or re-encoded
(no decompression, no cookie jar, no redirects followed), so the client sees
what chatd said. When the client leaves, the upstream connection is closed at
once, so chatd in turn closes its provider stream (no tokens paid for nobody).

Failures: chatd unreachable before its response head is a 502 in the OpenAI
error shape (504 when the connect deadline passes). Once the response has
started, chatd reports its own failures in-band (SSE error events); if the
connection to chatd itself breaks, the client's response is cut off too,
rather than ended cleanly, so the truncation is never silent.
"""

from __future__ import annotations

import asyncio
import io
from typing import AsyncIterator, Iterable
from urllib.parse import quote

import aiohttp
from yarl import URL

from .asgi import HOP_BY_HOP, ClientGone, send_error
from .errors import UpstreamError, UpstreamTimeout
from .types import Headers, Message, Receive, Scope, Send
from .upstream import TRANSPORT_ERRORS, request_body

SECONDS = 1.0

# Hop-by-hop fields, plus the ones the two hops set for themselves:
# host and content-length (aiohttp derives them), date and server (the host server adds its own).
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-forwarded-for",
                               b"x-forwarded-host", b"x-forwarded-proto"}
_RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}


class Forwarder:
    """Forwards HTTP requests to one chatd over a pooled aiohttp session.

    Example::

        Forwarder("http://chatd.internal:3220", connect_timeout=2, max_connections=512)

    Only the connect deadline is the forwarder's: first-byte, idle and total
    deadlines belong to the remote chatd, which reports them to the client itself.
    """

    def __init__(self, chatd_url: str, *, connect_timeout: float = 5 * SECONDS,
                 max_connections: int = 256) -> None:
        url = URL(chatd_url)
        if url.scheme not in ("http", "https") or not url.host or url.query_string:
            raise ValueError(f"chatd_url must be an http(s) URL without a query, got {chatd_url!r}")
        self.chatd_url = str(url).rstrip("/")
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        """Create the pooled session; must run inside the serving event loop."""
        if self._session is None:
            self._session = self._new_session()

    def _new_session(self) -> aiohttp.ClientSession:
        # keepalive_timeout stays under hypercorn's and uvicorn's 5 s keep-alive, so
        # a pooled connection is dropped here before chatd closes it under a request.
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                         ttl_dns_cache=300, keepalive_timeout=4 * SECONDS)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            auto_decompress=False,                  # pass content-encoded bytes through as they are
            cookie_jar=aiohttp.DummyCookieJar(),    # one session serves every client: never share cookies
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            raise_for_status=False,
        )

    async def close(self) -> None:
        """Close the pooled connections; a later request opens a new session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one HTTP request to chatd and its response back to the client."""
        if self._session is None:
            self.open()
        assert self._session is not None
        client = _Client(receive)
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        first = message.get("body", b"")
        streaming = bool(message.get("more_body"))
        data = client.body(first) if streaming else _payload(first)
        if not streaming:
            client.watch()
        try:
            try:
                response = await self._session.request(
                    scope["method"], self._url(scope), headers=request_headers(scope),
                    data=data, allow_redirects=False,
                )
            except TRANSPORT_ERRORS as exc:
                if not client.gone:
                    await send_error(send, self._unreachable(exc))
                return
            complete = False
            try:
                await send({"type": "http.response.start", "status": response.status,
                            "headers": response_headers(response.raw_headers)})
                async for piece in response.content.iter_any():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                complete = True
            except TRANSPORT_ERRORS:
                return  # chatd's connection broke mid-body: cut the client's off too
            finally:
                if complete:
                    response.release()  # back to the pool
                else:
                    response.close()  # unread body: the connection cannot be reused
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not client.claim():
                raise
        finally:
            client.stop()

    def _url(self, scope: Scope) -> URL:
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
        query = scope.get("query_string", b"")
        target = self.chatd_url + path
        if query:
            target += "?" + query.decode("latin-1")
        return URL(target, encoded=True)

    def _unreachable(self, exc: BaseException) -> UpstreamError:
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamTimeout(
                f"chatd at {self.chatd_url} is unreachable: no connection within {self.connect_timeout:g}s")
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or "connection refused"
        elif isinstance(exc, aiohttp.ServerDisconnectedError):
            reason = "it closed the connection before answering"
        else:
            reason = type(exc).__name__
        return UpstreamError(f"chatd at {self.chatd_url} is unreachable ({reason})", code="chatd_unreachable")


def _payload(body: bytes) -> bytes | io.BytesIO | None:
    return request_body(body) if body else None


def request_headers(scope: Scope) -> list[tuple[str, str]]:
    """The client's end-to-end headers, plus X-Forwarded-For/-Host/-Proto naming the original request."""
    raw: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    drop = _REQUEST_DROP | _connection_tokens(raw)
    headers, forwarded_for, host = [], [], b""
    for name, value in raw:
        name = name.lower()
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"host":
            host = value
        if name not in drop:
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    client = scope.get("client")
    if client:
        forwarded_for.append(client[0].encode())
    if forwarded_for:
        headers.append(("x-forwarded-for", b", ".join(forwarded_for).decode("latin-1")))
    if host:
        headers.append(("x-forwarded-host", host.decode("latin-1")))
    headers.append(("x-forwarded-proto", scope.get("scheme", "http")))
    return headers


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """chatd's response headers, lowercased as ASGI wants, minus hop-by-hop ones."""
    drop = _RESPONSE_DROP | _connection_tokens(raw)
    return [(name.lower(), value) for name, value in raw if name.lower() not in drop]


def _connection_tokens(raw: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names a Connection header declares hop-by-hop (RFC 9110 §7.6.1)."""
    return frozenset(token.strip().lower() for name, value in raw if name.lower() == b"connection"
                     for token in value.split(b",") if token.strip())


class _Client:
    """One request's client: feeds the rest of its body upstream, then watches for it leaving.

    Under hypercorn a client that leaves shows only as `http.disconnect` from
    `receive()`. While the body is being read, the body generator sees it and
    aborts the upload; once the body is read, a watcher task awaits `receive()`
    and cancels the forwarding task, which closes the upstream connection.
    """

    __slots__ = ("_receive", "_task", "_watcher", "_fired", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._watcher: asyncio.Task[None] | None = None
        self._fired = False
        self.gone = False

    async def body(self, first: bytes) -> AsyncIterator[bytes]:
        """The request body as it arrives, for aiohttp's `data=`; raising aborts the upload."""
        if first:
            yield first
        more = True
        while more:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                raise ClientGone
            more = bool(message.get("more_body"))
            if not more:
                self.watch()  # the body is read: receive() is the watcher's from here on
            if message.get("body"):
                yield message["body"]

    def watch(self) -> None:
        """Begin watching for the client leaving; call once its body has been read."""
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        """Stop watching. Synchronous, so no cancel can land after it."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def claim(self) -> bool:
        """Inside `except CancelledError`: True if the cancel was ours (the client left)."""
        if not self._fired:
            return False
        uncancel = getattr(self._task, "uncancel", None)
        if uncancel is not None:
            uncancel()
        return True

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = self._fired = True
        assert self._task is not None
        self._task.cancel()
