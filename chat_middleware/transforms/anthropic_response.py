"""Anthropic replies → canonical: a Message → `chat.completion`, its SSE events → chunks.

PROTOCOLS §9.2–§9.4. Text blocks are joined as they stand (a cited answer is
split into several), thinking becomes `reasoning_content` (its signature has
nowhere to go), `tool_use` becomes `tool_calls` with the input as JSON text.
Prompt tokens count the cached ones too: Anthropic's `input_tokens` leaves out
cache reads and writes, OpenAI's `prompt_tokens` does not.
"""

from __future__ import annotations

import os
import time

import orjson

from ..errors import UpstreamError, UpstreamStreamError, from_upstream_status, upstream_error_message
from ..shapes import answer_object, count
from ..streams import Chunk, Chunks, SSESplitter

ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
"""Anthropic `error.type` → the HTTP status Anthropic answers it with (§9.4)."""
TEXTS = {"text_delta": ("content", "text"), "thinking_delta": ("reasoning_content", "thinking"),
         "text": ("content", "text"), "thinking": ("reasoning_content", "thinking")}
"""Deltas and block starts that carry text: the canonical delta key, and the field the text is in."""
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def anthropic_error(body: dict, failure: type[UpstreamError] = UpstreamError) -> UpstreamError:
    """The chatd error of an Anthropic error object, as if it had come with its HTTP status;
    `failure` when its type is unknown. An overloaded one is asked again, and answered 529."""
    error = body.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = ERROR_STATUS.get(kind) if isinstance(kind, str) else None
    raw = orjson.dumps(body)
    if status is None:
        return failure(f"upstream error: {upstream_error_message(raw)}")
    return from_upstream_status("upstream", status, raw)


class Usage:
    """Token counts from `message_start` and the cumulative `message_delta` usage objects."""

    __slots__ = ("input", "cache_read", "cache_creation", "output")

    def __init__(self) -> None:
        self.input = self.cache_read = self.cache_creation = self.output = 0

    def read(self, usage: object) -> None:
        """Take the counts `usage` has; a count it leaves out keeps its earlier value."""
        if not isinstance(usage, dict):
            return
        for key, field in (("input_tokens", "input"), ("cache_read_input_tokens", "cache_read"),
                           ("cache_creation_input_tokens", "cache_creation"), ("output_tokens", "output")):
            if key in usage:
                setattr(self, field, count(usage[key]))

    @property
    def prompt(self) -> int:
        return self.input + self.cache_read + self.cache_creation

    def openai(self) -> dict:
        prompt = self.prompt
        return {"prompt_tokens": prompt, "completion_tokens": self.output, "total_tokens": prompt + self.output,
                "prompt_tokens_details": {"cached_tokens": self.cache_read}}


