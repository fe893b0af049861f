"""Ollama replies → OpenAI: a non-streamed body → `chat.completion`, NDJSON → chunks.

Chat and generate differ only in where a line keeps its text, so both are served by
the same code given a `Reader` (`read_chat` or `read_generate`). The decoder is the
hot path: it builds each chunk dict directly and dumps it once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import orjson

from ..errors import UpstreamError, UpstreamStreamError, upstream_error_message
from ..shapes import answer_object
from ..streams import Chunk, Chunks, LineSplitter

Reader = Callable[[dict], "tuple[str, str, list | None]"]
"""Reads (content, thinking, tool_calls) out of one Ollama reply object or stream line."""


def read_chat(line: dict) -> tuple[str, str, list | None]:
    """/api/chat puts the text under `message`."""
    message = line.get("message")
    if not isinstance(message, dict):
        return "", "", None
    content, thinking = message.get("content"), message.get("thinking")
    return (
        content if isinstance(content, str) else "",
        thinking if isinstance(thinking, str) else "",
        message.get("tool_calls"),
    )


def read_generate(line: dict) -> tuple[str, str, list | None]:
    """/api/generate puts the text at the top level and has no tool calls."""
    content, thinking = line.get("response"), line.get("thinking")
    return content if isinstance(content, str) else "", thinking if isinstance(thinking, str) else "", None


def openai_tool_calls(calls: object, start: int = 0) -> list[dict]:
    """Ollama tool calls (arguments as objects) → OpenAI's (JSON strings, an id, an index)."""
    out: list[dict] = []
    if not isinstance(calls, list):
        return out
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps({} if arguments is None else arguments).decode()
        out.append({
            "index": start + len(out),
            "id": call.get("id") or "call_" + os.urandom(12).hex(),
            "type": "function",
            "function": {"name": function.get("name") or "", "arguments": arguments},
        })
    return out


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def ollama_object(raw: bytes, failure: type[UpstreamError], what: str) -> dict:
    """One reply or stream line as an object; `failure` if it is not one, or is Ollama's error report."""
    reply = answer_object(raw, failure, what)
    if reply.get("error"):  # `"error": null` is no error
        raise failure(f"upstream error: {upstream_error_message(raw)}")
    return reply


def to_completion(raw: bytes, read: Reader) -> dict:
    """A non-streamed Ollama reply → an OpenAI `chat.completion`."""
    reply = ollama_object(raw, UpstreamError, "answered with a body")
    content, thinking, calls = read(reply)
    message: dict = {"role": "assistant", "content": content}
    if thinking:
        message["reasoning"] = thinking
    tool_calls = openai_tool_calls(calls)
    reason = reply.get("done_reason")
    if tool_calls:
        message["tool_calls"] = tool_calls
        message["content"] = content or None  # OpenAI's shape for a pure tool call
        finish: str | None = "tool_calls"
    else:
        finish = reason if reason in ("stop", "length") else ("stop" if reason else None)
    prompt, completion = _count(reply.get("prompt_eval_count")), _count(reply.get("eval_count"))
    model = reply.get("model")
    return {
        "id": "chatcmpl-" + os.urandom(12).hex(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model if isinstance(model, str) else "",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


class OllamaStreamDecoder:
    """Ollama NDJSON → OpenAI chunks: role first, one chunk per delta, finish, then usage if asked."""

    __slots__ = (
        "_lines", "_read", "_include_usage", "_id", "_created", "_model", "_started", "_tools",
        "_text_model", "_text_head", "_text_tail",
        "done", "failure", "prompt_tokens", "completion_tokens", "finish_reason", "started",
    )

    def __init__(self, include_usage: bool, read: Reader) -> None:
        self._lines = LineSplitter()
        self._read = read
        self._include_usage = include_usage
        self._id = "chatcmpl-" + os.urandom(12).hex()
        self._created = int(time.time())
        self._model = ""
        self._started = False
        self._tools = 0
        self._text_model: str | None = None
        self._text_head = self._text_tail = b""
        self.done = False
        self.failure: UpstreamStreamError | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.started = False
        """Every chunk this decoder makes carries text, reasoning, a tool call or the finish."""

    def feed(self, data: bytes) -> Chunks:
        chunks: list[Chunk] = []
        for line in self._lines.feed(data):
            if self.done or self.failure:
                break  # nothing after the done line counts
            try:
                self._line(line, chunks)
            except UpstreamStreamError as exc:
                self.failure = exc  # the chunks before it are still delivered
        if chunks:
            self.started = True
        return Chunks(chunks)

    def close(self) -> Chunks:
        chunks: list[Chunk] = []
        if self.failure:
            raise self.failure
        for line in self._lines.close():
            if not self.done:
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise UpstreamStreamError("upstream stream ended in the middle of a line") from None
                self._line(line, chunks)
        if not self.done:
            raise UpstreamStreamError("upstream stream ended before its final (done) line")
        self.started = self.started or bool(chunks)
        return Chunks(chunks)

    def _line(self, line: bytes, chunks: list[Chunk]) -> None:
        obj = ollama_object(line, UpstreamStreamError, "sent a stream line")
        model = obj.get("model")
        if model and isinstance(model, str):
            self._model = model
        content, thinking, calls = self._read(obj)
        if self._started and not thinking and not calls and obj.get("done") is not True:
            if content:
                chunks.append(self._text(content))
            return
        if thinking:
            chunks.append(self._chunk(self._delta("reasoning", thinking)))
        if content:
            chunks.append(self._chunk(self._delta("content", content)))
        if calls:
            tool_calls = openai_tool_calls(calls, self._tools)
            if tool_calls:
                self._tools += len(tool_calls)
                chunks.append(self._chunk(self._delta("tool_calls", tool_calls)))
        if obj.get("done") is True:
            self._finish(obj, chunks)

    def _delta(self, key: str, value: object) -> dict:
        if self._started:
            return {key: value}
        self._started = True
        return {"role": "assistant", key: value}

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> Chunk:
        data = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            data["usage"] = None
        return Chunk(data=data)

    def _text(self, content: str) -> Chunk:
        """The common chunk, a piece of text, as bytes around the text: what `_chunk` would dump."""
        if self._text_model != self._model:
            self._text_model = self._model
            head = self._chunk({"content": ""}).sse
            cut = head.index(b'"content":""') + len(b'"content":')
            self._text_head, self._text_tail = head[:cut], head[cut + 2:]
        return Chunk(sse=self._text_head + orjson.dumps(content) + self._text_tail)

    def _finish(self, obj: dict, chunks: list[Chunk]) -> None:
        self.done = True
        if not self._started:  # an empty answer still opens with the assistant role
            chunks.append(self._chunk(self._delta("content", "")))
        reason = obj.get("done_reason")
        self.finish_reason = "tool_calls" if self._tools else ("length" if reason == "length" else "stop")
        chunks.append(self._chunk({}, self.finish_reason))
        self.prompt_tokens = _count(obj.get("prompt_eval_count"))
        self.completion_tokens = _count(obj.get("eval_count"))
        if self._include_usage:
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            }
            chunks.append(Chunk(data={
                "id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._model, "choices": [], "usage": usage,
            }))
