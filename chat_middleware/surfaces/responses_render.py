"""Canonical answers → OpenAI Responses objects and events (PROTOCOLS §10).

A non-streamed answer is one Response object. A streamed one is the event
sequence OpenAI sends — `response.created`, `response.in_progress`, per output
item `output_item.added` … `output_item.done`, then exactly one of
`response.completed` / `response.incomplete` — each `event: <type>` plus
`data: <json>` with a `sequence_number` counting from 0. Codex prints only the
text of `output_item.done` and re-sends a request whose stream lacks
`response.completed`, so a stream is always closed properly, and a failure
after it began is a `response.failed`.

Same-kind passthrough (the upstream speaks Responses) forwards the upstream's
bytes; the renderer only remembers its response id and last sequence number,
so that its own `response.failed` continues the upstream's sequence.
"""

from __future__ import annotations

import re
from time import time
from typing import TYPE_CHECKING

import orjson

from ..asgi import SSE_HEADERS
from ..errors import RequestError
from ..shapes import count
from ..streams import Chunks, StreamDecoder
from .responses_events import (
    INCOMPLETE, EventStream, call_item, chunk_data, message_item, new_id, reasoning_item, unique_call_id, usage,
    usage_details,
)
from .responses_request import ResponsesContext
from .responses_tools import ToolRef

if TYPE_CHECKING:
    from ..routing import Target

ERROR_CODES = frozenset({
    "server_error", "rate_limit_exceeded", "invalid_prompt", "context_length_exceeded", "insufficient_quota",
    "usage_not_included", "vector_store_timeout", "invalid_image", "invalid_image_format", "invalid_base64_image",
    "invalid_image_url", "image_too_large", "image_too_small", "image_parse_error",
    "image_content_policy_violation", "invalid_image_mode", "image_file_too_large",
    "unsupported_image_media_type", "empty_image_file", "failed_to_download_image", "image_file_not_found",
})
"""Codes a Response's `error` may carry (the SDK's, and those Codex acts on); chatd's own become server_error."""
_SEQUENCE = re.compile(rb'"sequence_number":\s*(\d+)')
"""Where an event says its number; a quote inside a JSON string is escaped, so only a key matches."""


def error_code(error: RequestError) -> str:
    if error.code in ERROR_CODES:
        return error.code
    return "rate_limit_exceeded" if error.status == 429 else "server_error"


class ResponsesRenderer:
    """The Responses surface's answers for one request, made with the model name the client asked for."""

    __slots__ = ("model", "context", "id", "created_at", "passthrough", "_stream", "_upstream_id", "_last")
    stream_headers = SSE_HEADERS

    def __init__(self, model: str, context: ResponsesContext) -> None:
        self.model = model
        self.context = context
        self.id = new_id("resp_")
        self.created_at = int(time())
        self.passthrough = False
        self._stream = EventStream(self.response, context.tools)
        self._upstream_id: str | None = None
        self._last = b""

    def serving(self, target: Target, passthrough: bool = False) -> None:
        """A new upstream attempt: whatever the last one began is forgotten."""
        self.passthrough = passthrough
        self._stream = EventStream(self.response, self.context.tools)
        self._upstream_id = None
        self._last = b""

    def response(self, status: str, output: list[dict], tokens: dict | None = None, **fields: object) -> dict:
        """A Response object with the request's settings echoed, as the openai SDK's `Response` model needs."""
        return {
            "id": self._upstream_id or self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": self.model, "output": output, "usage": tokens, "error": None,
            "incomplete_details": None, **self.context.echo, **fields,
        }

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        if passthrough:
            return raw
        choice = completion["choices"][0]
        choice = choice if isinstance(choice, dict) else {}
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        finish_reason = choice.get("finish_reason")
        reason = INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
        output = output_items(message, self.context.tools, "incomplete" if reason else "completed")
        tokens = completion.get("usage")
        tokens = tokens if isinstance(tokens, dict) else {}
        totals = usage(count(tokens.get("prompt_tokens")), count(tokens.get("completion_tokens")),
                       usage_details(tokens))
        if reason:
            return orjson.dumps(self.response("incomplete", output, totals, incomplete_details={"reason": reason}))
        return orjson.dumps(self.response("completed", output, totals, completed_at=int(time())))

    def chunks(self, chunks: Chunks) -> bytes:
        if not self.passthrough:
            return self._stream.chunks(chunks)
        sse = chunks.sse
        if self._upstream_id is None:
            self._upstream_id = _response_id(chunks)
        if sse:
            self._last = sse  # its last sequence number is read only if an error must follow it
        return sse

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        if self.passthrough:
            return b""
        return self._stream.finish(decoder.prompt_tokens, decoder.completion_tokens)

    def stream_error(self, error: RequestError) -> bytes:
        failure = {"code": error_code(error), "message": error.message}
        at = self._last.rfind(b'"sequence_number"') if self.passthrough else -1
        found = _SEQUENCE.match(self._last, at) if at >= 0 else None
        if found:  # after the upstream's own events, numbered on from them
            event = {"type": "response.failed", "sequence_number": int(found[1]) + 1,
                     "response": self.response("failed", [], error=failure)}
            return b"event: response.failed\ndata: " + orjson.dumps(event) + b"\n\n"
        return self._stream.failed(failure)

    def error_body(self, error: RequestError) -> bytes:
        """Before the answer began: OpenAI's error shape, which the Responses API shares with Chat Completions."""
        return error.json()


def output_items(message: dict, tools: dict[str, ToolRef], status: str) -> list[dict]:
    """A Chat completion's message → Response output: reasoning, then the text, then one item per tool call."""
    items = []
    thinking = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(thinking, str) and thinking:
        items.append(reasoning_item(new_id("rs_"), thinking))
    content = message.get("content")
    if isinstance(content, str) and content:
        items.append(message_item(new_id("msg_"), content, status))
    calls = message.get("tool_calls")
    seen: set[str] = set()
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        name, arguments = function.get("name"), function.get("arguments")
        items.append(call_item(new_id("fc_"), unique_call_id(call.get("id"), seen),
                               name if isinstance(name, str) else "",
                               arguments if isinstance(arguments, str) and arguments else "{}", tools, status))
    return items


def _response_id(chunks: Chunks) -> str | None:
    """The upstream's response id, from the `response.created` event that opens its stream ("" if none)."""
    for chunk in chunks:
        response = chunk_data(chunk).get("response")
        found = response.get("id") if isinstance(response, dict) else None
        return found if isinstance(found, str) else ""
    return None
