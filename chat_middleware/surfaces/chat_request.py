"""OpenAI Chat Completions requests: the canonical body itself, checked as far as chatd reads it.

The rest is the upstream's to judge: an OpenAI-compatible provider gets the
client's bytes (only `model` rewritten) and its 400 is passed on; the other
transforms check the fields they read.
"""

from __future__ import annotations

from ..canonical import CHAT, ChatRequest
from ..shapes import MAX_TOKENS, NUMBER, STREAM, TEMPERATURE, Field, check_fields, check_messages

_FIELDS: tuple[Field, ...] = (
    STREAM, ("stream_options", dict, "an object"), MAX_TOKENS,
    ("max_completion_tokens", int, "an integer"), TEMPERATURE, ("top_p", NUMBER, "a number"),
)


def check_completion(body: dict) -> None:
    """An OpenAI Chat Completions body, as far as chatd itself reads it."""
    check_messages(body.get("messages"))
    check_fields(body, _FIELDS)


def chat_request(raw: bytes, body: dict) -> ChatRequest:
    """A checked Chat Completions body (`raw`, parsed) as the relay's request."""
    check_completion(body)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ChatRequest(CHAT, raw, body, stream=body.get("stream") is True, include_usage=include_usage)
