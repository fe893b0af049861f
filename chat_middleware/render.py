"""What every surface's renderer is: canonical answers in, the client's own bytes out.

The relay hands a renderer OpenAI objects (a completion, or stream chunks) and
sends whatever bytes it returns; a renderer is made per request and holds the
little state a stream needs. When the upstream spoke the client's own API
(`passthrough`), the renderer forwards the upstream's bytes instead. Each
surface's renderer is in surfaces/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import orjson

from .asgi import SSE_HEADERS
from .errors import RequestError, UpstreamStreamError
from .streams import Chunks, StreamDecoder
from .types import Headers

if TYPE_CHECKING:
    from .routing import Target


def first_choices(chunks: Chunks) -> Iterator[dict]:
    """Each chunk's first choice, skipping usage-only and empty chunks."""
    for chunk in chunks:
        try:
            data = chunk.data
        except orjson.JSONDecodeError:
            raise UpstreamStreamError("upstream sent a stream chunk that is not JSON") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            yield choices[0]


class Renderer(Protocol):
    """A renderer may also have `ping() -> bytes`: its surface's keep-alive event, sent while a
    stream that has begun waits on a silent upstream (guard.KEEPALIVE)."""

    stream_headers: Headers
    """Response headers of a streamed answer (content type first)."""

    def serving(self, target: Target, passthrough: bool = False) -> None:
        """Before each upstream attempt: a retry or fallback starts afresh; `passthrough` says the
        upstream speaks this surface's own API, so its bytes are forwarded."""
        ...

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        """A whole answer: `completion` translated, or `raw` as it came on passthrough."""
        ...

    def chunks(self, chunks: Chunks) -> bytes: ...

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        """The end of a stream; the decoder carries the token counts."""
        ...

    def stream_error(self, error: RequestError) -> bytes: ...

    def error_body(self, error: RequestError) -> bytes:
        """Body of an error answered before the response began (its status is the error's)."""
        ...


class SSERenderer:
    """What every SSE answer shares: its headers, and the event that ends a failed stream."""

    __slots__ = ()
    stream_headers = SSE_HEADERS

    def serving(self, target: Target, passthrough: bool = False) -> None:
        pass

    def stream_error(self, error: RequestError) -> bytes:
        return b"data: " + error.json() + b"\n\n"

    def error_body(self, error: RequestError) -> bytes:
        return error.json()
