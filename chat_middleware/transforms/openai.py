"""`openai`: any OpenAI-compatible /chat/completions endpoint, and /responses where it has one.

A Chat Completions client is passed through (passthrough.py): its bytes go
upstream with only `model` rewritten, unknown fields (`provider`, `top_k`,
`reasoning`…) kept; its stream is forwarded as the upstream sent it, parsed
only where it may carry usage or an error. Every other surface's canonical
body — already the Chat Completions shape — is sent with its model set. A
provider with `responses = true` takes Responses clients' bytes the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import orjson

from ..canonical import CHAT, ChatRequest
from ..errors import UpstreamError, UpstreamStreamError, from_upstream_status, upstream_error_message
from ..passthrough import with_field, with_model
from ..shapes import answer_object, count, encode_request
from ..streams import Chunk, Chunks, SSESplitter
from .responses import RESPONSES, RESPONSES_PASSAGE

if TYPE_CHECKING:
    from ..settings import ProviderConfig
    from .base import Passage


_USAGE = b'"prompt_tokens"'
"""How a usage object is found, wherever it sits (Kimi's is inside the choice): every one
counts prompt tokens, while the chunks before the last say `"usage":null` or nothing. A
quote inside a JSON string is escaped, so only a key can match."""
_ERROR = b'"error"'
"""How an in-band error is found; it also matches `"finish_reason":"error"`."""
_ASK_USAGE = {"include_usage": True}
"""chatd always reads a stream's usage for telemetry; the decoder hides it again from a client
that did not ask for it."""


def _needs_reading(payload: bytes) -> bool:
    return payload == b"[DONE]" or payload.find(_ERROR) >= 0 or payload.find(_USAGE) >= 0


def _any_needs_reading(payloads: list[bytes], events: bytes, end: int) -> bool:
    """Whether any of `payloads`, which are `events[:end]`, needs reading: one pass per search."""
    return events.find(_ERROR, 0, end) >= 0 or events.find(_USAGE, 0, end) >= 0 or b"[DONE]" in payloads


def bearer(api_key: str | None) -> dict[str, str]:
    """How OpenAI-compatible APIs (and Ollama Cloud) take a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class OpenAIChat:
    name = "openai"
    path = "/chat/completions"
    headers = staticmethod(bearer)

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes:
        return _encoded(body, model, stream)

    def passages(self, provider: ProviderConfig) -> Mapping[str, Passage]:
        return _CHAT_AND_RESPONSES if provider.responses else _CHAT_ONLY

    def completion(self, raw: bytes) -> dict:
        return checked_completion(raw)

    def decoder(self, include_usage: bool) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(include_usage)


def _encoded(body: dict, model: str, stream: bool) -> bytes:
    """A Chat Completions body for the upstream: its model set and, on a stream, usage asked for."""
    upstream = {**body, "model": model}
    if stream:
        options = body.get("stream_options")
        options = options if isinstance(options, dict) else {}
        if not options.get("include_usage"):
            upstream["stream_options"] = {**options, **_ASK_USAGE}
    return encode_request(upstream)


def checked_completion(raw: bytes) -> dict:
    """A non-streamed answer as an object, or the error it is: not JSON, an in-band error, no choices."""
    body = answer_object(raw)
    if body.get("error"):  # OpenRouter reports some failures with HTTP 200; `"error": null` is none
        raise in_band_error(body)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UpstreamError("upstream answered with zero choices")
    return body


class ChatPassage:
    """A Chat Completions client's own bytes to an OpenAI-compatible upstream."""

    api = CHAT
    path = "/chat/completions"
    forward: tuple[str, ...] = ()

    def build(self, request: ChatRequest, model: str) -> bytes:
        raw, body = with_model(request.raw, request.body, model), request.body
        if request.stream:
            options = body.get("stream_options")
            if options is None:
                return with_field(raw, "stream_options", _ASK_USAGE)
            if not isinstance(options, dict) or not options.get("include_usage"):  # rare: encode anew
                return _encoded(body, model, True)
        return raw

    def usage(self, raw: bytes) -> tuple[int, int]:
        usage = checked_completion(raw).get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))

    def decoder(self, include_usage: bool) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(include_usage)


CHAT_PASSAGE = ChatPassage()
_CHAT_ONLY = {CHAT: CHAT_PASSAGE}
_CHAT_AND_RESPONSES = {CHAT: CHAT_PASSAGE, RESPONSES: RESPONSES_PASSAGE}


def has_content(chunks: Chunks) -> bool:
    """Whether a client seeing these chunks has seen the answer begin (text, reasoning, a tool
    call, or its end); the role chunk and keep-alives alone are not a beginning."""
    for chunk in chunks:
        try:
            choice = chunk.data["choices"][0]
            delta = choice.get("delta") or {}
            if (choice.get("finish_reason") or delta.get("content") or delta.get("tool_calls")
                    or delta.get("reasoning") or delta.get("reasoning_content")):
                return True
        except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError):
            continue
    return False


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

    __slots__ = ("_sse", "_include_usage", "done", "failure", "prompt_tokens", "completion_tokens", "started")

    def __init__(self, include_usage: bool) -> None:
        self._sse = SSESplitter()
        self._include_usage = include_usage
        self.done = False
        self.failure: UpstreamError | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.started = False

    def feed(self, data: bytes) -> Chunks:
        chunks = self._feed(data)
        if not self.started:
            self.started = has_content(chunks)
        return chunks

    def _feed(self, data: bytes) -> Chunks:
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
