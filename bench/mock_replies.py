"""What the mock upstream answers, as bytes: each API's whole body and its stream's events.

Rendered once when the mock starts (mock_upstream.MockUpstream), so a request
costs no JSON encoding. Every answer carries the same N tokens ("tok0 tok1 …"),
so a row that translates one API into another carries the same text as one that
does not:

- OpenAI Chat Completions: a `chat.completion`, or N content chunks, a finish
  chunk, a usage chunk when asked for, and `data: [DONE]` (PROTOCOLS §3);
- Ollama `/api/chat`: one JSON object, or N NDJSON lines and a `done` line with
  counts and timings (§1);
- Anthropic Messages: a `message`, or the events of §9.3 with their `event:`
  lines — message_start, content_block_start, ping, N text deltas,
  content_block_stop, message_delta with the cumulative usage, message_stop;
- OpenAI Responses: a `response`, or the events of §10's text answer numbered
  from 0 — created, in_progress, output_item.added, content_part.added, N text
  deltas, output_text.done, content_part.done, output_item.done, completed
  with usage.
"""

from __future__ import annotations

import orjson

MODEL = "bench-model"
CREATED = 1_753_357_673
PROMPT_TOKENS = 24


def tokens(n: int) -> list[str]:
    return [f"tok{i} " for i in range(n)]


def sse(kind: str, data: dict) -> bytes:
    """One SSE event with its `event:` line, as Anthropic and Responses send them."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# OpenAI Chat Completions

def openai_usage(n: int) -> dict:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n, "total_tokens": PROMPT_TOKENS + n}


def openai_json(n: int) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens(n))},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": openai_usage(n),
    })


def openai_events(n: int, include_usage: bool) -> list[bytes]:
    """SSE events as OpenAI sends them: `usage: null` on every chunk when usage was asked for."""
    def event(delta: dict, finish: str | None = None, choices: bool = True, usage: object = None) -> bytes:
        data: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
                      "model": MODEL,
                      "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                      if choices else []}
        if include_usage:
            data["usage"] = usage
        return b"data: " + orjson.dumps(data) + b"\n\n"

    words = tokens(n)
    events = [event({"role": "assistant", "content": words[0]})] if words else []
    events += [event({"content": word}) for word in words[1:]]
    events.append(event({}, "stop"))
    if include_usage:
        events.append(event({}, choices=False, usage=openai_usage(n)))
    events.append(b"data: [DONE]\n\n")
    return events


# Ollama /api/chat

def ollama_final(n: int, content: str) -> dict:
    return {"model": MODEL, "created_at": "2025-07-24T12:00:00.000000Z",
            "message": {"role": "assistant", "content": content}, "done_reason": "stop", "done": True,
            "total_duration": 1_500_000 + n * 10_000_000, "load_duration": 1_000_000,
            "prompt_eval_count": PROMPT_TOKENS, "prompt_eval_duration": PROMPT_TOKENS * 1_000_000,
            "eval_count": n, "eval_duration": n * 10_000_000}


def ollama_json(n: int) -> bytes:
    return orjson.dumps(ollama_final(n, "".join(tokens(n))))


def ollama_lines(n: int) -> list[bytes]:
    lines = [orjson.dumps({"model": MODEL, "created_at": "2025-07-24T12:00:00.000000Z",
                           "message": {"role": "assistant", "content": word}, "done": False}) + b"\n"
             for word in tokens(n)]
    return lines + [orjson.dumps(ollama_final(n, "")) + b"\n"]


# Anthropic Messages

def anthropic_message(content: list[dict], stop_reason: str | None, usage: dict) -> dict:
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL, "content": content,
            "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}


def anthropic_usage(output_tokens: int) -> dict:
    return {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output_tokens}


def anthropic_json(n: int) -> bytes:
    text = {"type": "text", "text": "".join(tokens(n))}
    return orjson.dumps(anthropic_message([text], "end_turn", anthropic_usage(n)))


def anthropic_events(n: int) -> list[bytes]:
    """§9.3's order; the API sends a ping after the first block start, and so does this."""
    events = [
        sse("message_start", {"type": "message_start", "message": anthropic_message([], None, anthropic_usage(1))}),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}}),
        sse("ping", {"type": "ping"}),
    ]
    events += [sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": word}}) for word in tokens(n)]
    return events + [
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                              "usage": {"output_tokens": n}}),
        sse("message_stop", {"type": "message_stop"}),
    ]


# OpenAI Responses

def response_object(status: str, output: list[dict], usage: dict | None) -> dict:
    """A Response, echoing the settings of the benchmark's request (max_output_tokens 256, temperature 0.7)."""
    return {"id": "resp_bench", "object": "response", "created_at": CREATED, "status": status,
            "background": False, "completed_at": CREATED + 1 if status == "completed" else None, "error": None,
            "incomplete_details": None, "instructions": None, "max_output_tokens": 256, "model": MODEL,
            "output": output, "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 0.7,
            "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": None, "metadata": {}}


def responses_usage(n: int) -> dict:
    return {"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": n,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": PROMPT_TOKENS + n}


def responses_message(text: str, status: str) -> dict:
    done = status == "completed"
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if done else []
    return {"id": "msg_bench", "type": "message", "status": status, "role": "assistant", "content": content}


def responses_json(n: int) -> bytes:
    message = responses_message("".join(tokens(n)), "completed")
    return orjson.dumps(response_object("completed", [message], responses_usage(n)))


def responses_events(n: int) -> list[bytes]:
    """§10's text answer; every event's data repeats its type and carries its sequence number."""
    text = "".join(tokens(n))
    done = responses_message(text, "completed")
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    begun = response_object("in_progress", [], None)
    events: list[tuple[str, dict]] = [
        ("response.created", {"response": begun}),
        ("response.in_progress", {"response": begun}),
        ("response.output_item.added", {"output_index": 0, "item": responses_message("", "in_progress")}),
        ("response.content_part.added", {**at, "part": part}),
    ]
    events += [("response.output_text.delta", {**at, "delta": word, "logprobs": []}) for word in tokens(n)]
    events += [
        ("response.output_text.done", {**at, "text": text, "logprobs": []}),
        ("response.content_part.done", {**at, "part": {**part, "text": text}}),
        ("response.output_item.done", {"output_index": 0, "item": done}),
        ("response.completed", {"response": response_object("completed", [done], responses_usage(n))}),
    ]
    return [sse(kind, {"type": kind, "sequence_number": number, **fields})
            for number, (kind, fields) in enumerate(events)]
