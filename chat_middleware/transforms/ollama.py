"""What `ollama_chat` and `ollama_generate` share: OpenAI request fields → Ollama fields.

The way back (replies and NDJSON streams → OpenAI) is in `ollama_response` and is
re-exported here, so both transforms import one module.

Ollama's own `openai/openai.go` is the reference (PROTOCOLS.md §7). Every field a
client controls is type-checked here, so a wrong type becomes a 400 that names the
field instead of a TypeError deep inside the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..errors import BadRequest
from ..settings import THINK_LEVELS
from ..shapes import integer_field, number_field, request_arguments, shown
from .ollama_response import (  # noqa: F401  (re-exported: the shared Ollama API lives here)
    OllamaStreamDecoder,
    openai_tool_calls,
    read_chat,
    read_generate,
    to_completion,
)

if TYPE_CHECKING:
    from ..settings import ProviderConfig

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
EFFORT_TO_THINK: dict[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "max", "max": "max",
}
"""Every `reasoning_effort` of the openai SDK, as Ollama's own `thinkFromReasoningEffort` maps it."""


# ----- request side


def to_ollama_options(body: dict, provider: ProviderConfig) -> dict:
    """OpenAI sampling fields → Ollama `options`, with the provider's floor and default temperature.

    A non-standard `options` object in the body is the base (so Ollama clients keep
    num_ctx and friends); the OpenAI fields override it.
    """
    extra = body.get("options")
    if extra is not None and not isinstance(extra, dict):
        raise BadRequest(f"options must be an object, got {shown(extra)}")
    options = dict(extra) if extra else {}
    if (integer_field(body, "n", 1) or 1) > 1:
        raise BadRequest("n: Ollama returns a single choice, so n must be 1")
    limit = integer_field(body, "max_completion_tokens", 1)
    if limit is None:
        limit = integer_field(body, "max_tokens", 1)
    floor = provider.min_output_tokens
    if limit is not None:
        options["num_predict"] = max(limit, floor)
    elif floor and "num_predict" not in options:
        options["num_predict"] = floor
    temperature = number_field(body, "temperature")
    if temperature is None and "temperature" not in options:
        temperature = provider.default_temperature
    if temperature is not None:
        options["temperature"] = temperature
    for key in ("top_p", "frequency_penalty", "presence_penalty"):
        value = number_field(body, key)
        if value is not None:
            options[key] = value
    for key in ("seed", "top_k"):
        value = integer_field(body, key)
        if value is not None:
            options[key] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest(f"stop must be a string or a list of strings, got {shown(stop)}")
        stop = [s for s in stop if s]  # Ollama stops at once on an empty stop string
        if stop:
            options["stop"] = stop
    return options


def to_ollama_format(body: dict) -> str | dict | None:
    """`response_format` → Ollama `format` ("json" or a JSON Schema); a native `format` is kept."""
    spec = body.get("response_format")
    if spec is None:
        native = body.get("format")
        if native is None or native == "json" or isinstance(native, dict):
            return native
        if native == "":
            return None
        raise BadRequest(f'format must be "json" or a JSON Schema object, got {shown(native)}')
    if not isinstance(spec, dict):
        raise BadRequest(f"response_format must be an object, got {shown(spec)}")
    kind = spec.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        inner = spec.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be a JSON Schema object")
        return schema
    raise BadRequest(f"response_format.type must be text, json_object or json_schema, got {shown(kind)}")


def to_ollama_think(body: dict, provider: ProviderConfig) -> bool | str | None:
    """`reasoning_effort` (or a native `think`) → Ollama `think`; else the provider's default."""
    effort = body.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str) or effort not in EFFORT_TO_THINK:
            raise BadRequest(
                f"reasoning_effort must be one of {', '.join(EFFORT_TO_THINK)}, got {shown(effort)}"
            )
        return EFFORT_TO_THINK[effort]
    think = body.get("think")
    if think is None:
        return provider.think
    if isinstance(think, bool) or (isinstance(think, str) and think in THINK_LEVELS):
        return think
    raise BadRequest(f"think must be true, false or one of {', '.join(THINK_LEVELS)}, got {shown(think)}")


def add_generation_fields(upstream: dict, body: dict, provider: ProviderConfig) -> dict:
    """`options`, `format` and `think`, each only when there is one to send: what chat and generate share."""
    options = to_ollama_options(body, provider)
    if options:
        upstream["options"] = options
    fmt = to_ollama_format(body)
    if fmt is not None:
        upstream["format"] = fmt
    think = to_ollama_think(body, provider)
    if think is not None:
        upstream["think"] = think
    keep_alive = to_ollama_keep_alive(body)
    if keep_alive is not None:
        upstream["keep_alive"] = keep_alive
    return upstream


