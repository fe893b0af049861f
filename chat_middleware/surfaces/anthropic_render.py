"""The Anthropic Messages surface, render side: canonical answers → a Message, or its SSE events.

A stream is Anthropic's exact event sequence (PROTOCOLS §9.3), every event with
its `event:` line (the SDKs drop events without one, and Claude Code then asks
again without streaming): `message_start`; per block `content_block_start`, its
deltas, `content_block_stop`; `message_delta` with the stop reason and usage;
`message_stop`. A block is opened when a new kind of content begins (thinking,
text, each tool call) and closed when the kind changes.

What cannot be carried, and what is sent instead:
- Thinking blocks have no real signature: they carry `UNSIGNED`, which chatd's
  own request translation ignores and its Anthropic passthrough takes out (a
  real Anthropic upstream would reject it).
- An answer with no content at all is one empty text block, so that clients
  reading `content[0].text` work.
- `message_start` reports 0 input tokens (the count comes with the end);
  `message_delta` reports the decoder's counts, input tokens including cached ones.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import orjson

from ..asgi import SSE_HEADERS
from ..errors import RequestError
from ..render import first_choices
from ..shapes import answer_arguments, count, reasoning_text
from ..streams import Chunks, StreamDecoder
from ..transforms.anthropic_passthrough import UNSIGNED

if TYPE_CHECKING:
    from ..routing import Target

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal", "function_call": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               529: "overloaded_error"}
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def anthropic_error_type(status: int) -> str:
    """The Anthropic `error.type` of an HTTP status (DESIGN §4): any other 4xx is an invalid
    request, anything from 500 on but 529 an `api_error`."""
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_object(error: RequestError) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}`: Anthropic's error body and stream event data."""
    return orjson.dumps({"type": "error",
                         "error": {"type": anthropic_error_type(error.status), "message": error.message}})


def event(kind: bytes, data: dict) -> bytes:
    return b"event: " + kind + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def message_id() -> str:
    return "msg_" + os.urandom(12).hex()


