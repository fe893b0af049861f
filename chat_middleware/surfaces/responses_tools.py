"""Responses tools and `tool_choice` → Chat Completions functions, and the way back to the client's names.

Chat upstreams know only flat functions. A `namespace` tool's members become
functions named `<namespace>__<member>` (OpenAI function names must match
`^[a-zA-Z0-9_-]+$`, so no dot; `__` is also how Codex itself flattens them),
and a `custom` tool becomes a function taking one string, `input`. Each such
name is remembered in a `ToolRef`, so the renderer answers with the client's
own namespace, member and call type. Hosted tools (`web_search`, `file_search`,
…) run inside OpenAI and mean nothing to another upstream: they are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..errors import BadRequest

SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class ToolRef:
    """The client's tool behind a flattened upstream function name."""

    name: str
    namespace: str | None = None
    custom: bool = False
    """Called with a plain string (`custom_tool_call.input`), carried as the `input` argument."""


def shown(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    return "null" if value is None else type(value).__name__


def flat_name(namespace: str | None, name: str) -> str:
    """The upstream name of a tool: a namespace member's is `<namespace>__<member>`, as Codex spells it."""
    if not namespace:
        return name
    return namespace.rstrip("_") + SEPARATOR + name.lstrip("_")


def custom_arguments(text: str) -> str:
    """A custom tool's input as the arguments of the function standing in for it."""
    return orjson.dumps({"input": text}).decode()


def custom_input(arguments: str) -> str:
    """The way back: the `input` string inside a function call's arguments (all of them if it is not there)."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    value = parsed.get("input") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else arguments


def chat_tools(tools: object) -> tuple[list[dict], dict[str, ToolRef]]:
    """`tools` → Chat functions, and the ToolRef of every name that is not the client's own."""
    if tools is None:
        return [], {}
    if not isinstance(tools, list):
        raise BadRequest(f"tools must be an array, got {shown(tools)}")
    out: list[dict] = []
    refs: dict[str, ToolRef] = {}
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function" or kind == "custom":
            out.append(_function(tool, where, None, refs))
        elif kind == "namespace":
            namespace = _text(tool, "name", where, required=True)
            members = tool.get("tools")
            if not isinstance(members, list):
                raise BadRequest(f"{where}.tools must be an array, got {shown(members)}")
            for j, member in enumerate(members):
                member_kind = member.get("type") if isinstance(member, dict) else None
                if member_kind != "function" and member_kind != "custom":
                    raise BadRequest(f"{where}.tools[{j}].type must be function or custom, got {shown(member_kind)}")
                out.append(_function(member, f"{where}.tools[{j}]", namespace, refs))
        elif not isinstance(tool, dict):
            raise BadRequest(f"{where} must be an object, got {shown(tool)}")
        elif not isinstance(kind, str):
            raise BadRequest(f"{where}.type must be a string, got {shown(kind)}")
        # any other type is a hosted tool: dropped
    names = [tool["function"]["name"] for tool in out]
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise BadRequest(f"tools: more than one tool is called {twice!r} (namespace members count as "
                         f"<namespace>{SEPARATOR}<name>)")
    return out, refs


def _function(tool: dict, where: str, namespace: str | None, refs: dict[str, ToolRef]) -> dict:
    name = _text(tool, "name", where, required=True)
    custom = tool["type"] == "custom"
    flat = flat_name(namespace, name)
    if namespace or custom:
        refs[flat] = ToolRef(name, namespace, custom)
    function: dict = {"name": flat}
    description = _text(tool, "description", where)
    if description:
        function["description"] = description
    if custom:
        function["parameters"] = _custom_parameters(tool.get("format"), where)
        return {"type": "function", "function": function}
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest(f"{where}.parameters must be a JSON Schema object, got {shown(parameters)}")
    function["parameters"] = parameters or {"type": "object", "properties": {}}
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise BadRequest(f"{where}.strict must be true or false, got {shown(strict)}")
    if strict:  # false is every upstream's default, and some reject the field
        function["strict"] = True
    return {"type": "function", "function": function}


def _custom_parameters(fmt: object, where: str) -> dict:
    """One string argument; a grammar the input must follow is told to the model in its description."""
    description = "The tool's input, passed to it as is."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        syntax, definition = fmt.get("syntax"), fmt.get("definition")
        if not isinstance(definition, str):
            raise BadRequest(f"{where}.format.definition must be a string, got {shown(definition)}")
        description += f" It must follow this {syntax if isinstance(syntax, str) else ''} grammar:\n{definition}"
    elif fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise BadRequest(f"{where}.format must be {{type: text}} or {{type: grammar, syntax, definition}}")
    return {"type": "object", "properties": {"input": {"type": "string", "description": description}},
            "required": ["input"], "additionalProperties": False}


def chat_tool_choice(choice: object, tools: list[dict], refs: dict[str, ToolRef]) -> tuple[object, list[dict]]:
    """`tool_choice` → Chat's, and the tools left to offer (`allowed_tools` narrows them).

    A hosted tool cannot be forced where it does not exist: choosing one means `auto`.
    """
    if choice is None or choice in ("auto", "none", "required"):
        return choice, tools
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise BadRequest(f"tool_choice must be auto, none, required or an object with a type, got {shown(choice)}")
    kind = choice["type"]
    if kind == "function" or kind == "custom":
        return {"type": "function", "function": {"name": _chosen(choice, "tool_choice", tools, refs)}}, tools
    if kind != "allowed_tools":
        return "auto", tools
    mode = choice.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise BadRequest(f"tool_choice.mode must be auto or required, got {shown(mode)}")
    allowed = choice.get("tools")
    if not isinstance(allowed, list):
        raise BadRequest(f"tool_choice.tools must be an array, got {shown(allowed)}")
    names = {_chosen(tool, f"tool_choice.tools[{i}]", tools, refs) for i, tool in enumerate(allowed)
             if isinstance(tool, dict) and tool.get("type") in ("function", "custom")}
    return mode, [tool for tool in tools if tool["function"]["name"] in names]


def _chosen(choice: dict, where: str, tools: list[dict], refs: dict[str, ToolRef]) -> str:
    """The upstream name of the tool a choice names, by its flat name or as a namespace member."""
    name = _text(choice, "name", where, required=True)
    namespace = _text(choice, "namespace", where)
    flat = flat_name(namespace, name)
    if any(tool["function"]["name"] == flat for tool in tools):
        return flat
    members = [key for key, ref in refs.items() if ref.name == name and ref.namespace]
    if len(members) == 1:
        return members[0]
    raise BadRequest(f"{where} names tool {name!r}, which is not among the tools")


def _text(body: dict, key: str, where: str, required: bool = False) -> str:
    value = body.get(key)
    if isinstance(value, str) and (value or not required):
        return value
    if value is None and not required:
        return ""
    raise BadRequest(f"{where}.{key} must be a {'non-empty ' if required else ''}string, got {shown(value)}")
