"""The request checks of Anthropic's Messages API that a gateway can trip, worded like the real API.

PROTOCOLS.md §9.1 lists the rules; the messages quoted here are the API's own,
as reported in public issue threads (cited beside each). A check returns the
message of the first problem, or None; the fake answers it as a 400
`invalid_request_error`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

ROLES = ("user", "assistant", "system")
THINKING_TYPES = ("enabled", "disabled", "adaptive")
MIN_BUDGET = 1024
# anthropics/claude-code#13460, router-for-me/CLIProxyAPI#497 (the API's 400 for an orphaned tool_result)
UNEXPECTED_RESULT = ("messages.{at}: unexpected `tool_use_id` found in `tool_result` blocks: {ids}. "
                     "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
# anthropics/claude-code#5060, #7929 (a tool_use the next turn does not answer)
MISSING_RESULT = ("messages.{at}: `tool_use` ids were found without `tool_result` blocks immediately after: {ids}. "
                  "Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
# liuw1535/antigravity2api-nodejs#149, router-for-me/CLIProxyAPI#413
BUDGET_OVER_MAX = ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                   "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                   "#max-tokens-and-context-window-size")

Located = tuple[str, dict[str, Any]]  # ("3.content.1", block)


def sign(thinking: str) -> str:
    """The fake's signature of a thinking block's text: any change to the text (or signature) breaks it.

    Real signatures are opaque and checked server-side (anthropics/anthropic-sdk-python#1598: the check fails
    when a thinking block "differs in any way from what was originally returned").
    """
    digest = hashlib.sha256(b"fake-anthropic-thinking\0" + thinking.encode()).digest()
    return base64.b64encode(b"fake" + digest).decode()


def check_body(req: Any, *, count_tokens: bool = False) -> str | None:
    """The first problem with a `/v1/messages` (or count_tokens) body, as the API words it."""
    if not isinstance(req, dict):
        return "Input should be a valid dictionary"  # pydantic's wording; the API's is unconfirmed
    if not isinstance(req.get("model"), str) or not req["model"]:
        return "model: Field required"
    if not count_tokens:
        # tickernelz/opencode-mem#50: `{"message":"max_tokens: Field required"}`
        if "max_tokens" not in req:
            return "max_tokens: Field required"
        if not isinstance(req["max_tokens"], int) or isinstance(req["max_tokens"], bool) or req["max_tokens"] < 0:
            return "max_tokens: Input should be a valid integer greater than or equal to 0"
    messages = req.get("messages")
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    return (_check_shapes(messages) or _check_thinking(req, count_tokens) or _check_signatures(messages)
            or _check_tool_pairs(messages))


def _check_shapes(messages: list[Any]) -> str | None:
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        if m.get("role") not in ROLES:  # "system" mid-conversation is accepted (Claude Code 2.1 sends it, §9.1)
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = m.get("content")
        if content is None:
            return f"messages.{i}.content: Field required"
        if not isinstance(content, (str, list)):
            return f"messages.{i}.content: Input should be a valid string or a list of content blocks"
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return f"messages.{i}.content.{j}.type: Field required"
    return None


def _check_thinking(req: dict[str, Any], count_tokens: bool) -> str | None:
    thinking = req.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in THINKING_TYPES:
        return (f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                "'enabled', 'disabled', 'adaptive'")
    if kind != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < MIN_BUDGET:
        # themaximalist/llm.js#30: "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        return f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}"
    if not count_tokens and budget >= req["max_tokens"]:
        return BUDGET_OVER_MAX
    return None


def _check_signatures(messages: list[Any]) -> str | None:
    """Thinking blocks must come back unmodified (PROTOCOLS.md §9.1; anthropics/claude-code#10627's wording)."""
    for at, block in _blocks(messages, "assistant"):
        if block["type"] != "thinking":
            continue
        signature = block.get("signature")
        if not isinstance(signature, str) or not signature:
            return f"messages.{at}.signature: Field required"
        if signature != sign(str(block.get("thinking", ""))):
            return f"messages.{at}: Invalid `signature` in `thinking` block"
    return None


def _check_tool_pairs(messages: list[Any]) -> str | None:
    """Every tool_result answers a tool_use of the turn just before; every tool_use is answered by the next turn.

    Consecutive same-role messages form one turn (the API merges them, §9.1). A mid-conversation
    "system" message is skipped over rather than breaking adjacency: **unconfirmed** against the API.
    """
    turns = _turns(messages)
    for t, (role, first, blocks) in enumerate(turns):
        if role == "user":
            before = turns[t - 1] if t else None
            offered = {b.get("id") for _, b in before[2] if b["type"] == "tool_use"} if before else set()
            for at, block in blocks:
                if block["type"] == "tool_result" and block.get("tool_use_id") not in offered:
                    return UNEXPECTED_RESULT.format(at=at, ids=block.get("tool_use_id"))
        elif t + 1 < len(turns):
            answered = {b.get("tool_use_id") for _, b in turns[t + 1][2] if b["type"] == "tool_result"}
            missing = [b.get("id") for _, b in blocks if b["type"] == "tool_use" and b.get("id") not in answered]
            if missing:
                return MISSING_RESULT.format(at=first, ids=", ".join(map(str, missing)))
    return None


def _turns(messages: list[dict[str, Any]]) -> list[tuple[str, int, list[Located]]]:
    """(role, index of its first message, its blocks) per merged user/assistant turn."""
    turns: list[tuple[str, int, list[Located]]] = []
    for i, m in enumerate(messages):
        if m["role"] == "system":
            continue
        blocks = list(_located(i, m))
        if turns and turns[-1][0] == m["role"]:
            turns[-1][2].extend(blocks)
        else:
            turns.append((m["role"], i, blocks))
    return turns


def _blocks(messages: list[dict[str, Any]], role: str) -> Iterator[Located]:
    for i, m in enumerate(messages):
        if m["role"] == role:
            yield from _located(i, m)


def _located(i: int, message: dict[str, Any]) -> Iterator[Located]:
    content = message["content"]
    if isinstance(content, str):
        yield f"{i}.content", {"type": "text", "text": content}
        return
    for j, block in enumerate(content):
        yield f"{i}.content.{j}", block


def prompt_words(req: dict[str, Any]) -> list[str]:
    """The words the fake counts as input: system, every message's text and tool traffic, and the tools."""
    words = _text_words(req.get("system"))
    for m in req.get("messages") or ():
        words += _text_words(m.get("content"))
    for tool in req.get("tools") or ():
        if isinstance(tool, dict):
            words += f"{tool.get('name', '')} {tool.get('description', '')}".split()
            words += orjson.dumps(tool.get("input_schema") or {}).decode().split()
    return words


def _text_words(content: Any) -> list[str]:
    if isinstance(content, str):
        return content.split()
    words: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("text", "thinking"):
            words += str(block.get(kind, "")).split()
        elif kind == "tool_use":
            words += f"{block.get('name', '')} {orjson.dumps(block.get('input') or {}).decode()}".split()
        elif kind == "tool_result":
            words += _text_words(block.get("content"))
    return words
