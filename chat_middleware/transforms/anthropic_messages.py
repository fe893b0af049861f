"""Canonical messages → Anthropic's `system` and alternating turns (the `anthropic` transform).

See `anthropic` for what is folded, merged or dropped on the way. Every field
read is type-checked and a wrong one is a 400 naming its path. Conversations
carry hundreds of messages, so a turn of plain text takes the shortest path and
a path is spelled out only for an error: checks raise with the path below the
message, and `within` puts the message's own path in front.
"""

from __future__ import annotations

import re

from ..errors import BadRequest
from ..shapes import request_arguments, shown

_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")


def to_messages(messages: object) -> tuple[str, list[dict]]:
    """Canonical messages → Anthropic's `system` text and alternating `messages` turns."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest(f"messages must be a non-empty list of message objects, got {shown(messages)}")
    system: list[str] = []
    turns: list[dict] = []
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str) and (role == "user" or role == "assistant" and not msg.get("tool_calls")):
            if content:  # the common turn: plain text
                _add(turns, role, content)
            continue
        try:
            if role == "user":
                blocks = _user_blocks(content, ".content")
            elif role == "assistant":
                blocks = _assistant_blocks(msg, i)
            elif role == "tool":
                role, blocks = "user", [_tool_result(msg)]
            elif role == "system" or role == "developer":
                text = _text(content, ".content")
                if text:
                    system.append(text)
                continue
            elif not isinstance(msg, dict):
                raise BadRequest(f" must be an object, got {shown(msg)}")
            else:
                raise BadRequest(f".role must be system, developer, user, assistant or tool, got {shown(role)}")
        except BadRequest as exc:
            raise within(exc, f"messages[{i}]") from None
        if blocks:
            _add(turns, role, blocks)
    return "\n\n".join(system), turns


def within(error: BadRequest, path: str, index: int = -1) -> BadRequest:
    """`error`, whose message begins with the path below `path` (".text must be …"), with `path`
    (and `[index]`, when there is one) in front."""
    return BadRequest((path if index < 0 else f"{path}[{index}]") + error.message)


def _add(turns: list[dict], role: str, content: str | list[dict]) -> None:
    """Append a turn, or merge it into the last one when that has the same role."""
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": content})
        return
    last = turns[-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if blocks[0]["type"] == "tool_result":  # results go before the turn's other content
        at = next((k for k, b in enumerate(last["content"]) if b["type"] != "tool_result"), len(last["content"]))
        last["content"][at:at] = blocks
    else:
        last["content"].extend(blocks)


def _user_blocks(content: object, where: str) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or a list of content parts, got {shown(content)}")
    blocks = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{where}[{k}].text must be a string, got {shown(text)}")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}[{k}]"))
        else:
            raise BadRequest(f"{where}[{k}].type must be text or image_url for an Anthropic upstream, "
                             f"got {shown(kind)}")
    return blocks


def _assistant_blocks(msg: dict, i: int) -> list[dict]:
    """Text, then a tool_use block per call; `i` names made-up call ids."""
    text = _text(msg.get("content"), ".content")
    blocks: list[dict] = [{"type": "text", "text": text}] if text else []
    calls = msg.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise BadRequest(f".tool_calls must be a list, got {shown(calls)}")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f".tool_calls[{j}] must be {{id, type: 'function', function: {{name, arguments}}}}")
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise BadRequest(f".tool_calls[{j}].id must be a string, got {shown(call_id)}")
        blocks.append({"type": "tool_use", "id": _tool_id(call_id or f"call_{i}_{j}"), "name": name,
                       "input": request_arguments(function.get("arguments"), f".tool_calls[{j}]")})
    return blocks


def _tool_result(msg: dict) -> dict:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f".tool_call_id must be a non-empty string, got {shown(call_id)}")
    content = msg.get("content")
    result: dict = {"type": "tool_result", "tool_use_id": _tool_id(call_id)}
    if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
        blocks = _user_blocks(content, ".content")
        if blocks:
            result["content"] = blocks
    else:
        text = _text(content, ".content")
        if text:
            result["content"] = text
    return result


def _image(image: object, at: str) -> dict:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise BadRequest(f"{at}.image_url.url must be a string, got {shown(url)}")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        if not comma or not header.endswith(";base64") or not data:
            raise BadRequest(f"{at}: an image data URL must be base64-encoded (data:<type>;base64,<data>)")
        return {"type": "image", "source": {"type": "base64", "media_type": header[:-7], "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest(f"{at}.image_url.url must be a data URL or an http(s) URL")


def _text(content: object, where: str) -> str:
    """Content that Anthropic takes as text here (a system prompt, an assistant turn, a tool result)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or a list of text parts, got {shown(content)}")
    texts = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part[kind] if kind in ("text", "refusal") and kind in part else None
        if not isinstance(text, str):
            raise BadRequest(f"{where}[{k}] must be a text part {{type: 'text', text}}")
        texts.append(text)
    return "\n".join(texts)


def _tool_id(call_id: str) -> str:
    return call_id if _NOT_ID.search(call_id) is None else _NOT_ID.sub("_", call_id)
