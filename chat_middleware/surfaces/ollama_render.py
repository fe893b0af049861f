"""OpenAI completions and chunks → Ollama's /api/chat and /api/generate replies.

A streamed reply is NDJSON: one `{"model", "created_at", "message", "done": false}`
line per piece of text or thinking, each tool call whole in one line (OpenAI
streams them in fragments, Ollama clients expect them complete), then a final
line with `done: true`, `done_reason`, the token counts and `total_duration`.
Errors are `{"error": "…"}`, as a body before the reply starts or as a line after.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import orjson

from ..errors import RequestError
from ..render import first_choices
from ..shapes import answer_arguments, completion_text, reasoning_text
from ..streams import Chunks, StreamDecoder
from ..types import Headers

if TYPE_CHECKING:
    from ..routing import Target

NDJSON_HEADERS: Headers = [
    (b"content-type", b"application/x-ndjson"),
    (b"x-accel-buffering", b"no"),
]


def error_body(error: RequestError) -> bytes:
    """Ollama's error shape, which Ollama clients parse (the Go client fails on OpenAI's)."""
    return orjson.dumps({"error": error.message})


def created_at() -> str:
    """Now, as Ollama's RFC 3339 `created_at`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def done_reason(finish_reason: str | None) -> str:
    """OpenAI `finish_reason` → Ollama `done_reason`; Ollama says "stop" after a tool call too."""
    return "stop" if finish_reason in (None, "stop", "tool_calls") else finish_reason


def ollama_tool_calls(calls: object) -> list[dict]:
    """OpenAI tool calls (arguments a JSON string) → Ollama's (arguments an object)."""
    out: list[dict] = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        item: dict = {"id": call["id"]} if isinstance(call.get("id"), str) and call["id"] else {}
        item["function"] = {"index": len(out), "name": function.get("name") or "",
                            "arguments": answer_arguments(function.get("arguments"))}
        out.append(item)
    return out


class OllamaChatRenderer:
    """/api/chat replies; the reply names the model as the client asked for it, as Ollama does.

    `thinking=False` (the client sent `think: false`) keeps reasoning text out of the reply.
    """

    __slots__ = ("model", "thinking", "finish_reason", "_calls")
    stream_headers = NDJSON_HEADERS
    tools = True

    def __init__(self, model: str, thinking: bool = True) -> None:
        self.model = model
        self.thinking = thinking
        self.finish_reason: str | None = None
        self._calls: dict[int, dict] = {}

    def piece(self, content: str, thinking: str = "", calls: list[dict] | None = None) -> dict:
        """One reply object without its `done` fields."""
        message: dict = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        return {"model": self.model, "created_at": created_at(), "message": message}

    def loaded(self, unloaded: bool = False) -> bytes:
        """Ollama's answer to a request with nothing to answer: the model is (un)loaded."""
        return orjson.dumps(self.piece("") | {"done": True, "done_reason": "unload" if unloaded else "load"})

    def serving(self, target: Target, passthrough: bool = False) -> None:
        self.finish_reason = None  # a retry or fallback starts afresh
        self._calls = {}

    def completion(self, completion: dict, raw: bytes, passthrough: bool, latency_ms: float) -> bytes:
        content, finish_reason, tokens_in, tokens_out = completion_text(completion)
        message = completion["choices"][0].get("message")
        message = message if isinstance(message, dict) else {}
        thinking = reasoning_text(message) if self.thinking else ""
        calls = ollama_tool_calls(message.get("tool_calls")) if self.tools else None
        final = _final(finish_reason, latency_ms, tokens_in, tokens_out)
        return orjson.dumps(self.piece(content, thinking, calls) | final)

    def chunks(self, chunks: Chunks) -> bytes:
        lines = []
        for choice in first_choices(chunks):
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            content = delta.get("content")
            content = content if isinstance(content, str) else ""
            thinking = reasoning_text(delta) if self.thinking else ""
            if content or thinking:
                lines.append(orjson.dumps(self.piece(content, thinking) | {"done": False}) + b"\n")
            if delta.get("tool_calls") and self.tools:
                self._collect(delta["tool_calls"])
            finish_reason = choice.get("finish_reason")
            if isinstance(finish_reason, str):
                self.finish_reason = finish_reason
                lines.append(self._flush())
        return b"".join(lines)

    def finish(self, decoder: StreamDecoder, latency_ms: float) -> bytes:
        final = _final(self.finish_reason, latency_ms, decoder.prompt_tokens, decoder.completion_tokens)
        return self._flush() + orjson.dumps(self.piece("") | final) + b"\n"

    def stream_error(self, error: RequestError) -> bytes:
        return error_body(error) + b"\n"

    def error_body(self, error: RequestError) -> bytes:
        return error_body(error)

    def _collect(self, fragments: object) -> None:
        """Join streamed tool-call fragments by index: the first has id and name, the rest add arguments."""
        for fragment in fragments if isinstance(fragments, list) else ():
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index")
            call = self._calls.setdefault(index if isinstance(index, int) else len(self._calls),
                                          {"id": None, "function": {"name": "", "arguments": ""}})
            function = fragment.get("function")
            function = function if isinstance(function, dict) else {}
            if fragment.get("id") and not call["id"]:
                call["id"] = fragment["id"]
            if function.get("name") and not call["function"]["name"]:
                call["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                call["function"]["arguments"] += function["arguments"]

    def _flush(self) -> bytes:
        """The collected tool calls as one line, whole (nothing when there are none)."""
        if not self._calls:
            return b""
        calls = ollama_tool_calls([self._calls[index] for index in sorted(self._calls)])
        self._calls = {}
        return orjson.dumps(self.piece("", calls=calls) | {"done": False}) + b"\n"


class OllamaGenerateRenderer(OllamaChatRenderer):
    """/api/generate replies: the text in `response`, no message and no tool calls."""

    __slots__ = ()
    tools = False

    def piece(self, content: str, thinking: str = "", calls: list[dict] | None = None) -> dict:
        piece = {"model": self.model, "created_at": created_at(), "response": content}
        if thinking:
            piece["thinking"] = thinking
        return piece


def _final(finish_reason: str | None, latency_ms: float, prompt_tokens: int, completion_tokens: int) -> dict:
    """The fields of the last reply object; durations are nanoseconds, as in Ollama."""
    return {"done": True, "done_reason": done_reason(finish_reason), "total_duration": int(latency_ms * 1e6),
            "prompt_eval_count": prompt_tokens, "eval_count": completion_tokens}
