"""chatd's native `POST /v1/chat` body → the canonical OpenAI Chat Completions body."""

from __future__ import annotations

from ..canonical import ChatRequest
from ..errors import BadRequest
from ..shapes import MAX_TOKENS, STREAM, TEMPERATURE, Field, check_fields, check_messages

NATIVE = "native"
_FIELDS: tuple[Field, ...] = (MAX_TOKENS, TEMPERATURE, STREAM)


def native_to_openai(body: dict) -> dict:
    """POST /v1/chat's native body → an OpenAI Chat Completions body."""
    check_messages(body.get("messages"))
    check_fields(body, _FIELDS)
    out = {"model": body.get("model"), "messages": body["messages"]}
    for name in ("max_tokens", "temperature", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif fmt is not None:
        raise BadRequest("'format' must be \"json\" when given")
    return out


def native_request(raw: bytes, body: dict) -> ChatRequest:
    canonical = native_to_openai(body)
    return ChatRequest(NATIVE, raw, body, stream=canonical.get("stream") is True, canonical=canonical)
