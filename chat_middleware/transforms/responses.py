"""Same-kind passthrough of Responses clients, to providers that speak the Responses API themselves.

An `openai` provider with `responses = true` (OpenAI, OpenRouter) takes a
Responses request as the client sent it (only `model` rewritten) at
`{base_url}/responses` (`ResponsesPassage`); what comes back is forwarded as it
came. This module reads that answer as little as it can: each event's type from its `event:`
line (or the `type` key that opens its data), and the JSON of only the events
that carry usage (`response.completed`, `response.incomplete`) or an error
(`response.failed`, `error`). An error is held back rather than forwarded, so
the relay can still retry or fall back, or send the renderer's own
`response.failed`, numbered on from the events the client has seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..errors import UpstreamError, UpstreamRateLimited, UpstreamStreamError, from_upstream_status
from ..passthrough import with_model
from ..shapes import answer_object, count
from ..streams import Chunks

if TYPE_CHECKING:
    from ..canonical import ChatRequest

RESPONSES = "responses"
"""The client API: OpenAI Responses (surfaces/responses_*)."""
ENDS = frozenset({b"response.completed", b"response.incomplete"})
FAILURES = frozenset({b"response.failed", b"error"})
_TYPE = b'{"type":"'


class ResponsesPassage:
    """A Responses client's own bytes to an upstream that speaks Responses; its usage needs no asking."""

    api = RESPONSES
    path = "/responses"
    forward: tuple[str, ...] = ()

    def build(self, request: ChatRequest, model: str) -> bytes:
        return with_model(request.raw, request.body, model)

    def usage(self, raw: bytes) -> tuple[int, int]:
        return passthrough_usage(raw)

    def decoder(self, include_usage: bool) -> ResponsesPassthroughDecoder:
        return ResponsesPassthroughDecoder()


RESPONSES_PASSAGE = ResponsesPassage()


def passthrough_usage(raw: bytes) -> tuple[int, int]:
    """Input and output tokens of a non-streamed Response; an error body or a failed Response raises."""
    body = answer_object(raw)
    if body.get("error") or body.get("status") == "failed":
        raise failure(body.get("error"), raw)
    return _usage(body.get("usage"))


def failure(error: object, raw: bytes) -> UpstreamError:
    """The error an upstream reported in a 200 answer or stream, keeping a code Responses clients act on."""
    error = error if isinstance(error, dict) else {}
    code, message = error.get("code"), error.get("message")
    if isinstance(code, int) and 400 <= code < 600:  # OpenRouter puts an HTTP status there
        return from_upstream_status("upstream", code, raw)
    text = f"upstream error: {message if isinstance(message, str) and message else 'the response failed'}"
    if code == "rate_limit_exceeded":
        limited = UpstreamRateLimited(text)
        limited.retriable = True
        return limited
    return UpstreamStreamError(text, code=code if isinstance(code, str) and code else None)


def _usage(usage: object) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return 0, 0
    return count(usage.get("input_tokens")), count(usage.get("output_tokens"))


class ResponsesPassthroughDecoder:
    """A Responses SSE stream, forwarded byte for byte in whole events (an unfinished one waits)."""

    __slots__ = ("_tail", "done", "failure", "started", "prompt_tokens", "completion_tokens")

    def __init__(self) -> None:
        self._tail = b""
        self.done = False
        self.failure: UpstreamError | None = None
        self.started = False
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def feed(self, data: bytes) -> Chunks:
        buffer = self._tail + data if self._tail else data
        if buffer.find(b"\r") >= 0:
            buffer = buffer.replace(b"\r\n", b"\n")  # a CRLF stream: its events end in one kind of blank line
        end = buffer.rfind(b"\n\n") + 2
        if end < 2:
            self._tail = buffer
            return Chunks()
        self._tail = buffer[end:]
        return self._events(buffer[:end])

    def close(self) -> Chunks:
        """An event left unterminated at EOF still counts; a stream without its end is an error."""
        tail, self._tail = self._tail, b""
        chunks = self._events(tail + b"\n\n") if tail.strip() else Chunks()
        if self.failure is not None:
            raise self.failure
        if not self.done:
            raise UpstreamStreamError("upstream stream ended before response.completed")
        return chunks

    def _events(self, block: bytes) -> Chunks:
        """The whole events of `block` up to the stream's end or error; only those that need it are parsed."""
        payloads: list[bytes] = []
        start = 0
        size = len(block)
        while start < size and not (self.done or self.failure):
            stop = block.find(b"\n\n", start)
            stop = size if stop < 0 else stop + 2
            kind, payload = _parse(block[start:stop - 2])
            if kind in FAILURES:
                self.failure = self._failure(kind, payload)
                break
            if payload is not None:
                payloads.append(payload)
                if kind in ENDS:
                    self.done = self.started = True
                    response = _load(payload).get("response")
                    if isinstance(response, dict):
                        self.prompt_tokens, self.completion_tokens = _usage(response.get("usage"))
                elif kind.endswith(b".delta") or kind == b"response.output_item.done":
                    self.started = True  # an item opened but still empty can yet be taken back
            start = stop
        return Chunks(sse=block[:start], payloads=payloads)

    @staticmethod
    def _failure(kind: bytes, payload: bytes | None) -> UpstreamError:
        try:
            data = _load(payload or b"{}")
        except UpstreamStreamError as exc:
            return exc
        if kind == b"error":
            nested = data.get("error")
            return failure(nested if isinstance(nested, dict) else data, payload or b"")
        response = data.get("response")
        return failure(response.get("error") if isinstance(response, dict) else None, payload or b"")


def _parse(event: bytes) -> tuple[bytes, bytes | None]:
    """An event's type and data (None for a comment or keep-alive), without parsing its JSON unless
    the type is neither on an `event:` line nor the first key of the data."""
    kind = b""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            kind = line[6:].strip()
    if not data:
        return kind, None
    payload = data[0] if len(data) == 1 else b"\n".join(data)
    if not kind:
        if payload.startswith(_TYPE):
            kind = payload[len(_TYPE):payload.find(b'"', len(_TYPE))]
        else:
            found = _load(payload).get("type")
            kind = found.encode() if isinstance(found, str) else b""
    return kind, payload


def _load(payload: bytes) -> dict:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UpstreamStreamError("upstream sent a stream event that is not JSON") from None
    return data if isinstance(data, dict) else {}