class AnthropicRenderer:
    """Messages answers for one request; `model` is the name the client asked for, which answers carry."""

    __slots__ = ("model", "passthrough", "_id", "_started", "_open", "_block", "_blocks", "_tools",
                 "_used_tools", "_finish_reason")
    stream_headers = SSE_HEADERS

    def __init__(self, model: str) -> None:
        self.model = model
        self.serving(None)

    def serving(self, target: Target | None, passthrough: bool = False) -> None:
        """A new upstream attempt: a retry or fallback starts the message afresh."""
        self.passthrough = passthrough
        self._id = message_id()
        self._started = False
        self._open: str | None = None  # the kind of the open block: thinking, text or tool_use
        self._block = -1  # the index of the open block
        self._blocks = 0
        self._tools: dict[int, int] = {}  # tool call index → its block's index
        self._used_tools = False
        self._finish_reason: str | None = None

    # ----- a whole answer

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        if passthrough:
            return raw
        choice = completion["choices"][0]
        message = choice.get("message") if isinstance(choice, dict) else None
        message = message if isinstance(message, dict) else {}
        content: list[dict] = []
        reasoning = reasoning_text(message)
        if reasoning:
            content.append({"type": "thinking", "thinking": reasoning, "signature": UNSIGNED})
        text = message.get("content")
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                content.append({"type": "tool_use", "id": _call_id(call.get("id")),
                                "name": _name(function.get("name")), "input": answer_arguments(function.get("arguments"))})
        tools = any(block["type"] == "tool_use" for block in content)
        if not content:
            content.append({"type": "text", "text": ""})
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        usage = completion.get("usage")
        return orjson.dumps({
            "id": self._id, "type": "message", "role": "assistant", "model": self.model, "content": content,
            "stop_reason": _stop_reason(finish, tools), "stop_sequence": None,
            "usage": _usage(usage if isinstance(usage, dict) else {}),
        })

    # ----- a stream

    def chunks(self, chunks: Chunks) -> bytes:
        if self.passthrough:
            return chunks.sse
        out = [] if self._started else [self._message_start()]
        for choice in first_choices(chunks):
            delta = choice.get("delta")
            if isinstance(delta, dict):
                reasoning = reasoning_text(delta)
                if reasoning:
                    if self._open != "thinking":
                        self._start({"type": "thinking", "thinking": "", "signature": ""}, out)
                    out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
                text = delta.get("content")
                if isinstance(text, str) and text:
                    if self._open != "text":
                        self._start({"type": "text", "text": ""}, out)
                    out.append(self._text(text))
                calls = delta.get("tool_calls")
                for fragment in calls if isinstance(calls, list) else ():
                    if isinstance(fragment, dict):
                        self._tool(fragment, out)
            finish = choice.get("finish_reason")
            if isinstance(finish, str):
                self._finish_reason = finish
        return b"".join(out)

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        if self.passthrough:
            return b""
        out = [] if self._started else [self._message_start()]
        if not self._blocks:  # nothing came: one empty text block, as a whole answer has
            self._start({"type": "text", "text": ""}, out)
            out.append(self._text(""))
        self._close(out)
        out.append(event(b"message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(self._finish_reason, self._used_tools), "stop_sequence": None},
            "usage": {"input_tokens": decoder.prompt_tokens, "output_tokens": decoder.completion_tokens},
        }))
        out.append(_STOP)
        return b"".join(out)

    def ping(self) -> bytes:
        """A keep-alive event the relay may send while the upstream is silent (after the head)."""
        return PING

    # ----- errors

    def stream_error(self, error: RequestError) -> bytes:
        return b"event: error\ndata: " + error_object(error) + b"\n\n"

    def error_body(self, error: RequestError) -> bytes:
        return error_object(error)

    # ----- the parts of a stream

    def _message_start(self) -> bytes:
        self._started = True
        return event(b"message_start", {"type": "message_start", "message": {
            "id": self._id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})

    def _start(self, block: dict, out: list[bytes]) -> None:
        self._close(out)
        self._open = block["type"]
        self._block = self._blocks
        self._blocks += 1
        out.append(event(b"content_block_start",
                         {"type": "content_block_start", "index": self._block, "content_block": block}))

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        if self._open == "thinking":
            out.append(self._delta({"type": "signature_delta", "signature": UNSIGNED}))
        out.append(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n' % self._block)
        self._open = None

    def _delta(self, delta: dict, index: int | None = None) -> bytes:
        return event(b"content_block_delta", {"type": "content_block_delta",
                                               "index": self._block if index is None else index, "delta": delta})

    def _text(self, text: str) -> bytes:
        """The common event, a piece of text, written directly."""
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"text_delta","text":' % self._block + orjson.dumps(text) + b"}}\n\n")

    def _tool(self, fragment: dict, out: list[bytes]) -> None:
        """A tool-call fragment: the first of its index opens a tool_use block, the rest add input JSON.

        OpenAI streams one call after another; a late fragment of a call whose block
        is closed still goes to that block's index (SDK accumulators add it there).
        """
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        index = fragment.get("index")
        if not isinstance(index, int):  # not OpenAI's shape: a fragment with an id is a new call
            index = len(self._tools) if fragment.get("id") or not self._tools else max(self._tools)
        block = self._tools.get(index)
        if block is None:
            self._start({"type": "tool_use", "id": _call_id(fragment.get("id")), "name": _name(function.get("name")),
                         "input": {}}, out)
            self._tools[index] = self._block
            self._used_tools = True
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        elif arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}, block))


def _stop_reason(finish_reason: object, tools: bool) -> str:
    """OpenAI `finish_reason` → Anthropic `stop_reason`, never null; tool calls that ended "stop" are tool_use."""
    reason = STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    return "tool_use" if tools and reason == "end_turn" else reason


def _usage(usage: dict) -> dict:
    prompt, output = count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(count(details.get("cached_tokens")), prompt) if isinstance(details, dict) else 0
    return {"input_tokens": prompt - cached, "output_tokens": output, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached}


def _call_id(value: object) -> str:
    return value if isinstance(value, str) and value else "toolu_" + os.urandom(12).hex()


def _name(value: object) -> str:
    return value if isinstance(value, str) else ""