def to_ollama_keep_alive(body: dict) -> int | float | str | None:
    """How long Ollama keeps the model loaded: seconds, or a Go duration string such as "5m"."""
    keep_alive = body.get("keep_alive")
    if keep_alive is not None and (isinstance(keep_alive, bool) or not isinstance(keep_alive, (int, float, str))):
        raise BadRequest(f"keep_alive must be a number of seconds or a duration string, got {shown(keep_alive)}")
    return keep_alive


def to_ollama_tools(body: dict) -> list | None:
    """OpenAI function tools are already Ollama's shape; check them, drop them for tool_choice none."""
    tools = body.get("tools")
    if tools is None or body.get("tool_choice") == "none":
        return None
    if not isinstance(tools, list):
        raise BadRequest(f"tools must be a list of tool objects, got {shown(tools)}")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"tools[{i}] must be {{type: 'function', function: {{name, parameters}}}}")
        if tool.get("type", "function") != "function":
            raise BadRequest(f"tools[{i}].type: Ollama supports only function tools, got {shown(tool['type'])}")
    return tools or None


def to_ollama_messages(messages: object) -> list[dict]:
    """OpenAI messages → Ollama messages: text joined, data-URL images inlined, arguments parsed.

    Runs once per message of every request (agent conversations carry hundreds),
    so a plain text message takes the shortest path and error text is built only
    when there is an error.
    """
    if not isinstance(messages, list):
        raise BadRequest(f"messages must be a list of message objects, got {shown(messages)}")
    if not messages:
        raise BadRequest("messages must contain at least one message")
    out = []
    call_names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequest(f"messages[{i}] must be an object, got {shown(msg)}")
        role = msg.get("role")
        ollama_role = ROLES.get(role) if isinstance(role, str) else None
        if ollama_role is None:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {shown(role)}")
        content = msg.get("content")
        if isinstance(content, str):
            message: dict = {"role": ollama_role, "content": content}
        else:
            text, images = _content(content, i)
            message = {"role": ollama_role, "content": text}
            if images:
                message["images"] = images
        if role == "assistant":
            thinking = msg.get("reasoning_content") or msg.get("reasoning")
            if isinstance(thinking, str) and thinking:  # Ollama reads an earlier turn's thinking from here
                message["thinking"] = thinking
            if msg.get("tool_calls") is not None:
                calls = _tool_calls(msg["tool_calls"], f"messages[{i}]", call_names)
                if calls:
                    message["tool_calls"] = calls
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if call_id is not None and not isinstance(call_id, str):
                raise BadRequest(f"messages[{i}].tool_call_id must be a string, got {shown(call_id)}")
            name = call_names.get(call_id) if call_id else None
            name = name or (msg["name"] if isinstance(msg.get("name"), str) else None)
            if name:
                message["tool_name"] = name
            if call_id:
                message["tool_call_id"] = call_id
        out.append(message)
    return out


def _content(content: object, i: int) -> tuple[str, list[str]]:
    """A message's content that is not a plain string: absent, or a list of text and image parts."""
    if content is None:
        return "", []
    if not isinstance(content, list):
        raise BadRequest(f"messages[{i}].content must be a string or a list of content parts, "
                         f"got {shown(content)}")
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        at = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise BadRequest(f"{at}.text must be a string, got {shown(part.get('text'))}")
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_image(part.get("image_url"), at))
        elif not isinstance(part, dict):
            raise BadRequest(f"{at} must be a content part object, got {shown(part)}")
        else:
            raise BadRequest(f"{at}.type must be text or image_url for Ollama, got {shown(kind)}")
    return "\n".join(texts), images


def _image(image: object, at: str) -> str:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise BadRequest(f"{at}.image_url.url must be a string, got {shown(url)}")
    if not url.startswith("data:"):
        raise BadRequest(f"{at}: Ollama accepts images only as base64 data URLs (data:image/png;base64,…)")
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64") or not data:
        raise BadRequest(f"{at}: image data URL must be base64-encoded (data:<type>;base64,<data>)")
    return data


def _tool_calls(calls: object, where: str, call_names: dict[str, str]) -> list[dict]:
    if not isinstance(calls, list):
        raise BadRequest(f"{where}.tool_calls must be a list, got {shown(calls)}")
    out = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"{at} must be {{id, type: 'function', function: {{name, arguments}}}}")
        item: dict = {}
        call_id = call.get("id")
        if call_id is not None:
            if not isinstance(call_id, str):
                raise BadRequest(f"{at}.id must be a string, got {shown(call_id)}")
            item["id"] = call_id
            call_names[call_id] = function["name"]
        arguments = request_arguments(function.get("arguments"), at)
        item["function"] = {"index": j, "name": function["name"], "arguments": arguments}
        out.append(item)
    return out
