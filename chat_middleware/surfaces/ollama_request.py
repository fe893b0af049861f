"""Inbound Ollama requests (/api/chat, /api/generate) → chatd's OpenAI Chat Completions body.

Pure functions, tested without HTTP. `native` is true when every provider of the
model's chain speaks Ollama: then what only Ollama understands (`think` as given,
every `options` key such as num_ctx or top_k) rides along in the body, and the
outbound ollama transforms put it back. Otherwise only fields that
OpenAI-compatible upstreams accept are sent, since some reject unknown ones.

Like Ollama, chatd ignores top-level fields it does not know; a known field of
the wrong type or value is a 400 that names it.
"""

from __future__ import annotations

import orjson

from ..errors import BadRequest
from ..settings import THINK_LEVELS
from ..shapes import integer_field, number_field, shown
from ..transforms.ollama import to_ollama_keep_alive, to_ollama_tools

ROLES = ("system", "user", "assistant", "tool")
THINK_TO_EFFORT = {"low": "low", "medium": "medium", "high": "high", "max": "max"}
SAMPLING = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
"""Ollama options with the same name and meaning in OpenAI's request."""
IMAGE_TYPES = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"),
               ("UklGR", "image/webp"))
"""How the base64 of each image format begins; Ollama sends no media type, a data URL needs one."""


def chat_request(body: dict, *, native: bool) -> dict | None:
    """An /api/chat body → an OpenAI body; None when it has no messages (Ollama then only loads the model)."""
    request = _common(body, native)
    messages = body.get("messages")
    if messages is not None and not isinstance(messages, list):
        raise BadRequest(f"messages must be a list of message objects, got {shown(messages)}")
    tools = to_ollama_tools({"tools": body.get("tools")})
    if not messages:
        return None
    request["messages"] = openai_messages(messages)
    if tools:
        request["tools"] = tools
    return request


def generate_request(body: dict, *, native: bool) -> dict | None:
    """An /api/generate body → an OpenAI body (system, then the prompt as the user's turn).

    None for an empty prompt, which Ollama answers by loading the model. What only a
    completion model could honour (a raw prompt, a suffix, a template, token context)
    is a 400 rather than a silently different answer.
    """
    request = _common(body, native)
    prompt, system = _text(body, "prompt"), _text(body, "system")
    for name in ("suffix", "template"):
        if _text(body, name):
            raise BadRequest(f"{name} is not supported: chatd answers /api/generate with chat models")
    raw = body.get("raw")
    if raw is not None and not isinstance(raw, bool):
        raise BadRequest(f"raw must be true or false, got {shown(raw)}")
    if raw:
        raise BadRequest("raw prompts are not supported: chatd answers /api/generate with chat models")
    if body.get("context"):
        raise BadRequest("context is not supported; send the conversation to /api/chat instead")
    images = _images(body.get("images"), "images")
    if not prompt:
        return None
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": _parts(prompt, images) if images else prompt})
    request["messages"] = messages
    return request


