"""Same-kind passthrough: an Anthropic surface client served by an `anthropic` provider.

The request bytes go upstream as the client sent them (model aside); the answer
comes back byte for byte, so nothing a translation would lose (signatures,
citations, server tools, cache counts, event types chatd does not know) is lost.
The decoder forwards whole events only, keeping an unfinished one for the next
read, and parses just the events that carry usage or an error: the rest (the
deltas, nearly all of a stream) are found and framed with byte searches.

One thing is taken out of the request: thinking blocks chatd itself made from
another provider's reasoning (signed `UNSIGNED`, when a conversation moved from
a translated provider to this one), which Anthropic would reject for their
signature. A request without any goes as it came.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import orjson

from ..errors import UpstreamError, UpstreamStreamError
from ..passthrough import with_model
from ..shapes import answer_object, encode_request
from ..streams import Chunks
from .anthropic_response import EventStream, Usage, anthropic_error

if TYPE_CHECKING:
    from ..canonical import ChatRequest

API = "anthropic"
"""The surface (client API) an `anthropic` provider serves as it is."""
UNSIGNED = "chatd-unsigned"
"""The signature of a thinking block chatd made from another API's reasoning text (surfaces/anthropic_render)."""
_UNSIGNED = b'"chatd-unsigned"'

_READ = b'"message_'
"""How the events that carry usage or the end are found (message_start, _delta, _stop); a quote
inside a JSON string is escaped, so only a top-level `type` value can match."""
_ERROR = b'"error"'
"""How an error event is found: `"type":"error"`, and the `"error"` key it holds."""
_STARTED = b'"content_block_delta"'
"""How the answer's first content is found: a block that only opened can still be taken back."""
_EVENT_END = re.compile(rb"(\r\n\r\n|\n\n|\r\r)")


class AnthropicPassage:
    """An Anthropic Messages client's own bytes to an `anthropic` provider (a Passage)."""

    api = API
    path = "/v1/messages"
    forward = ("anthropic-version", "anthropic-beta")
    """The client's own API version and betas go upstream with its bytes."""

    def build(self, request: ChatRequest, model: str) -> bytes:
        if request.raw.find(_UNSIGNED) >= 0 and isinstance(request.body.get("messages"), list):
            return encode_request({**request.body, "model": model, "messages": _signed(request.body["messages"])})
        return with_model(request.raw, request.body, model)

    def usage(self, raw: bytes) -> tuple[int, int]:
        return passthrough_usage(raw)

    def decoder(self, include_usage: bool) -> AnthropicPassthroughDecoder:
        return AnthropicPassthroughDecoder()


PASSAGE = AnthropicPassage()


def _signed(messages: list) -> list:
    """`messages` without chatd's unsigned thinking blocks (and without a turn they alone made up)."""
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            kept = [block for block in content if not (
                isinstance(block, dict) and block.get("type") == "thinking" and block.get("signature") == UNSIGNED)]
            if not kept and content:
                continue
            if len(kept) != len(content):
                message = {**message, "content": kept}
        out.append(message)
    return out


