"""`openai`: passthrough to any OpenAI-compatible /chat/completions endpoint.

Only `model` is rewritten; unknown fields (`provider`, `top_k`, `reasoning`…) are
kept. Stream chunks are forwarded as the upstream sent them and parsed only when
they may carry usage or an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..errors import UpstreamError, UpstreamStreamError, from_upstream_status, upstream_error_message
from ..shapes import count, encode_request
from ..streams import Chunk, Chunks, SSESplitter

if TYPE_CHECKING:
    from ..config import ProviderConfig


_USAGE = b'"prompt_tokens"'
"""How a usage object is found, wherever it sits (Kimi's is inside the choice): every one
counts prompt tokens, while the chunks before the last say `"usage":null` or nothing. A
quote inside a JSON string is escaped, so only a key can match."""
_ERROR = b'"error"'
"""How an in-band error is found; it also matches `"finish_reason":"error"`."""


def _needs_reading(payload: bytes) -> bool:
    return payload == b"[DONE]" or payload.find(_ERROR) >= 0 or payload.find(_USAGE) >= 0


def _any_needs_reading(payloads: list[bytes], events: bytes, end: int) -> bool:
    """Whether any of `payloads`, which are `events[:end]`, needs reading: one pass per search."""
    return events.find(_ERROR, 0, end) >= 0 or events.find(_USAGE, 0, end) >= 0 or b"[DONE]" in payloads


class OpenAIPassthrough:
    name = "openai"
    path = "/chat/completions"
    passthrough = True

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes:
        upstream = {**body, "model": model}
        if stream:
            # chatd always reads usage for telemetry; the decoder hides it again
            # from a client that did not ask for it.
            options = body.get("stream_options")
            options = options if isinstance(options, dict) else {}
            if not options.get("include_usage"):
                upstream["stream_options"] = {**options, "include_usage": True}
        return encode_request(upstream)

    def completion(self, raw: bytes) -> dict:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream answered with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise UpstreamError("upstream answered with JSON that is not an object")
        if body.get("error"):  # OpenRouter reports some failures with HTTP 200; `"error": null` is none
            raise in_band_error(body)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UpstreamError("upstream answered with zero choices")
        return body

    def decoder(self, include_usage: bool) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(include_usage)


def in_band_error(body: dict) -> UpstreamError:
    """An error object inside a 200 answer or stream; OpenRouter puts an HTTP status in `code`."""
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    raw = orjson.dumps(body)
    if isinstance(code, int) and 400 <= code < 600 and code != 200:
        return from_upstream_status("upstream", code, raw)
    return UpstreamStreamError(f"upstream error: {upstream_error_message(raw)}")


class OpenAIStreamDecoder:
    """SSE from an OpenAI-compatible upstream → the same chunks, minus what chatd added."""

    __slots__ = ("_sse", "_include_usage", "done", "failure", "prompt_tokens", "completion_tokens")

    def __init__(self, include_usage: bool) -> None:
        self._sse = SSESplitter()
        self._include_usage = include_usage
        self.done = False
        self.failure: UpstreamError | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def feed(self, data: bytes) -> Chunks:
        canonical = self._sse.canonical(data)
        if canonical is None:
            return self._chunks(self._sse.feed(data))
        payloads, events = canonical
        if self.done or self.failure:
            return self._chunks(payloads)
        # Forward the events as they came, up to the last few that need reading
        # (usage, [DONE], an error): those are read one by one.
        plain = len(payloads)
        while plain and _needs_reading(payloads[plain - 1]):
            plain -= 1
        head, end = payloads, len(events)
        if plain < len(payloads):
            head = payloads[:plain]
            end -= sum([len(p) + 8 for p in payloads[plain:]])  # data: …\n\n
        # The peel has read the last of `head`; the ones before it are looked for in one go.
        if not head or len(head) > 1 and _any_needs_reading(head, events, end):
            return self._chunks(payloads)
        if head is payloads:
            return Chunks(sse=events, payloads=payloads)
        last = self._chunks(payloads[plain:])
        return Chunks([*last], events[:end] + last.sse, head)

    def close(self) -> Chunks:
        chunks = self._chunks(self._sse.close())
        if self.failure:
            raise self.failure
        if not self.done:
            raise UpstreamStreamError("upstream stream ended before [DONE]")
        return chunks

    def _chunks(self, payloads: list[bytes]) -> Chunks:
        chunks: list[Chunk] = []
        for payload in payloads:
            if self.done or self.failure:
                break  # OpenCode Zen may append a cost chunk after [DONE]
            if payload == b"[DONE]":
                self.done = True
                break
            chunk = Chunk(payload)
            if payload.find(_ERROR) >= 0:
                try:
                    self._raise_on_error(chunk)
                except UpstreamError as exc:
                    self.failure = exc  # the chunks before it are still delivered
                    break
            if payload.find(_USAGE) >= 0 and self._read_usage(chunk.data) and not self._include_usage:
                continue
            chunks.append(chunk)
        return Chunks(chunks)

    @staticmethod
    def _raise_on_error(chunk: Chunk) -> None:
        try:
            data = chunk.data
        except orjson.JSONDecodeError:
            raise UpstreamStreamError("upstream sent a stream event that is not JSON") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        failed = isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("finish_reason") == "error" for c in choices
        )
        if isinstance(data, dict) and (data.get("error") or failed):  # the SDK too raises only when truthy
            raise UpstreamStreamError(f"upstream error: {upstream_error_message(chunk.payload)}")

    def _read_usage(self, data: dict) -> bool:
        """Record usage; True when this chunk exists only to carry it (no choices)."""
        choices = data.get("choices") or []
        usage = data.get("usage")
        if not isinstance(usage, dict) and choices and isinstance(choices[0], dict):
            usage = choices[0].get("usage")  # Kimi puts it inside the choice
        if isinstance(usage, dict):
            self.prompt_tokens = count(usage.get("prompt_tokens"))
            self.completion_tokens = count(usage.get("completion_tokens"))
        return not choices
