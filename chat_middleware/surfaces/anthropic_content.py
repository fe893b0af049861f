"""Anthropic turns and content blocks → canonical messages (the Anthropic surface's parse side).

See `anthropic_request` for what cannot be carried and what is sent instead.
Every block is type-checked and a wrong one is a 400 naming its path
(`messages[3].content[1].type`). Agent conversations carry hundreds of
messages, so a plain-text turn takes the shortest path and a path is spelled
out only for an error: the checks raise with the path below the block, and the
loop over a message's blocks puts the block's own path in front.
"""

from __future__ import annotations

import orjson

from ..errors import BadRequest
from ..shapes import shown
from ..transforms.anthropic_messages import within

SERVER_BLOCKS = ("server_tool_use", "mcp_tool_use")
"""Blocks of tools Anthropic runs itself (with every `*_tool_result` but `tool_result`)."""
_ROLES = ("user", "assistant", "system")


def canonical_messages(messages: object, system: object) -> list[dict]:
    """`system` and the `messages` turns → canonical messages, the system prompt first."""
    if messages is None:
        raise BadRequest("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(f"messages must be a non-empty array of messages, got {shown(messages)}")
    out: list[dict] = []
    if system is not None:
        try:
            text = _text(system)
        except BadRequest as exc:
            raise within(exc, "system") from None
        if text:
            out.append({"role": "system", "content": text})
    i, n = 0, len(messages)
    while i < n:
        message = messages[i]
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            if not isinstance(message, dict):
                raise BadRequest(f"messages[{i}] must be an object, got {shown(message)}")
            raise BadRequest(f"messages[{i}].role must be user, assistant or system, got {shown(role)}")
        content = message.get("content")
        end = i + 1
        if role == "system":
            if not isinstance(content, str):
                try:
                    content = _text(content)
                except BadRequest as exc:
                    raise within(exc, f"messages[{i}].content") from None
            out.append({"role": "system", "content": content})
        else:
            while end < n and isinstance(messages[end], dict) and messages[end].get("role") == role:
                end += 1
            if end == i + 1 and isinstance(content, str):  # the common turn: one message of plain text
                out.append({"role": role, "content": content})
            elif role == "user":
                _user(messages, i, end, out)
            else:
                out.append(_assistant(messages, i, end))
        i = end
    return out


def _user(messages: list, start: int, end: int, out: list[dict]) -> None:
    """One user turn (a run of user messages): its tool results first, then the rest as one message."""
    results: list[dict] = []
    parts: list[dict] = []
    for i in range(start, end):
        content = messages[i].get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
            continue
        k = -1
        try:
            for k, block in enumerate(_blocks(content)):
                kind = _kind(block)
                if kind == "text":
                    parts.append({"type": "text", "text": string(block, "text")})
                elif kind == "image":
                    parts.append(_image(block))
                elif kind == "tool_result":
                    results.append(_tool_result(block, parts))
                elif kind == "document":
                    parts.append({"type": "text", "text": _document(block)})
                elif kind in ("tool_use", "thinking", "redacted_thinking"):
                    raise BadRequest(f": {kind} blocks belong in an assistant turn")
                elif not _server_block(kind):
                    raise BadRequest(f".type: unknown content block type {shown(kind)}")
        except BadRequest as exc:
            raise within(exc, f"messages[{i}].content", k) from None
    out.extend(results)
    if parts:
        out.append({"role": "user", "content": _content(parts)})


def _assistant(messages: list, start: int, end: int) -> dict:
    """One assistant turn: its text, its tool calls, and its thinking as `reasoning_content`."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    for i in range(start, end):
        content = messages[i].get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        k = -1
        try:
            for k, block in enumerate(_blocks(content)):
                kind = _kind(block)
                if kind == "text":
                    texts.append(string(block, "text"))
                elif kind == "tool_use":
                    calls.append(_tool_use(block))
                elif kind == "thinking":
                    thinking.append(string(block, "thinking"))
                elif kind in ("image", "document", "tool_result"):
                    raise BadRequest(f": {kind} blocks belong in a user turn")
                elif kind != "redacted_thinking" and not _server_block(kind):
                    raise BadRequest(f".type: unknown content block type {shown(kind)}")
        except BadRequest as exc:
            raise within(exc, f"messages[{i}].content", k) from None
    text = "\n".join(texts)
    message: dict = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "\n".join(thinking)
    return message


def _content(parts: list[dict]) -> str | list[dict]:
    """Text parts alone become one string (what every upstream takes); with images, the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


# ----- blocks; each check raises with the path below the block (".text must be …")


def _text(content: object) -> str:
    """Content that may hold only text (a system prompt, a search result): one string."""
    if isinstance(content, str):
        return content
    texts = []
    k = -1
    try:
        for k, block in enumerate(_blocks(content)):
            if _kind(block) != "text":
                raise BadRequest(f".type must be text here, got {shown(block['type'])}")
            texts.append(string(block, "text"))
    except BadRequest as exc:
        raise within(exc, "", k) from None
    return "\n".join(texts)


def _tool_use(block: dict) -> dict:
    call_id, name = string(block, "id"), string(block, "name")
    if not call_id or not name:
        raise BadRequest(": a tool_use block needs a non-empty id and name")
    arguments = block.get("input")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise BadRequest(f".input must be an object, got {shown(arguments)}")
    try:
        encoded = orjson.dumps(arguments).decode()
    except TypeError as exc:  # nested deeper than orjson writes
        raise BadRequest(f".input cannot be encoded as JSON: {exc}") from None
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}