def to_completion(raw: bytes) -> dict:
    """A non-streamed Anthropic answer → a canonical `chat.completion`."""
    message = _object(raw, UpstreamError, "answered with a body")
    content = message.get("content")
    if message.get("type") != "message" or not isinstance(content, list):
        raise UpstreamError("upstream answered with a body that is not an Anthropic Message")
    texts, thinking, calls = [], [], []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif kind == "tool_use":
            calls.append({"id": _string(block.get("id")) or _call_id(), "type": "function",
                          "function": {"name": _string(block.get("name")), "arguments": _json(block.get("input"))}})
    text = "".join(texts)
    answer: dict = {"role": "assistant", "content": text or (None if calls else "")}
    if thinking:
        answer["reasoning_content"] = "".join(thinking)
    if calls:
        answer["tool_calls"] = calls
    usage = Usage()
    usage.read(message.get("usage"))
    stop = message.get("stop_reason")
    return {
        "id": _string(message.get("id")) or "chatcmpl-" + os.urandom(12).hex(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _string(message.get("model")),
        "choices": [{"index": 0, "message": answer, "logprobs": None,
                     "finish_reason": FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"}],
        "usage": usage.openai(),
    }


class EventStream:
    """What reading an Anthropic event stream keeps, translated or passed through (StreamDecoder's state)."""

    __slots__ = ("_usage", "done", "failure", "started")

    def __init__(self) -> None:
        self._usage = Usage()
        self.done = False  # message_stop came
        self.failure: UpstreamError | None = None
        self.started = False  # True once the answer has begun: from then on no retry, no fallback

    @property
    def prompt_tokens(self) -> int:
        return self._usage.prompt

    @property
    def completion_tokens(self) -> int:
        return self._usage.output


class AnthropicStreamDecoder(EventStream):
    """Anthropic SSE → canonical chunks: the role first, one chunk per delta, the finish, usage if asked.

    Tool calls are numbered in the order their blocks start; a tool block whose
    input came whole in its start (some compatible servers) gets it as one
    arguments fragment at the block's stop, unless input deltas came.
    """

    __slots__ = ("_sse", "_include_usage", "_id", "_created", "_model", "_role", "_tools", "_held", "_finished")

    def __init__(self, include_usage: bool) -> None:
        super().__init__()
        self._sse = SSESplitter()
        self._include_usage = include_usage
        self._id = "chatcmpl-" + os.urandom(12).hex()
        self._created = int(time.time())
        self._model = ""
        self._role = False  # the assistant role has been sent
        self._tools: dict[int, int] = {}  # block index → tool call index
        self._held: dict[int, dict] = {}  # block index → input that came in the block's start
        self._finished = False

    def feed(self, data: bytes) -> Chunks:
        return self._chunks(self._sse.feed(data))

    def close(self) -> Chunks:
        chunks = self._chunks(self._sse.close())
        if self.failure:
            raise self.failure
        if not self.done:
            raise UpstreamStreamError("upstream stream ended before message_stop")
        return chunks

    def _chunks(self, payloads: list[bytes]) -> Chunks:
        out: list[Chunk] = []
        for payload in payloads:
            if self.done or self.failure:
                break  # nothing after the end, or an error, counts
            try:
                self._event(_object(payload, UpstreamStreamError, "sent a stream event"), out)
            except UpstreamError as exc:
                self.failure = exc  # the chunks before it are still delivered
        return Chunks(out)

    def _event(self, data: dict, out: list[Chunk]) -> None:
        kind = data.get("type")
        index = data.get("index")
        if kind == "content_block_delta":
            delta = data.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            what = delta.get("type")
            if isinstance(what, str) and what in TEXTS:
                self._content(what, delta, out)
            elif what == "input_json_delta" and isinstance(index, int) and index in self._tools:
                self._held.pop(index, None)
                partial = delta.get("partial_json")
                if isinstance(partial, str) and partial:
                    out.append(self._arguments(index, partial))
        elif kind == "content_block_start":
            block = data.get("content_block")
            block = block if isinstance(block, dict) else {}
            what = block.get("type")
            if isinstance(what, str) and what in TEXTS:
                self._content(what, block, out)
            elif what == "tool_use" and isinstance(index, int):
                self._tools[index] = len(self._tools)
                if isinstance(block.get("input"), dict) and block["input"]:
                    self._held[index] = block["input"]
                out.append(self._chunk({"tool_calls": [{
                    "index": self._tools[index], "id": _string(block.get("id")) or _call_id(), "type": "function",
                    "function": {"name": _string(block.get("name")), "arguments": ""}}]}))
        elif kind == "content_block_stop":
            held = self._held.pop(index, None) if isinstance(index, int) else None
            if held:
                out.append(self._arguments(index, _json(held)))
        elif kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict) and not self._role:
                self._model = _string(message.get("model"))
                self._usage.read(message.get("usage"))
                out.append(self._chunk({"content": ""}))
        elif kind == "message_delta":
            self._usage.read(data.get("usage"))
            delta = data.get("delta")
            stop = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(stop, str) and not self._finished:
                out.append(self._finish(FINISH_REASONS.get(stop, "stop")))
        elif kind == "message_stop":
            self.done = True
            if not self._finished:
                out.append(self._finish("stop"))
            if self._include_usage:
                out.append(Chunk(data={"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                       "model": self._model, "choices": [], "usage": self._usage.openai()}))
        # ping and event types chatd does not know are ignored, as Anthropic asks; `_object` raised on errors

    def _content(self, kind: str, source: dict, out: list[Chunk]) -> None:
        key, field = TEXTS[kind]
        text = source.get(field)
        if isinstance(text, str) and text:
            out.append(self._chunk({key: text}))

    def _arguments(self, index: int, arguments: str) -> Chunk:
        return self._chunk({"tool_calls": [{"index": self._tools[index], "function": {"arguments": arguments}}]})

    def _finish(self, reason: str) -> Chunk:
        self._finished = True
        return self._chunk({}, reason)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> Chunk:
        if not self._role:
            self._role = True
            delta = {"role": "assistant", **delta}
        if delta.keys() - {"role", "content"} or delta.get("content") or finish_reason:
            self.started = True
        data = {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        if self._include_usage:
            data["usage"] = None
        return Chunk(data=data)


def _object(raw: bytes, failure: type[UpstreamError], what: str) -> dict:
    """An answer or stream event as an object; the matching error if it is Anthropic's error report."""
    body = answer_object(raw, failure, what)
    if body.get("type") == "error":
        raise anthropic_error(body, failure)
    return body


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _call_id() -> str:
    return "toolu_" + os.urandom(12).hex()


def _json(value: object) -> str:
    """A tool's input as OpenAI's arguments text."""
    try:
        return orjson.dumps(value if isinstance(value, dict) else {}).decode()
    except TypeError:  # nested deeper than orjson writes
        raise UpstreamError("upstream sent a tool input that cannot be encoded as JSON") from None
