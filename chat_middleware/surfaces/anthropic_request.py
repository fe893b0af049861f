"""The Anthropic Messages surface, parse side: a Messages request → chatd's canonical body.

The mapping follows PROTOCOLS §9.8 (Ollama's anthropic.go and LiteLLM's adapter).
What an OpenAI-shaped upstream has no room for, and what chatd does with it:

- Several text blocks of one turn (or of `system`) become one text, joined by
  newlines; a turn with images keeps them as `image_url` parts, in order.
- Consecutive turns of the same role are one turn, as Anthropic reads them; a
  `system`-role message inside `messages` (Claude Code sends one) stays a system
  message where it stands.
- Each `tool_result` becomes a `tool` message placed before the rest of its user
  turn. Its text is the result's text; `is_error: true` prefixes it with
  "Error: " (OpenAI has no error flag); images in a result cannot ride in a tool
  message, so they join the user turn that follows the tool messages.
- `thinking` becomes the assistant turn's `reasoning_content`; signatures and
  `redacted_thinking` cannot travel to a non-Anthropic upstream and are dropped,
  as are the blocks of server tools (`server_tool_use`, `*_tool_result`).
- A `document` block is carried as its text when its source is text, else it is
  a 400: no OpenAI-compatible upstream chatd serves takes PDFs in chat.
- Server tools (a versioned `type` such as `web_search_20250305`) run inside
  Anthropic only and are dropped; `cache_control`, `defer_loading` and `strict`
  of custom tools are dropped.
- `thinking` → `reasoning_effort`: enabled by its budget (LiteLLM's cut-offs),
  disabled → "none", adaptive (or absent) → `output_config.effort` when given.
  An `output_config.format` JSON schema becomes `response_format`.
- `context_management`, `cache_control`, `service_tier`, `container` and unknown
  top-level fields are accepted and dropped.

Every field read is type-checked; a wrong one is a 400 naming its path
(`messages[3].content[1].type`). Agent conversations carry hundreds of
messages, so a plain-text turn takes the shortest path.
"""

from __future__ import annotations

import orjson

from ..errors import BadRequest
from ..shapes import integer_field, number_field, shown
from ..transforms.anthropic_messages import within
from .anthropic_content import canonical_messages, string

