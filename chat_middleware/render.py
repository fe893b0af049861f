"""What the client receives: the OpenAI shape, or chatd's native /v1/chat shape.

The relay hands a renderer OpenAI objects (a completion, or stream chunks) and
sends whatever bytes it returns; a renderer is made per request and holds the
little state a stream needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import orjson

from .asgi import SSE_HEADERS
from .errors import RequestError, UpstreamStreamError
from .shapes import completion_text
from .streams import SSE_DONE, Chunks, StreamDecoder
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
    stream_headers: Headers
    """Response headers of a streamed answer (content type first)."""

    def serving(self, target: Target) -> None: ...

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes: ...

    def chunks(self, chunks: Chunks) -> bytes: ...

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes: ...

    def stream_error(self, error: RequestError) -> bytes: ...

    def error_body(self, error: RequestError) -> bytes:
        """Body of an error answered before the response began (its status is the error's)."""
        ...


class SSERenderer:
    """What every SSE answer shares: its headers, and the event that ends a failed stream."""

    __slots__ = ()
    stream_headers = SSE_HEADERS

    def serving(self, target: Target) -> None:
        pass

    def stream_error(self, error: RequestError) -> bytes:
        return b"data: " + error.json() + b"\n\n"

    def error_body(self, error: RequestError) -> bytes:
        return error.json()


class OpenAIRenderer(SSERenderer):
    """OpenAI Chat Completions: passthrough bytes stay untouched."""

    __slots__ = ()

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        return raw if passthrough else orjson.dumps(completion)

    def chunks(self, chunks: Chunks) -> bytes:
        return chunks.sse

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        return SSE_DONE


class NativeRenderer(SSERenderer):
    """chatd's own shape: `{model, provider, content, input_tokens, output_tokens, finish_reason, latency_ms}`."""

    __slots__ = ("provider", "model", "finish_reason")

    def __init__(self) -> None:
        self.provider = ""
        self.model = ""
        self.finish_reason: str | None = None

    def serving(self, target: Target) -> None:
        """The chain entry now being asked: its name goes into the answer."""
        self.provider = target.provider
        self.model = target.upstream_model
        self.finish_reason = None

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        content, finish_reason, tokens_in, tokens_out = completion_text(completion)
        model = completion.get("model")
        return orjson.dumps({
            "model": model if isinstance(model, str) and model else self.model,
            "provider": self.provider,
            "content": content,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "finish_reason": finish_reason,
            "latency_ms": round(latency_ms, 3),
        })

    def chunks(self, chunks: Chunks) -> bytes:
        events = []
        for choice in first_choices(chunks):
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            finish_reason = choice.get("finish_reason")
            if isinstance(content, str) and content:
                events.append(b'data: {"delta":' + orjson.dumps(content) + b"}\n\n")
            if isinstance(finish_reason, str):
                self.finish_reason = finish_reason
        return b"".join(events)

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        return b"data: " + orjson.dumps({
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason or "stop",
            "input_tokens": decoder.prompt_tokens,
            "output_tokens": decoder.completion_tokens,
            "latency_ms": round(latency_ms, 3),
        }) + b"\n\n"
