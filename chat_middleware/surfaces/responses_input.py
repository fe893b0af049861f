"""Responses `input` items → Chat Completions messages.

Item by item:
- messages: `developer` and `system` become system messages where they stand
  (Codex sends its base prompt so, with no `instructions`); `instructions`
  becomes the first system message.
- `function_call` / `custom_tool_call` items join the assistant message before
  them (or make one), so consecutive calls are one turn; their outputs become
  tool messages. Images in a tool's output follow the run of tool messages as
  a user message, since Chat tool messages carry only text.
- `reasoning` items: their text becomes the `reasoning_content` of the next
  assistant turn (Kimi rejects a tool-call turn without it); `encrypted_content`
  is for OpenAI alone and only reaches it by same-kind passthrough.
- records of OpenAI-hosted tool work (`web_search_call`, `file_search_call`,
  `code_interpreter_call`, `image_generation_call`, `mcp_*`, `tool_search_*`)
  are dropped: the model's following text already carries their results.
- client-side built-in tools chatd cannot offer a Chat upstream (`computer_call`,
  `local_shell_call`, `shell_call`, `apply_patch_call`, their outputs) and
  `compaction` (opaque) are a 400, rather than a conversation silently missing turns.
"""

from __future__ import annotations

import orjson

from ..errors import BadRequest
from .responses_tools import custom_arguments, flat_name, shown

STATELESS = "previous_response_id_unsupported"
"""The code of every 400 for something that needs server-side state."""
DROPPED = frozenset({
    "web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call", "mcp_list_tools",
    "mcp_call", "mcp_approval_request", "mcp_approval_response", "tool_search_call", "tool_search_output",
})
REFUSED = frozenset({
    "computer_call", "computer_call_output", "local_shell_call", "local_shell_call_output", "shell_call",
    "shell_call_output", "apply_patch_call", "apply_patch_call_output",
})


def chat_messages(items: object, out: list[dict]) -> None:
    """`input` → Chat messages appended to `out`; one pass, a few lookups per item."""
    if isinstance(items, str):
        out.append({"role": "user", "content": items})
        return
    if not isinstance(items, list) or not items:
        raise BadRequest(f"input must be a string or a non-empty array of items, got {shown(items)}")
    reasoning: list[str] = []  # the thinking of the assistant turn that comes next
    images: list[dict] = []  # image parts of tool outputs, sent after the tool messages
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"input[{i}] must be an object, got {shown(item)}")
        kind = item.get("type")
        if kind == "function_call" or kind == "custom_tool_call":
            if images:
                out.append(_images_message(images))
            last = out[-1] if out else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": None}
                out.append(last)
            if reasoning:
                _think(last, reasoning)
            last.setdefault("tool_calls", []).append(_call(item, kind, i))
        elif kind == "function_call_output" or kind == "custom_tool_call_output":
            call_id = _string(item, "call_id", f"input[{i}]")
            text = _output(item.get("output"), f"input[{i}].output", images, call_id)
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "message" or kind is None:
            if images:
                out.append(_images_message(images))
            message = _message(item, i)
            if message["role"] == "assistant":
                if reasoning:
                    _think(message, reasoning)
            elif reasoning:  # reasoning no assistant turn follows: a turn of its own
                out.append(_think({"role": "assistant", "content": ""}, reasoning))
            out.append(message)
        elif kind == "reasoning":
            reasoning.extend(_reasoning_text(item, i))
        elif not isinstance(kind, str):
            raise BadRequest(f"input[{i}].type must be a string, got {shown(kind)}")
        elif kind in DROPPED:
            continue
        elif kind in REFUSED:
            raise BadRequest(f"input[{i}]: {kind} items cannot be carried to this model; chatd offers "
                             "upstreams only function and custom tools")
        elif kind == "compaction":
            raise BadRequest(f"input[{i}]: compaction items are readable only by OpenAI; send the "
                             "conversation they stand for instead")
        elif kind == "item_reference":
            raise BadRequest(f"input[{i}]: item_reference is not supported: chatd stores no items; "
                             "send the item itself", code=STATELESS)
        else:
            raise BadRequest(f"input[{i}].type {shown(kind)} is not supported")
    if images:
        out.append(_images_message(images))
    if reasoning:
        out.append(_think({"role": "assistant", "content": ""}, reasoning))


def _message(item: dict, i: int) -> dict:
    role = item.get("role")
    content = item.get("content")
    if role == "user":
        return {"role": "user", "content": content if isinstance(content, str) else _parts(content, i, True)}
    if role == "assistant" or role == "developer" or role == "system":
        text = content if isinstance(content, str) else _parts(content, i, False)
        return {"role": "system" if role != "assistant" else role, "content": text}
    raise BadRequest(f"input[{i}].role must be user, assistant, system or developer, got {shown(role)}")


