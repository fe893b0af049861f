"""Canonical chunks → the Responses stream's events, and the output items both answers share.

`EventStream` keeps one item open at a time, as OpenAI streams them (reasoning,
a message, each tool call, in whatever order the upstream switches between
them), and closes it when the next begins or the answer ends, so every item a
client sees added it also sees done, whole.
"""

from __future__ import annotations

from secrets import token_hex
from time import time
from typing import Callable

import orjson

from ..errors import UpstreamStreamError
from ..shapes import count
from ..streams import Chunk, Chunks
from .responses_tools import ToolRef, custom_input

_DELTAS = {"reasoning": "response.reasoning_summary_text.delta", "message": "response.output_text.delta"}
_DELTA_EVENT = {kind: b'event: %s\ndata: {"type":"%s","sequence_number":' % (name.encode(), name.encode())
                for kind, name in _DELTAS.items()}
_DELTA_TAIL = {"reasoning": b"}\n\n", "message": b',"logprobs":[]}\n\n'}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat `finish_reason`s that make a Response incomplete, with its `incomplete_details.reason`."""


def new_id(prefix: str) -> str:
    return prefix + token_hex(16)


def chunk_data(chunk: Chunk) -> dict:
    """A chunk's object ({} for JSON that is none); JSON that is not JSON at all is the upstream's failure."""
    try:
        data = chunk.data
    except orjson.JSONDecodeError:
        raise UpstreamStreamError("upstream sent a stream event that is not JSON") from None
    return data if isinstance(data, dict) else {}


def usage(prompt: int, completion: int, details: dict | None = None) -> dict:
    """A Responses `usage` object; the detail counts are 0 when the upstream gave none."""
    details = details or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": details.get("cached_tokens", 0),
                                 "cache_write_tokens": details.get("cache_write_tokens", 0)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": details.get("reasoning_tokens", 0)},
        "total_tokens": prompt + completion,
    }


def usage_details(tokens: dict) -> dict:
    """The detail counts of a Chat `usage` object, by their Responses names."""
    prompt = tokens.get("prompt_tokens_details")
    completion = tokens.get("completion_tokens_details")
    prompt = prompt if isinstance(prompt, dict) else {}
    completion = completion if isinstance(completion, dict) else {}
    return {"cached_tokens": count(prompt.get("cached_tokens")),
            "cache_write_tokens": count(prompt.get("cache_write_tokens")),
            "reasoning_tokens": count(completion.get("reasoning_tokens"))}


def reasoning_item(item_id: str, text: str) -> dict:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def message_item(item_id: str, text: str, status: str) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, tools: dict[str, ToolRef], status: str) -> dict:
    """A tool call under the client's own name: a namespace member's carries its `namespace`,
    a custom tool's call is a `custom_tool_call` with the `input` string."""
    ref = tools.get(name)
    if ref is not None and ref.custom:
        item = {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id,
                "name": ref.name, "input": custom_input(arguments) if arguments else ""}
    else:
        item = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
                "name": ref.name if ref else name, "arguments": arguments}
    if ref is not None and ref.namespace:
        item["namespace"] = ref.namespace
    return item


def unique_call_id(call_id: object, seen: set[str]) -> str:
    """The upstream's tool-call id, or a new one where it gave none or gave one twice: a client pairs
    each output with its call by this id (and the openai SDK refuses two calls that share one)."""
    if not isinstance(call_id, str) or not call_id or call_id in seen:
        call_id = new_id("call_")
    seen.add(call_id)
    return call_id


class _Call:
    """A tool call being streamed: its item, and its arguments so far."""

    __slots__ = ("key", "source", "index", "item_id", "call_id", "name", "custom", "arguments")

    def __init__(self, key: int, source: object, name: str, index: int, item: dict) -> None:
        self.key, self.source, self.name = key, source, name  # the fragments' `index`, `id` and name
        self.index, self.item_id, self.call_id = index, item["id"], item["call_id"]
        self.custom = item["type"] == "custom_tool_call"
        self.arguments: list[str] = []


