"""`anthropic`: OpenAI Chat Completions ⇄ Anthropic Messages (`POST {base_url}/v1/messages`).

The request mapping follows PROTOCOLS §9.8; where Anthropic has no room for a
field, this is what is sent:

- System and developer messages, wherever they stand, are folded into `system`
  (joined by blank lines): the classic Messages API has no system role in
  `messages`.
- Turns alternate: consecutive messages of one role become one turn. Tool
  messages become `tool_result` blocks of the user turn right after the
  assistant's `tool_use` turn, and a user message after them joins that turn
  (tool results first, as Anthropic requires). Tool-call ids are kept, with any
  character Anthropic's id pattern refuses (Kimi's `functions.f:0`) made `_`.
- An assistant's `reasoning_content` / `reasoning` is dropped: Anthropic rejects
  a thinking block without the signature only it can make.
- `max_tokens` is always sent: the body's, else the provider's
  `default_max_tokens` (4096). `reasoning_effort` becomes `thinking` with a
  budget by level (`THINKING_BUDGETS`), at most half of `max_tokens` so the
  answer keeps the rest; below 1024 (Anthropic's floor), or with a forced tool
  choice (which Anthropic refuses with thinking), no thinking is asked for.
  With thinking on, temperature, top_p and top_k are not sent (Anthropic
  rejects them with thinking).
- `response_format` json_schema → `output_config.format`; json_object and
  text have no counterpart and are dropped, as are n, logprobs, penalties,
  seed and logit_bias.

The way back (a Message → `chat.completion`, the SSE stream → chunks) is in
`anthropic_response`; an Anthropic surface client is passed through instead
(`passages`), by `anthropic_passthrough`, whose names are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ..errors import BadRequest
from ..shapes import encode_request, integer_field, number_field, shown
from .anthropic_messages import to_messages
from .anthropic_passthrough import (  # noqa: F401  (AnthropicPassthroughDecoder, passthrough_usage: re-exported)
    API, PASSAGE, AnthropicPassage, AnthropicPassthroughDecoder, passthrough_usage,
)
from .anthropic_response import AnthropicStreamDecoder, to_completion

if TYPE_CHECKING:
    from ..settings import ProviderConfig
    from .base import Passage

VERSION = "2023-06-01"
"""The `anthropic-version` chatd speaks when it translates."""
DEFAULT_MAX_TOKENS = 4096
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576, "max": 32768}
"""`reasoning_effort` → `thinking.budget_tokens`; the Anthropic surface maps each back to its level."""
MIN_BUDGET = 1024
TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


class AnthropicMessages:
    name = "anthropic"
    path = "/v1/messages"

    def build(self, body: dict, model: str, provider: ProviderConfig, stream: bool) -> bytes:
        system, messages = to_messages(body.get("messages"))
        max_tokens = integer_field(body, "max_completion_tokens", 1)
        if max_tokens is None:
            max_tokens = integer_field(body, "max_tokens", 1)
        if max_tokens is None:
            max_tokens = getattr(provider, "default_max_tokens", DEFAULT_MAX_TOKENS)
        upstream: dict = {"model": model, "max_tokens": max_tokens}
        if system:
            upstream["system"] = system
        upstream["messages"] = messages
        tools, choice = to_tools(body)
        if tools:
            upstream["tools"] = tools
            if choice:
                upstream["tool_choice"] = choice
        budget = _budget(body, max_tokens, choice)
        if budget:
            upstream["thinking"] = {"type": "enabled", "budget_tokens": budget}
        else:
            for name in ("temperature", "top_p"):
                if number_field(body, name) is not None:
                    upstream[name] = body[name]
            if integer_field(body, "top_k") is not None:
                upstream["top_k"] = body["top_k"]
        stop = _stop(body.get("stop"))
        if stop:
            upstream["stop_sequences"] = stop
        user = body.get("user")
        if isinstance(user, str) and user:
            upstream["metadata"] = {"user_id": user}
        schema = _schema(body.get("response_format"))
        if schema is not None:
            upstream["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        upstream["stream"] = bool(stream)
        return encode_request(upstream)

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Anthropic's key header (not Authorization) and the API version chatd translates to; a
        passed-through client's own anthropic-version (PASSAGE.forward) replaces it."""
        return {"x-api-key": api_key, "anthropic-version": VERSION} if api_key else {"anthropic-version": VERSION}

    def passages(self, provider: ProviderConfig) -> Mapping[str, Passage]:
        return _ANTHROPIC_ONLY

    def completion(self, raw: bytes) -> dict:
        return to_completion(raw)

    def decoder(self, include_usage: bool) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(include_usage)


_ANTHROPIC_ONLY = {API: PASSAGE}


def to_tools(body: dict) -> tuple[list[dict], dict | None]:
    """Canonical function tools and tool_choice → Anthropic's (parallel_tool_calls false included)."""
    tools = body.get("tools")
    if tools is None:
        return [], None
    if not isinstance(tools, list):
        raise BadRequest(f"tools must be a list of tool objects, got {shown(tools)}")
    out = []
    for k, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise BadRequest(f"tools[{k}] must be {{type: 'function', function: {{name, parameters}}}}")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{k}].function.name must be a non-empty string")
        schema = function.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise BadRequest(f"tools[{k}].function.parameters must be a JSON Schema object, got {shown(schema)}")
        elif "type" not in schema:
            schema = {"type": "object", **schema}
        item: dict = {"name": name}
        description = function.get("description")
        if isinstance(description, str) and description:
            item["description"] = description
        item["input_schema"] = schema
        out.append(item)
    return out, _tool_choice(body)


def _tool_choice(body: dict) -> dict | None:
    choice = body.get("tool_choice")
    single = body.get("parallel_tool_calls") is False
    if choice is None:
        return {"type": "auto", "disable_parallel_tool_use": True} if single else None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        mapped = dict(TOOL_CHOICES[choice])
    else:
        function = choice.get("function") if isinstance(choice, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest("tool_choice must be auto, none, required or {type: 'function', function: {name}}")
        mapped = {"type": "tool", "name": name}
    if single and mapped["type"] != "none":
        mapped["disable_parallel_tool_use"] = True
    return mapped


def _budget(body: dict, max_tokens: int, choice: dict | None) -> int:
    """The thinking budget `reasoning_effort` asks for, 0 for none (see the module docstring)."""
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return 0
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise BadRequest(f"reasoning_effort must be one of none, {', '.join(THINKING_BUDGETS)}, got {shown(effort)}")
    if choice is not None and choice["type"] in ("any", "tool"):
        return 0
    budget = min(THINKING_BUDGETS[effort], max_tokens // 2)
    return budget if budget >= MIN_BUDGET else 0


def _stop(stop: object) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest(f"stop must be a string or a list of strings, got {shown(stop)}")
    return [s for s in stop if s.strip()]  # Anthropic refuses an all-whitespace stop sequence


def _schema(spec: object) -> dict | None:
    """The JSON Schema of a json_schema `response_format`; None for the others."""
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind in ("text", "json_object"):
        return None
    inner = spec.get("json_schema") if kind == "json_schema" else None
    schema = inner.get("schema") if isinstance(inner, dict) else None
    if not isinstance(schema, dict):
        raise BadRequest("response_format must be {type: text|json_object} or "
                         "{type: json_schema, json_schema: {name, schema}}")
    return schema