def _parts(content: object, i: int, images: bool) -> str | list[dict]:
    """Content parts → one string, or Chat parts when there is an image (only a user's may have one)."""
    if not isinstance(content, list):
        raise BadRequest(f"input[{i}].content must be a string or an array of parts, got {shown(content)}")
    parts: list[dict] = []
    pictured = False
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text" or kind == "output_text":
            parts.append({"type": "text", "text": _string(part, "text", f"input[{i}].content[{j}]")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part, "refusal", f"input[{i}].content[{j}]")})
        elif kind == "input_image" and images:
            parts.append(_image(part, f"input[{i}].content[{j}]"))
            pictured = True
        elif kind == "input_file":
            raise BadRequest(f"input[{i}].content[{j}]: input_file cannot be carried to this model; "
                             "send the file's text as input_text")
        elif not isinstance(part, dict):
            raise BadRequest(f"input[{i}].content[{j}] must be an object, got {shown(part)}")
        else:
            allowed = "input_text, input_image, output_text or refusal" if images else \
                "input_text, output_text or refusal"
            raise BadRequest(f"input[{i}].content[{j}].type must be {allowed}, got {shown(kind)}")
    return parts if pictured else "\n".join([part["text"] for part in parts])


def _image(part: dict, where: str) -> dict:
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise BadRequest(f"{where}: images by file_id cannot be carried: chatd stores no files; "
                         "send image_url (a URL or a data URL)")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.image_url must be a URL or a data URL, got {shown(url)}")
    image: dict = {"url": url}
    if isinstance(part.get("detail"), str):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _call(item: dict, kind: str, i: int) -> dict:
    where = f"input[{i}]"
    call_id = _string(item, "call_id", where)
    name = _string(item, "name", where)
    namespace = item.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise BadRequest(f"{where}.namespace must be a string, got {shown(namespace)}")
    if kind == "custom_tool_call":
        arguments = custom_arguments(_string(item, "input", where))
    else:
        arguments = item.get("arguments")
        if isinstance(arguments, dict):
            try:
                arguments = orjson.dumps(arguments).decode()
            except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes
                raise BadRequest(f"{where}.arguments cannot be encoded as JSON: {exc}") from None
        elif not isinstance(arguments, str):
            raise BadRequest(f"{where}.arguments must be a JSON string, got {shown(arguments)}")
    return {"id": call_id, "type": "function", "function": {"name": flat_name(namespace, name), "arguments": arguments}}


def _output(output: object, where: str, images: list[dict], call_id: str) -> str:
    """A tool's output as text; its images wait in `images` for the user message after the tool messages."""
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise BadRequest(f"{where} must be a string or an array of parts, got {shown(output)}")
    texts = []
    for j, part in enumerate(output):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text" or kind == "output_text":
            texts.append(_string(part, "text", f"{where}[{j}]"))
        elif kind == "input_image":
            if not images or images[-1].get("text") != f"Images output by tool call {call_id}:":
                images.append({"type": "text", "text": f"Images output by tool call {call_id}:"})
            images.append(_image(part, f"{where}[{j}]"))
        elif kind == "input_file":
            raise BadRequest(f"{where}[{j}]: input_file cannot be carried to this model")
        else:
            raise BadRequest(f"{where}[{j}].type must be input_text or input_image, got {shown(kind)}")
    return "\n".join(texts)


def _images_message(images: list[dict]) -> dict:
    message = {"role": "user", "content": images[:]}
    images.clear()
    return message


def _reasoning_text(item: dict, i: int) -> list[str]:
    """The readable text of a reasoning item: its raw `content` if given, else its summary."""
    for key, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key)
        if parts is None:
            continue
        if not isinstance(parts, list):
            raise BadRequest(f"input[{i}].{key} must be an array, got {shown(parts)}")
        texts = [_string(part, "text", f"input[{i}].{key}[{j}]") for j, part in enumerate(parts)
                 if isinstance(part, dict) and part.get("type") == part_type]
        if texts:
            return texts
    return []


def _think(message: dict, reasoning: list[str]) -> dict:
    earlier = message.get("reasoning_content")
    message["reasoning_content"] = "\n\n".join([earlier, *reasoning] if earlier else reasoning)
    reasoning.clear()
    return message


def _string(body: object, key: str, where: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string, got {shown(value)}")
    return value