def response_format(fmt: object) -> dict | None:
    """Ollama `format` ("json" or a JSON Schema) → OpenAI `response_format`."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    raise BadRequest(f'format must be "json" or a JSON Schema object, got {shown(fmt)}')


def openai_messages(messages: list) -> list[dict]:
    """Ollama messages → OpenAI's: images as data-URL parts, tool-call arguments as JSON strings.

    OpenAI pairs each tool result with its call by id; Ollama clients often send
    neither (the official Python client drops them), so calls without an id get
    one from their position, and a tool message answers the oldest open call of
    its `tool_name` (or the oldest open call). An assistant's `thinking` travels as
    `reasoning_content`, which OpenAI-compatible upstreams read back (Kimi requires it on a
    tool-call turn when thinking) and the Ollama transforms turn into `thinking` again.
    """
    out = []
    open_calls: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise BadRequest(f"{where} must be an object, got {shown(msg)}")
        role = msg.get("role")
        role = role.lower() if isinstance(role, str) else role
        if role not in ROLES:
            raise BadRequest(f"{where}.role must be one of {', '.join(ROLES)}, got {shown(msg.get('role'))}")
        content = _text(msg, "content", where)
        images = _images(msg.get("images"), f"{where}.images")
        message: dict = {"role": role, "content": _parts(content, images) if images else content}
        if role == "assistant":
            thinking = _text(msg, "thinking", where)
            if thinking:
                message["reasoning_content"] = thinking
        if role == "assistant" and msg.get("tool_calls") is not None:
            calls = _tool_calls(msg["tool_calls"], i, open_calls)
            if calls:
                message["tool_calls"] = calls
                message["content"] = message["content"] or None  # OpenAI's shape for a pure tool call
        elif role == "tool":
            message["tool_call_id"] = _answered(msg, where, open_calls)
        out.append(message)
    return out


def data_url(image: str) -> str:
    """A bare base64 image → a data URL, its media type read from the first bytes (PNG if unknown)."""
    if image.startswith("data:"):
        return image
    mime = next((kind for prefix, kind in IMAGE_TYPES if image.startswith(prefix)), "image/png")
    return f"data:{mime};base64,{image}"


# ----- the parts


def _common(body: dict, native: bool) -> dict:
    """What chat and generate share: model, stream (Ollama's default is true), format, options, think."""
    stream = body.get("stream")
    if stream is None:
        stream = True
    elif not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false, got {shown(stream)}")
    request: dict = {"model": body["model"], "stream": stream}
    fmt = response_format(body.get("format"))
    if fmt is not None:
        request["response_format"] = fmt
    _options(body.get("options"), request, native)
    _think(body.get("think"), request, native)
    keep_alive = to_ollama_keep_alive(body)
    if keep_alive is not None and native:  # only Ollama upstreams have it
        request["keep_alive"] = keep_alive
    if body.get("logprobs") or body.get("top_logprobs"):
        raise BadRequest("logprobs are not supported by chatd's Ollama API")
    return request


def _options(options: object, request: dict, native: bool) -> None:
    """Ollama `options` → OpenAI sampling fields; all of them ride along when `native`."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise BadRequest(f"options must be an object, got {shown(options)}")
    try:
        for key in SAMPLING:
            value = number_field(options, key)
            if value is not None:
                request[key] = value
        seed = integer_field(options, "seed")
        if seed is not None and seed >= 0:  # Ollama's -1 means a random seed
            request["seed"] = seed
        limit = integer_field(options, "num_predict")
        if limit is not None and limit > 0:  # -1 and -2 mean no limit
            request["max_tokens"] = limit
        stop = options.get("stop")
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise BadRequest(f"stop must be a list of strings, got {shown(stop)}")  # as in Ollama: no string
        if stop:
            request["stop"] = stop
    except BadRequest as exc:
        raise BadRequest(f"options.{exc.message}") from None
    if native:
        request["options"] = options


def _think(think: object, request: dict, native: bool) -> None:
    """`think` as is for Ollama; a level becomes `reasoning_effort` elsewhere, true/false the model's default."""
    if think is None:
        return
    if not isinstance(think, bool) and think not in THINK_LEVELS:
        raise BadRequest(f"think must be true, false or one of {', '.join(THINK_LEVELS)}, got {shown(think)}")
    if native:
        request["think"] = think
    elif isinstance(think, str):
        request["reasoning_effort"] = THINK_TO_EFFORT[think]


def _text(body: dict, key: str, where: str = "") -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{where + '.' if where else ''}{key} must be a string, got {shown(value)}")
    return value


def _images(images: object, where: str) -> list[str]:
    if images is None:
        return []
    if not isinstance(images, list) or not all(isinstance(image, str) and image for image in images):
        raise BadRequest(f"{where} must be a list of base64-encoded images")
    return images


def _parts(text: str, images: list[str]) -> list[dict]:
    parts: list[dict] = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in images]
    return parts


def _tool_calls(calls: object, turn: int, open_calls: list[tuple[str, str]]) -> list[dict]:
    """Ollama tool calls (arguments an object) → OpenAI's (arguments a JSON string, an id)."""
    where = f"messages[{turn}].tool_calls"
    if not isinstance(calls, list):
        raise BadRequest(f"{where} must be a list, got {shown(calls)}")
    out = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}[{j}] must be {{function: {{name, arguments}}}}")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise BadRequest(f"{where}[{j}].function.arguments must be a JSON object, got {shown(arguments)}")
        call_id = call.get("id") or f"call_{turn}_{j}"  # stable: the same history gives the same ids
        if not isinstance(call_id, str):
            raise BadRequest(f"{where}[{j}].id must be a string, got {shown(call_id)}")
        open_calls.append((call_id, name))
        out.append({"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}})
    return out


def _answered(msg: dict, where: str, open_calls: list[tuple[str, str]]) -> str:
    """The id of the call a tool message answers (see `openai_messages`)."""
    call_id, name = _text(msg, "tool_call_id", where), _text(msg, "tool_name", where)
    for k, (open_id, open_name) in enumerate(open_calls):
        if (open_id == call_id) if call_id else (not name or open_name == name):
            del open_calls[k]
            return open_id
    return call_id or f"call_{name or 'unknown'}"  # answers no call in this history; the upstream judges