class AnthropicPassthroughDecoder(EventStream):
    """Anthropic SSE → the same bytes, as `Chunks(sse=events, payloads=[data of each event])`.

    `started` is set at the first content_block_delta (or the message_delta of an
    answer with no blocks), `done` once message_stop is forwarded. An `error`
    event is not forwarded: it becomes `failure`, so the relay can still retry
    or fall back when nothing was sent, or send the surface's own error event.
    """

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        super().__init__()
        self._tail = b""

    def feed(self, data: bytes) -> Chunks:
        if self.done or self.failure:
            return Chunks()
        buffer = self._tail + data if self._tail else data
        end = _end_of_events(buffer)
        if not end:
            self._tail = buffer
            return Chunks()
        self._tail = buffer[end:]
        return self._forward(buffer if end == len(buffer) else buffer[:end])

    def close(self) -> Chunks:
        tail, self._tail = self._tail, b""
        chunks = Chunks()
        if tail.strip() and not (self.done or self.failure):  # an event left unterminated at EOF
            chunks = self._forward(tail + (b"\n" if tail.endswith(b"\n") else b"\n\n"))
        if self.failure:
            raise self.failure
        if not self.done:
            raise UpstreamStreamError("upstream stream ended before message_stop")
        return chunks

    def _forward(self, events: bytes) -> Chunks:
        """Whole events → what is forwarded of them; only events with a needle are parsed."""
        crlf = events.find(b"\r") >= 0  # not how Anthropic frames events, but SSE allows it
        if not crlf and events.find(_READ) < 0 and events.find(_ERROR) < 0:  # deltas and pings: most reads
            if not self.started and events.find(_STARTED) >= 0:
                self.started = True
            if events.find(b"\n\n") == len(events) - 2:  # one event
                return Chunks(sse=events, payloads=[_payload(events[:-2])])
            payloads = [payload for part in events.split(b"\n\n")[:-1] if (payload := _payload(part))]
            return Chunks(sse=events, payloads=payloads)
        if crlf:
            pieces = _EVENT_END.split(events)  # event, its end, event, its end, …, b""
            parts = [pieces[k] + pieces[k + 1] for k in range(0, len(pieces) - 1, 2)]
        else:
            parts = [part + b"\n\n" for part in events.split(b"\n\n")[:-1]]
        kept: list[bytes] = []
        payloads: list[bytes] = []
        for part in parts:
            payload = _payload(part)
            if part.find(_READ) >= 0 or part.find(_ERROR) >= 0:
                if not self._read(payload):
                    break  # an error: neither it nor anything after it is forwarded
            elif not self.started and part.find(_STARTED) >= 0:
                self.started = True
            kept.append(part)
            if payload:
                payloads.append(payload)
            if self.done:
                break  # nothing after message_stop counts
        return Chunks(sse=b"".join(kept), payloads=payloads) if kept else Chunks()

    def _read(self, payload: bytes) -> bool:
        """Take usage, the start or the end from an event; False (and `failure` set) for an error."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.failure = UpstreamStreamError("upstream sent a stream event that is not JSON")
            return False
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "error":
            self.failure = anthropic_error(data, UpstreamStreamError)
            return False
        if kind == "message_start":
            message = data.get("message")
            self._usage.read(message.get("usage") if isinstance(message, dict) else None)
        elif kind == "message_delta":
            self._usage.read(data.get("usage"))
            self.started = True  # an answer without blocks has begun with its end
        elif kind == "message_stop":
            self.done = True
        return True


def passthrough_usage(raw: bytes) -> tuple[int, int]:
    """A non-streamed passthrough answer's (input tokens with the cached ones, output tokens).

    Raises the matching chatd error for an Anthropic error body, UpstreamError for anything
    that is not a Message.
    """
    body = answer_object(raw)
    if body.get("type") == "error":
        raise anthropic_error(body)
    if body.get("type") != "message":
        raise UpstreamError("upstream answered with a body that is not an Anthropic Message")
    usage = Usage()
    usage.read(body.get("usage"))
    return usage.prompt, usage.output


def _end_of_events(buffer: bytes) -> int:
    """Where the last whole event of `buffer` ends (0: none yet)."""
    end = buffer.rfind(b"\n\n") + 2
    if buffer.find(b"\r") >= 0:
        for separator in (b"\r\n\r\n", b"\r\r"):
            at = buffer.rfind(separator)
            if at >= 0:
                end = max(end, at + len(separator))
    return end if end > 1 else 0


def _payload(event: bytes) -> bytes:
    """The data of one event: its `data:` lines joined, as SSE says (b"" for none)."""
    at = event.find(b"\ndata: ")
    if at >= 0 and event.find(b"\n", at + 1) < 0 and event.startswith(b"event: "):
        return event[at + 7:]  # `event: …` and one `data: …` line: how Anthropic frames every event
    data = [line[6:] if line[5:6] == b" " else line[5:] for line in event.splitlines() if line.startswith(b"data:")]
    return data[0] if len(data) == 1 else b"\n".join(data)
