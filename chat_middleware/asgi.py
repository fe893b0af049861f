"""Small ASGI helpers: reading a bounded body, sending JSON and error responses."""

from __future__ import annotations

from urllib.parse import quote

import orjson

from .errors import PayloadTooLarge, RequestError
from .types import Headers, Receive, Send

JSON = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"x-accel-buffering", b"no"),
]


HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
})
"""RFC 9110 §7.6.1: headers that belong to one connection, never passed on by a proxy."""


class ClientGone(Exception):
    """The client disconnected before chatd finished reading its request."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing with 413 as soon as it passes `limit` bytes."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        return body
    parts, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def header_value(text: str) -> bytes:
    """A header-safe value: client-chosen names may hold anything, headers may not."""
    if text.isascii() and text.isprintable():
        return text.encode()
    return quote(text, safe="/:@-._~!$&'()*+,;=").encode()


def content_length(body: bytes) -> tuple[bytes, bytes]:
    """Every answer whose whole body is known says its length: the client need not wait for a
    chunked end, and h11 (hypercorn) validates the headers of a chunked answer twice as often."""
    return (b"content-length", b"%d" % len(body))


async def send_body(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [*headers, content_length(body)]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, data: object, status: int = 200, headers: Headers = ()) -> None:
    await send_body(send, status, orjson.dumps(data), [JSON, *headers])


async def send_error(send: Send, error: RequestError, headers: Headers = (), body: bytes | None = None) -> None:
    """An error response; `body` replaces the OpenAI error shape (Ollama clients read another)."""
    await send_body(send, error.status, error.json() if body is None else body, [JSON, *error.headers(), *headers])
