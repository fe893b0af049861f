"""The Responses API's wire shapes for FakeResponses: a Response object and its event stream.

Shapes follow the openai SDK's `types/responses/` (3.57) and PROTOCOLS.md §10;
each names its source beside it. One response's events are built once, as a
list of (type, payload, Frame kind), so the streamed and the whole renderings
cannot drift apart: the non-streamed body is the last event's `response`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .script import FINAL, META, OUTPUT, split_words

# Settings a Response echoes, with the defaults OpenAI fills in (the sub2api#6714 capture; ollama's
# openai/responses.go mirrors them). The penalties are sent though SDK 3.57's Response type lacks them.
ECHOED: dict[str, Any] = {
    "frequency_penalty": 0.0, "instructions": None, "max_output_tokens": None, "max_tool_calls": None,
    "parallel_tool_calls": True, "presence_penalty": 0.0, "previous_response_id": None, "prompt_cache_key": None,
    "safety_identifier": None, "store": True, "temperature": 1.0, "tool_choice": "auto", "top_logprobs": 0,
    "top_p": 1.0, "truncation": "disabled", "user": None,
}

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}

Event = tuple[str, dict[str, Any], str]  # (type, payload without type and sequence_number, Frame kind)


@dataclass(frozen=True)
class Turn:
    """One response's facts; `body()` renders it at any status."""

    id: str
    created: int
    model: str
    settings: dict[str, Any]
    items: tuple[dict[str, Any], ...]
    incomplete: str | None  # incomplete_details.reason, None when the answer is complete
    usage: dict[str, Any]

    @property
    def status(self) -> str:
        return "completed" if self.incomplete is None else "incomplete"

    def body(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None,
             error: dict[str, Any] | None = None) -> dict[str, Any]:
        # Field set of types/responses/response.py; completed_at only once completed.
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status,
                "background": False, "completed_at": self.created + 1 if status == "completed" else None,
                "error": error,
                "incomplete_details": {"reason": self.incomplete} if status == "incomplete" else None,
                "model": self.model, "output": output, "usage": usage, **self.settings}


def settings_of(req: dict[str, Any]) -> dict[str, Any]:
    """The request's settings as a Response echoes them, OpenAI's defaults filled in."""
    reasoning = req.get("reasoning") if isinstance(req.get("reasoning"), dict) else {}
    text = req.get("text") if isinstance(req.get("text"), dict) else {}
    return {key: req.get(key, default) for key, default in ECHOED.items()} | {
        "reasoning": {"effort": reasoning.get("effort"),
                      "summary": reasoning.get("summary") or reasoning.get("generate_summary")},
        "service_tier": req.get("service_tier") or "default",
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        "tools": req.get("tools") or [], "metadata": req.get("metadata") or {},
    }


def events_of(turn: Turn) -> list[Event]:
    """Every event of the stream in order, per PROTOCOLS §10's tables; the last one is terminal."""
    start = turn.body("in_progress", [], None)
    events: list[Event] = [("response.created", {"response": start}, META),
                           ("response.in_progress", {"response": start}, META)]
    for index, item in enumerate(turn.items):
        events += _item_events(index, item)
    terminal = "response.completed" if turn.status == "completed" else "response.incomplete"
    events.append((terminal, {"response": turn.body(turn.status, list(turn.items), turn.usage)}, FINAL))
    return events


def _item_events(index: int, item: dict[str, Any]) -> list[Event]:
    """output_item.added, the item's own parts and deltas, output_item.done."""
    at = {"item_id": item["id"], "output_index": index}
    if item["type"] == "message":
        events = [_added(index, item | {"status": "in_progress", "content": []})]
        for c, part in enumerate(item["content"]):
            where = at | {"content_index": c}
            events.append(("response.content_part.added", where | {"part": part | {"text": ""}}, META))
            events += [("response.output_text.delta", where | {"delta": piece, "logprobs": []}, OUTPUT)
                       for piece in split_words(part["text"])]
            events.append(("response.output_text.done", where | {"text": part["text"], "logprobs": []}, META))
            events.append(("response.content_part.done", where | {"part": part}, META))
    elif item["type"] == "reasoning":
        # encrypted_content only in output_item.done: the copy to send back (§10 Reasoning item).
        events = [_added(index, {"id": item["id"], "type": "reasoning", "summary": []})]
        for s, part in enumerate(item["summary"]):
            where = at | {"summary_index": s}
            events.append(("response.reasoning_summary_part.added", where | {"part": part | {"text": ""}}, META))
            events += [("response.reasoning_summary_text.delta", where | {"delta": piece}, OUTPUT)
                       for piece in split_words(part["text"])]
            events.append(("response.reasoning_summary_text.done", where | {"text": part["text"]}, META))
            events.append(("response.reasoning_summary_part.done", where | {"part": part}, META))
    else:  # function_call; arguments in 8-character slices, as the sibling chat fake's tool deltas
        events = [_added(index, item | {"status": "in_progress", "arguments": ""})]
        args = item["arguments"]
        events += [("response.function_call_arguments.delta", at | {"delta": args[i:i + 8]}, OUTPUT)
                   for i in range(0, len(args), 8)]
        # `name` is in OpenAI's OpenAPI spec and §10, though SDK 3.57's event type leaves it out.
        events.append(("response.function_call_arguments.done", at | {"name": item["name"], "arguments": args}, META))
    events.append(("response.output_item.done", {"output_index": index, "item": item}, META))
    return events


def _added(index: int, item: dict[str, Any]) -> Event:
    return "response.output_item.added", {"output_index": index, "item": item}, META


def failure_event(turn: Turn, events: list[Event], written: int, fail_event: str, message: str) -> bytes:
    """The in-band failure numbered after the `written` events before it (§10 Terminal events)."""
    if fail_event == "error":
        # What OpenAI sends at run time, nested under `error` (openai/openai-dotnet#881 captures one; openai-node
        # #2021 calls it the first-party contract), not the flat {code, message, param} its reference documents.
        error = {"type": "server_error", "code": "server_error", "message": message, "param": None}
        return sse("error", written, {"error": error})
    done = [payload["item"] for kind, payload, _ in events[:written] if kind == "response.output_item.done"]
    failed = turn.body("failed", done, None, error={"code": "server_error", "message": message})
    return sse("response.failed", written, {"response": failed})


def sse(kind: str, number: int, payload: dict[str, Any]) -> bytes:
    """`event:` and `data:` lines; the data repeats `type` and carries `sequence_number` (§10 Streaming)."""
    data = orjson.dumps({"type": kind, "sequence_number": number, **payload})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
