"""Client request bodies: checking them, and chatd's native shape ⇄ OpenAI.

Every request becomes an OpenAI Chat Completions body before routing; the checks
here are the ones every transform relies on. Transforms check the fields only
they read; the openai passthrough leaves the rest to the upstream, whose 400 is
passed on.
"""

from __future__ import annotations

import orjson

from .errors import BadRequest

_NUMBER = (int, float)


def parse_json_object(raw: bytes) -> dict:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


_Field = tuple[str, type | tuple[type, ...], str]
"""A field chatd reads: its name, the types it may have, and how an error names them."""

_STREAM: _Field = ("stream", bool, "true or false")
_MAX_TOKENS: _Field = ("max_tokens", int, "an integer")
_TEMPERATURE: _Field = ("temperature", _NUMBER, "a number")
_COMPLETION_FIELDS: tuple[_Field, ...] = (
    _STREAM, ("stream_options", dict, "an object"), _MAX_TOKENS,
    ("max_completion_tokens", int, "an integer"), _TEMPERATURE, ("top_p", _NUMBER, "a number"),
)
_NATIVE_FIELDS: tuple[_Field, ...] = (_MAX_TOKENS, _TEMPERATURE, _STREAM)


def _check_fields(body: dict, fields: tuple[_Field, ...]) -> None:
    """Each field that is present and not null has one of its types (a bool is no number)."""
    for name, types, what in fields:
        value = body.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool) and types is not bool):
            raise BadRequest(f"'{name}' must be {what}")


def check_messages(messages: object) -> None:
    if messages is None:
        raise BadRequest("'messages' is required")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object")
        if not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}].role must be a string")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"messages[{i}].content must be a string or an array of parts")


def check_completion(body: dict) -> None:
    """An OpenAI Chat Completions body, as far as chatd itself reads it."""
    check_messages(body.get("messages"))
    _check_fields(body, _COMPLETION_FIELDS)


def native_to_openai(body: dict) -> dict:
    """POST /v1/chat's native body → an OpenAI Chat Completions body."""
    check_messages(body.get("messages"))
    _check_fields(body, _NATIVE_FIELDS)
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


def completion_text(completion: dict) -> tuple[str, str | None, int, int]:
    """Content, finish reason and token counts of an OpenAI `chat.completion`."""
    choice = completion["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    usage = completion.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return (
        content if isinstance(content, str) else "",
        choice.get("finish_reason") if isinstance(choice, dict) else None,
        count(usage.get("prompt_tokens")),
        count(usage.get("completion_tokens")),
    )


def count(value: object) -> int:
    """A token count from untrusted JSON: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def encode_request(body: dict) -> bytes:
    """An upstream request body as JSON; what orjson parsed but cannot write back is a 400."""
    try:
        return orjson.dumps(body)
    except TypeError as exc:  # nesting deeper than orjson writes, and the like
        raise BadRequest(f"request cannot be encoded as JSON: {exc}") from None
