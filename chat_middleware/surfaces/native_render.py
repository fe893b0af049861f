"""chatd's native /v1/chat answers: `{model, provider, content, …}`, and SSE `{"delta": …}` events."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..render import SSERenderer, first_choices
from ..shapes import completion_text
from ..streams import Chunks, StreamDecoder

if TYPE_CHECKING:
    from ..routing import Target


class NativeRenderer(SSERenderer):
    """chatd's own shape: `{model, provider, content, input_tokens, output_tokens, finish_reason, latency_ms}`."""

    __slots__ = ("provider", "model", "finish_reason")

    def __init__(self) -> None:
        self.provider = ""
        self.model = ""
        self.finish_reason: str | None = None

    def serving(self, target: Target, passthrough: bool = False) -> None:
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
