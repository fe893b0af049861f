"""OpenAI Responses requests (`POST /v1/chat/responses`) → chatd's canonical Chat Completions body.

chatd is stateless: translated, whatever needs server-side history
(`previous_response_id`, `conversation`, `item_reference`, a stored `prompt`)
is a 400 that says to send the whole conversation, and `store` is accepted
with nothing stored. A provider that speaks Responses itself gets the request
as sent (`relay_request`), state and all.

Input items become messages in `responses_input`, tools functions in
`responses_tools`. Unknown top-level fields are ignored, as Codex sends some
(`client_metadata`); so are `store`, `include`, `truncation`, `service_tier`
and `text.verbosity`, which have no Chat counterpart. A known field of the
wrong type is a 400 that names it (`input[3].content[0].type`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..canonical import ChatRequest
from ..errors import BadRequest
from ..transforms.responses import RESPONSES
from .responses_input import STATELESS, chat_messages
from .responses_tools import ToolRef, chat_tool_choice, chat_tools, shown

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True, slots=True)
class ResponsesContext:
    """What answering needs beyond the canonical answer."""

    echo: dict
    """The request's settings, which every Response object repeats."""
    tools: dict[str, ToolRef]
    """Upstream function name → the client's tool, for namespace members and custom tools."""
    stream: bool
    summary: str | None
    """`reasoning.summary` as asked; reasoning text is always given as summary, since the next turn needs it."""


def relay_request(raw: bytes, body: dict) -> tuple[ChatRequest, ResponsesContext]:
    """The relay's request, and its renderer's context, for a Responses body (`raw`, parsed).

    The canonical body is made only if a provider of the chain needs it: one that
    speaks Responses itself gets `raw` with only `model` rewritten, so what chatd
    cannot translate (`previous_response_id`, `encrypted_content`) still works there.
    """
    context = responses_context(body)
    request = ChatRequest(RESPONSES, raw, body, stream=context.stream, include_usage=True, translate=_canonical)
    return request, context


def _canonical(body: dict) -> dict:
    return responses_request(body)[0]


def responses_request(body: dict) -> tuple[dict, ResponsesContext]:
    """A Responses request → the canonical body, and the context its renderer answers with."""
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise BadRequest(f"{key} is not supported: chatd stores no responses; send the whole "
                             "conversation in input instead", code=STATELESS)
    if body.get("prompt") is not None:
        raise BadRequest("prompt (a stored prompt template) is not supported: chatd stores no prompts; "
                         "send instructions and input instead")
    if _field(body, "background", bool, "true or false"):
        raise BadRequest("background responses are not supported: chatd stores no responses")
    stream = _field(body, "stream", bool, "true or false") is True
    tools, refs = chat_tools(body.get("tools"))
    choice, tools = chat_tool_choice(body.get("tool_choice"), tools, refs)
    instructions = _field(body, "instructions", str, "a string")
    messages: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    chat_messages(body.get("input"), messages)
    request: dict = {"model": body.get("model"), "messages": messages}
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}  # response.completed reports usage
    parallel = _field(body, "parallel_tool_calls", bool, "true or false")
    if tools:
        request["tools"] = tools
        if choice is not None:
            request["tool_choice"] = choice
        if parallel is not None:
            request["parallel_tool_calls"] = parallel
    limit = _field(body, "max_output_tokens", int, "an integer")
    if limit is not None:
        if limit < 1:
            raise BadRequest(f"max_output_tokens must be at least 1, got {limit}")
        request["max_tokens"] = limit
    for key in ("temperature", "top_p"):
        if (value := _field(body, key, (int, float), "a number")) is not None:
            request[key] = value
    effort = _effort(body.get("reasoning"))
    if effort is not None:
        request["reasoning_effort"] = effort
    text = _field(body, "text", dict, "an object")
    if text and (fmt := _response_format(text.get("format"))) is not None:
        request["response_format"] = fmt
    metadata = _field(body, "metadata", dict, "an object")
    if metadata:
        request["metadata"] = metadata
    if cache_key := _field(body, "prompt_cache_key", str, "a string"):
        request["prompt_cache_key"] = cache_key
    user = _field(body, "user", str, "a string")
    if identifier := _field(body, "safety_identifier", str, "a string") or user:
        request["user"] = identifier
    if body.get("truncation") not in (None, "auto", "disabled"):
        raise BadRequest(f"truncation must be auto or disabled, got {shown(body['truncation'])}")
    return request, responses_context(body, refs)


def responses_context(body: dict, tools: dict[str, ToolRef] | None = None) -> ResponsesContext:
    """The context a renderer answers with, from the request as sent.

    Nothing is checked (an upstream that speaks Responses judges the request
    itself, and a translation checks it), so tools that do not translate map no
    names; the echo is also what chatd's own `response.failed` repeats, which
    stores nothing.
    """
    if tools is None:
        try:
            tools = chat_tools(body.get("tools"))[1]
        except BadRequest:
            tools = {}
    reasoning = body.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, dict) else {}
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    echo = {
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": summary}, "store": False,
        "temperature": body.get("temperature"), "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto", "tools": body.get("tools") or [],
        "top_p": body.get("top_p"), "truncation": body.get("truncation") or "disabled",
        "metadata": body.get("metadata") or {}, "user": body.get("user"), "background": False,
    }
    summary = summary if isinstance(summary, str) else None
    return ResponsesContext(echo, tools, body.get("stream") is True, summary)


def _field(body: dict, key: str, types: type | tuple[type, ...], what: str):
    """A top-level field's value, None when absent or null; a bool is never a number."""
    value = body.get(key)
    if value is None or isinstance(value, types) and (types is bool or not isinstance(value, bool)):
        return value
    raise BadRequest(f"{key} must be {what}, got {shown(value)}")


def _effort(reasoning: object) -> str | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise BadRequest(f"reasoning must be an object, got {shown(reasoning)}")
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise BadRequest(f"reasoning.effort must be one of {', '.join(EFFORTS)}, got {shown(effort)}")
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    if summary is not None and not isinstance(summary, str):
        raise BadRequest(f"reasoning.summary must be a string, got {shown(summary)}")
    return effort


def _response_format(fmt: object) -> dict | None:
    """`text.format` (flat) → `response_format` (the schema nested under `json_schema`)."""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise BadRequest(f"text.format.type must be text, json_object or json_schema, got {shown(kind)}")
    name, schema = fmt.get("name"), fmt.get("schema")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"text.format.name must be a non-empty string, got {shown(name)}")
    if not isinstance(schema, dict):
        raise BadRequest(f"text.format.schema must be a JSON Schema object, got {shown(schema)}")
    inner: dict = {"name": name, "schema": schema}
    for key, types in (("strict", bool), ("description", str)):
        value = fmt.get(key)
        if value is not None and not isinstance(value, types):
            raise BadRequest(f"text.format.{key} must be a {types.__name__}, got {shown(value)}")
        if value is not None:
            inner[key] = value
    return {"type": "json_schema", "json_schema": inner}
