"""Request and answer bodies as every surface and transform reads them: parsing, checks, counts.

Every request becomes an OpenAI Chat Completions body before routing; the checks
here are the ones every transform relies on. Transforms check the fields only
they read; the openai passthrough leaves the rest to the upstream, whose 400 is
passed on.
"""

from __future__ import annotations

import orjson

from .errors import BadRequest, UpstreamError


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


def answer_object(raw: bytes, failure: type[UpstreamError] = UpstreamError,
                  what: str = "answered with a body") -> dict:
    """An upstream's answer (or one stream event or line, `what` says) as a JSON object, else `failure`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise failure(f"upstream {what} that is not JSON") from None
    if not isinstance(body, dict):
        raise failure(f"upstream {what} that is not a JSON object")
    return body


Field = tuple[str, type | tuple[type, ...], str]
"""A field chatd reads: its name, the types it may have, and how an error names them."""

NUMBER = (int, float)
STREAM: Field = ("stream", bool, "true or false")
MAX_TOKENS: Field = ("max_tokens", int, "an integer")
TEMPERATURE: Field = ("temperature", NUMBER, "a number")


def check_fields(body: dict, fields: tuple[Field, ...]) -> None:
    """Each field that is present and not null has one of its types (a bool is no number)."""
    for name, types, what in fields:
        value = body.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool) and types is not bool):
            raise BadRequest(f"'{name}' must be {what}")


def shown(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    return "null" if value is None else type(value).__name__


def number_field(body: dict, key: str) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number, got {shown(value)}")
    return value


def integer_field(body: dict, key: str, minimum: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        wanted = "an integer" if minimum is None else f"an integer of at least {minimum}"
        raise BadRequest(f"{key} must be {wanted}, got {value if type(value) is int else shown(value)}")
    return value


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


def request_arguments(arguments: object, at: str) -> dict:
    """A client's tool-call arguments (OpenAI sends a JSON string) as the object Ollama and Anthropic take."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise BadRequest(f"{at}.function.arguments must be a JSON string, got {shown(arguments)}")
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{at}.function.arguments is not valid JSON: {shown(arguments)}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"{at}.function.arguments must encode a JSON object, got {shown(parsed)}")
    return parsed


def answer_arguments(arguments: object) -> dict:
    """An upstream's tool-call arguments (a JSON string, or already an object) as the object."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(f"upstream sent tool call arguments that are not a JSON object: {arguments!r:.80}")
    return parsed


def reasoning_text(message: dict) -> str:
    """Thinking text, wherever the provider put it (`reasoning` or Kimi's `reasoning_content`)."""
    text = message.get("reasoning") or message.get("reasoning_content")
    return text if isinstance(text, str) else ""


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
