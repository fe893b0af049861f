"""The OpenAI Chat Completions surface's answers: the canonical shape itself.

Passthrough bytes stay untouched; translated chunks are framed once as SSE, and
every stream ends with `data: [DONE]` (the passthrough decoder keeps the
upstream's own, and anything after it, from the client).
"""

from __future__ import annotations

import orjson

from ..render import SSERenderer
from ..streams import SSE_DONE, Chunks, StreamDecoder


class OpenAIRenderer(SSERenderer):
    """OpenAI Chat Completions: what the relay hands over is already this shape."""

    __slots__ = ()

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        return raw if passthrough else orjson.dumps(completion)

    def chunks(self, chunks: Chunks) -> bytes:
        return chunks.sse

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        return SSE_DONE