class EventStream:
    """The events of one streamed answer; `response(status, output, usage, **fields)` makes its Response objects."""

    __slots__ = ("_response", "_tools", "_sequence", "_output", "_open", "_item", "_index", "_texts", "_call",
                 "_call_ids", "_finish_reason", "_details", "_delta")

    def __init__(self, response: Callable[..., dict], tools: dict[str, ToolRef]) -> None:
        self._response = response
        self._tools = tools
        self._sequence = 0
        self._output: list[dict | None] = []
        self._open: str | None = None  # "reasoning", "message" or "call"
        self._item = ""
        self._index = 0
        self._texts: list[str] = []
        self._call: _Call | None = None
        self._call_ids: set[str] = set()
        self._finish_reason: str | None = None
        self._details: dict | None = None
        self._delta = b""
        """The open text item's fields of a delta event, as JSON: `"item_id":…,"…_index":0`."""

    def chunks(self, chunks: Chunks) -> bytes:
        out: list[bytes] = []
        if not self._sequence:
            self._begin(out)
        for chunk in chunks:
            data = chunk_data(chunk)
            tokens = data.get("usage")
            if isinstance(tokens, dict):
                self._details = usage_details(tokens)
            choices = data.get("choices")
            if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
                continue
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                thinking = delta.get("reasoning_content") or delta.get("reasoning")
                if thinking and isinstance(thinking, str):
                    self._text(out, "reasoning", thinking)
                content = delta.get("content")
                if content and isinstance(content, str):
                    self._text(out, "message", content)
                calls = delta.get("tool_calls")
                if calls and isinstance(calls, list):
                    self._fragments(out, calls)
            if isinstance(choice.get("finish_reason"), str):
                self._finish_reason = choice["finish_reason"]
        return b"".join(out)

    def finish(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """Close what is open, then `response.completed`, or `response.incomplete` for a cut-off answer."""
        out: list[bytes] = []
        if not self._sequence:
            self._begin(out)
        reason = INCOMPLETE.get(self._finish_reason or "")
        self._close(out, "incomplete" if reason else "completed")
        output = [item for item in self._output if item is not None]
        totals = usage(prompt_tokens, completion_tokens, self._details)
        if reason:
            response = self._response("incomplete", output, totals, incomplete_details={"reason": reason})
            self._event(out, "response.incomplete", {"response": response})
        else:
            response = self._response("completed", output, totals, completed_at=int(time()))
            self._event(out, "response.completed", {"response": response})
        return b"".join(out)

    def failed(self, error: dict) -> bytes:
        """`response.failed` with the items finished so far; the stream then ends."""
        out: list[bytes] = []
        if not self._sequence:
            self._begin(out)
        output = [item for item in self._output if item is not None]
        self._event(out, "response.failed", {"response": self._response("failed", output, error=error)})
        return b"".join(out)

    def _event(self, out: list[bytes], kind: str, fields: dict) -> None:
        data = orjson.dumps({"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _begin(self, out: list[bytes]) -> None:
        self._event(out, "response.created", {"response": self._response("in_progress", [])})
        self._event(out, "response.in_progress", {"response": self._response("in_progress", [])})

    def _added(self, out: list[bytes], item: dict) -> int:
        index = len(self._output)
        self._output.append(None)
        self._event(out, "response.output_item.added", {"output_index": index, "item": item})
        return index

    def _text(self, out: list[bytes], kind: str, text: str) -> None:
        """A piece of reasoning or answer text, opening its item (and its one part) on the first piece."""
        where: dict
        if self._open != kind:
            self._close(out, "completed")
            self._open, self._item, self._texts = kind, new_id("rs_" if kind == "reasoning" else "msg_"), []
            if kind == "reasoning":
                self._index = self._added(out, {"id": self._item, "type": "reasoning", "summary": []})
                where = {"item_id": self._item, "output_index": self._index, "summary_index": 0}
                self._event(out, "response.reasoning_summary_part.added",
                            {**where, "part": {"type": "summary_text", "text": ""}})
            else:
                self._index = self._added(out, {"id": self._item, "type": "message", "status": "in_progress",
                                                "role": "assistant", "content": []})
                where = {"item_id": self._item, "output_index": self._index, "content_index": 0}
                self._event(out, "response.content_part.added",
                            {**where, "part": {"type": "output_text", "text": "", "annotations": []}})
            self._delta = orjson.dumps(where)[1:-1]
        self._texts.append(text)
        # the common event, a piece of text: the bytes _event would make of it, built around the text
        out.append(b'%s%d,%s,"delta":%s%s' % (_DELTA_EVENT[kind], self._sequence, self._delta,
                                               orjson.dumps(text), _DELTA_TAIL[kind]))
        self._sequence += 1

    def _fragments(self, out: list[bytes], fragments: list) -> None:
        """Tool-call fragments by `index`: the first of a call (with its id and name) opens its item,
        the rest add arguments. A piece for a call already closed cannot be sent any more: dropped."""
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                continue
            key = fragment.get("index")
            key = key if isinstance(key, int) else position
            function = fragment.get("function")
            function = function if isinstance(function, dict) else {}
            call_id, name = fragment.get("id"), function.get("name")
            call = self._call if self._open == "call" else None
            if call is None or call.key != key or call_id and call_id != call.source:
                if not call_id and not name:
                    continue
                self._close(out, "completed")
                name = name if isinstance(name, str) else ""
                item = call_item(new_id("fc_"), unique_call_id(call_id, self._call_ids), name, "", self._tools,
                                 "in_progress")
                call = _Call(key, call_id, name, self._added(out, item), item)
                self._open, self._call = "call", call
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                call.arguments.append(arguments)
                if not call.custom:  # a custom tool's input is inside the JSON: sent whole at the end
                    self._event(out, "response.function_call_arguments.delta",
                                {"item_id": call.item_id, "output_index": call.index, "delta": arguments})

    def _close(self, out: list[bytes], status: str) -> None:
        """End the open item: its `.done` events, each with the whole of what the deltas carried."""
        kind, self._open = self._open, None
        if kind == "call" and self._call is not None:
            self._close_call(out, self._call, status)
            self._call = None
            return
        if kind is None:
            return
        text = "".join(self._texts)
        if kind == "reasoning":
            where = {"item_id": self._item, "output_index": self._index, "summary_index": 0}
            self._event(out, "response.reasoning_summary_text.done", {**where, "text": text})
            self._event(out, "response.reasoning_summary_part.done",
                        {**where, "part": {"type": "summary_text", "text": text}})
            item = reasoning_item(self._item, text)
        else:
            where = {"item_id": self._item, "output_index": self._index, "content_index": 0}
            self._event(out, "response.output_text.done", {**where, "text": text, "logprobs": []})
            self._event(out, "response.content_part.done",
                        {**where, "part": {"type": "output_text", "text": text, "annotations": []}})
            item = message_item(self._item, text, status)
        self._output[self._index] = item
        self._event(out, "response.output_item.done", {"output_index": self._index, "item": item})

    def _close_call(self, out: list[bytes], call: _Call, status: str) -> None:
        arguments = "".join(call.arguments)
        where = {"item_id": call.item_id, "output_index": call.index}
        if not arguments and not call.custom:
            arguments = "{}"  # a call without arguments still parses as JSON
            self._event(out, "response.function_call_arguments.delta", {**where, "delta": arguments})
        item = call_item(call.item_id, call.call_id, call.name, arguments, self._tools, status)
        if call.custom:
            if item["input"]:
                self._event(out, "response.custom_tool_call_input.delta", {**where, "delta": item["input"]})
            self._event(out, "response.custom_tool_call_input.done", {**where, "input": item["input"]})
        else:
            self._event(out, "response.function_call_arguments.done",
                        {**where, "name": item["name"], "arguments": arguments})
        self._output[call.index] = item
        self._event(out, "response.output_item.done", {"output_index": call.index, "item": item})