def _tool_result(block: dict, parts: list[dict]) -> dict:
    """A tool message; images of the result go to `parts`, the user turn after the tool messages."""
    call_id = string(block, "tool_use_id")
    if not call_id:
        raise BadRequest(".tool_use_id must be a non-empty string")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    else:
        texts = []
        k = -1
        try:
            for k, item in enumerate(_blocks(content)):
                kind = _kind(item)
                if kind == "text":
                    texts.append(string(item, "text"))
                elif kind == "image":
                    parts.append(_image(item))
                elif kind == "document":
                    texts.append(_document(item))
                elif kind == "search_result":
                    try:
                        texts.append(_text(item.get("content")))
                    except BadRequest as exc:
                        raise within(exc, ".content") from None
                else:
                    raise BadRequest(f".type must be text, image, document or search_result, got {shown(kind)}")
        except BadRequest as exc:
            raise within(exc, ".content", k) from None
        text = "\n".join(texts)
    error = block.get("is_error")
    if error is not None and not isinstance(error, bool):
        raise BadRequest(f".is_error must be true or false, got {shown(error)}")
    if error:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _image(block: dict) -> dict:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        media, data = string(source, "media_type", ".source"), string(source, "data", ".source")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": string(source, "url", ".source")}}
    if not isinstance(source, dict):
        raise BadRequest(f".source must be an object, got {shown(source)}")
    raise BadRequest(f".source.type must be base64 or url, got {shown(kind)}")


def _document(block: dict) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text":
        return string(source, "data", ".source")
    raise BadRequest(f": a document block (source {shown(kind)}) cannot be carried to this model's upstream; "
                     "only documents with a text source can")


def _blocks(content: object) -> list:
    if not isinstance(content, list):
        raise BadRequest(f" must be a string or an array of content blocks, got {shown(content)}")
    return content


def _kind(block: object) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if isinstance(kind, str):
        return kind
    if not isinstance(block, dict):
        raise BadRequest(f" must be a content block object, got {shown(block)}")
    raise BadRequest(f".type must be a string, got {shown(kind)}")


def string(obj: dict, key: str, where: str = "") -> str:
    """`obj[key]`, which must be a string; the error names it as `where.key`."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string, got {shown(value)}")
    return value


def _server_block(kind: str) -> bool:
    return kind in SERVER_BLOCKS or kind.endswith("_tool_result") and kind != "tool_result"