EFFORTS = frozenset(("none", "minimal", "low", "medium", "high", "xhigh", "max"))
"""Every `reasoning_effort` of the canonical body; an `output_config.effort` outside it is ignored."""
BUDGET_EFFORTS = ((10000, "high"), (5000, "medium"), (2000, "low"))
"""`thinking.budget_tokens` → `reasoning_effort`, as LiteLLM maps it; below the last, "minimal"."""
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def messages_request(body: dict) -> dict:
    """A Messages API request body (parsed JSON) → the canonical OpenAI Chat Completions body."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(f"model: a non-empty string is required, got {shown(model)}")
    max_tokens = integer_field(body, "max_tokens", 0)
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required")
    request: dict = {"model": model, "messages": canonical_messages(body.get("messages"), body.get("system")),
                     "max_tokens": max_tokens}
    _sampling(body, request)
    _tools(body, request)
    _reasoning(body, request)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false, got {shown(stream)}")
    request["stream"] = stream is True
    if stream:
        request["stream_options"] = {"include_usage": True}
    return request


def count_tokens_estimate(body: dict) -> int:
    """chatd's estimate for count_tokens when the upstream cannot count: characters / 4, rounded up.

    As Ollama's own endpoint estimates (anthropic.go `estimateTokens`): the text of
    `system`, each message's role and the text, thinking, tool input and tool result
    text of its content, and each tool's name, description and input schema as JSON.
    Images count nothing. Characters, where Ollama counts bytes. What cannot be read
    is not counted: the estimate never fails.
    """
    chars = _chars(body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict):
            role = message.get("role")
            chars += (len(role) if isinstance(role, str) else 0) + _chars(message.get("content"))
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            chars += sum(len(tool[key]) for key in ("name", "description") if isinstance(tool.get(key), str))
            chars += _json_chars(tool.get("input_schema"))
    return -(-chars // 4)


def _sampling(body: dict, request: dict) -> None:
    for name in ("temperature", "top_p"):
        if number_field(body, name) is not None:
            request[name] = body[name]
    if integer_field(body, "top_k") is not None:
        request["top_k"] = body["top_k"]
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest(f"stop_sequences must be an array of strings, got {shown(stop)}")
        if stop:
            request["stop"] = stop
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise BadRequest(f"metadata must be an object, got {shown(metadata)}")
        user = metadata.get("user_id")
        if user is not None:
            if not isinstance(user, str):
                raise BadRequest(f"metadata.user_id must be a string, got {shown(user)}")
            request["user"] = user


def _tools(body: dict, request: dict) -> None:
    tools = body.get("tools")
    functions = []
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest(f"tools must be an array of tools, got {shown(tools)}")
        for k, tool in enumerate(tools):
            at = f"tools[{k}]"
            if not isinstance(tool, dict):
                raise BadRequest(f"{at} must be an object, got {shown(tool)}")
            kind = tool.get("type")
            if kind is not None and kind != "custom":
                if not isinstance(kind, str):
                    raise BadRequest(f"{at}.type must be a string, got {shown(kind)}")
                continue  # a server tool: only Anthropic runs it
            name, description, schema = string(tool, "name", at), tool.get("description"), tool.get("input_schema")
            if not name:
                raise BadRequest(f"{at}.name must be a non-empty string")
            if not isinstance(schema, dict):
                raise BadRequest(f"{at}.input_schema must be a JSON Schema object, got {shown(schema)}")
            function: dict = {"name": name}
            if description is not None:
                if not isinstance(description, str):
                    raise BadRequest(f"{at}.description must be a string, got {shown(description)}")
                function["description"] = description
            function["parameters"] = schema
            functions.append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if choice is None:
        if functions:
            request["tools"] = functions
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        name = string(choice, "name", "tool_choice")
        mapped: str | dict = {"type": "function", "function": {"name": name}}
    elif isinstance(kind, str) and kind in TOOL_CHOICES:
        mapped = TOOL_CHOICES[kind]
    elif not isinstance(choice, dict):
        raise BadRequest(f"tool_choice must be an object, got {shown(choice)}")
    else:
        raise BadRequest(f"tool_choice.type must be auto, any, tool or none, got {shown(kind)}")
    single = choice.get("disable_parallel_tool_use")
    if single is not None and not isinstance(single, bool):
        raise BadRequest(f"tool_choice.disable_parallel_tool_use must be true or false, got {shown(single)}")
    if functions:  # a choice without tools means nothing, and OpenAI rejects it
        request["tools"] = functions
        request["tool_choice"] = mapped
        if single and kind != "none":
            request["parallel_tool_calls"] = False


def _reasoning(body: dict, request: dict) -> None:
    """`thinking` and `output_config` → `reasoning_effort` and `response_format`."""
    effort = None
    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, dict):
            raise BadRequest(f"output_config must be an object, got {shown(config)}")
        effort = config.get("effort")
        if effort is not None and not isinstance(effort, str):
            raise BadRequest(f"output_config.effort must be a string, got {shown(effort)}")
        fmt = config.get("format")
        if fmt is not None:
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            if kind != "json_schema" or not isinstance(fmt.get("schema"), dict):
                raise BadRequest("output_config.format must be {type: json_schema, schema: {…}}")
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "response", "schema": fmt["schema"]}}
    thinking = body.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "enabled":
            try:
                budget = integer_field(thinking, "budget_tokens", 0)
            except BadRequest as exc:
                raise within(exc, "thinking.") from None
            if budget is None:
                raise BadRequest("thinking.budget_tokens: Field required")
            effort = next((level for floor, level in BUDGET_EFFORTS if budget >= floor), "minimal")
        elif kind == "disabled":
            effort = "none"
        elif kind != "adaptive":
            if not isinstance(thinking, dict):
                raise BadRequest(f"thinking must be an object, got {shown(thinking)}")
            raise BadRequest(f"thinking.type must be enabled, disabled or adaptive, got {shown(kind)}")
    if effort in EFFORTS:
        request["reasoning_effort"] = effort


def _chars(content: object) -> int:
    """The characters count_tokens_estimate counts in a `system` or message `content`."""
    if isinstance(content, str):
        return len(content)
    chars = 0
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        for key in ("text", "thinking", "name"):
            if isinstance(block.get(key), str):
                chars += len(block[key])
        if block.get("type") == "tool_use":
            chars += _json_chars(block.get("input"))
        elif block.get("type") == "tool_result":
            chars += _chars(block.get("content"))
    return chars


def _json_chars(value: object) -> int:
    try:
        return len(orjson.dumps(value)) if value is not None else 0
    except TypeError:
        return 0
