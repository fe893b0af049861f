"""Responses requests → the canonical Chat Completions body, as pure functions."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_middleware.errors import BadRequest
from chat_middleware.surfaces.responses_request import EFFORTS, relay_request, responses_request
from chat_middleware.surfaces.responses_tools import ToolRef

PNG = "data:image/png;base64,iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
          "additionalProperties": False}


def translate(**body) -> dict:
    return responses_request({"model": "smart", **body})[0]


def rejected(**body) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        responses_request({"model": "smart", **body})
    return caught.value


def typed(role: str, text: str, part: str = "input_text") -> dict:
    return {"type": "message", "id": "msg_" + text[:4], "role": role, "content": [{"type": part, "text": text}]}


def function(name: str) -> dict:
    return {"type": "function", "name": name, "description": f"{name} tool", "strict": False, "parameters": SCHEMA}


def codex_request(history: list[dict] | None = None) -> dict:
    """A request shaped as Codex CLI 0.171 sends it (PROTOCOLS §10 "It sends")."""
    members = ["close_agent", "resume_agent", "send_input", "spawn_agent", "wait_agent"]
    return {
        "model": "smart", "stream": True,
        "input": [
            typed("developer", "You are Codex, a coding agent. " * 400),
            typed("developer", "<skills>…</skills>"),
            typed("user", "<environment_context><cwd>/work</cwd></environment_context>"),
            typed("user", "list the files"),
            *(history or []),
        ],
        "tools": [
            *[function(name) for name in ("exec_command", "write_stdin", "request_user_input", "view_image",
                                          "get_goal", "create_goal", "update_goal")],
            {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
             "tools": [function(name) for name in members]},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto"}, "store": False,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "019a-session",
        "client_metadata": {"turn_id": "t-1"},
    }


# ----- Codex


def test_codex_first_turn_translates_developer_items_namespace_and_hosted_tools():
    request, context = responses_request(codex_request())
    assert [(m["role"], m["content"][:30]) for m in request["messages"]] == [
        ("system", "You are Codex, a coding agent."), ("system", "<skills>…</skills>"),
        ("user", "<environment_context><cwd>/wor"), ("user", "list the files")]
    names = [tool["function"]["name"] for tool in request["tools"]]
    assert names == ["exec_command", "write_stdin", "request_user_input", "view_image", "get_goal", "create_goal",
                     "update_goal", "multi_agent_v1__close_agent", "multi_agent_v1__resume_agent",
                     "multi_agent_v1__send_input", "multi_agent_v1__spawn_agent", "multi_agent_v1__wait_agent"]
    assert request["tools"][0] == {"type": "function", "function": {
        "name": "exec_command", "description": "exec_command tool", "parameters": SCHEMA}}  # strict false: left out
    assert context.tools["multi_agent_v1__spawn_agent"] == ToolRef("spawn_agent", "multi_agent_v1")
    assert request["tool_choice"] == "auto" and request["parallel_tool_calls"] is True
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["prompt_cache_key"] == "019a-session"
    assert not {"store", "include", "client_metadata", "reasoning", "reasoning_effort"} & request.keys()
    assert context.stream and context.summary == "auto"
    assert context.echo["tools"] == codex_request()["tools"] and context.echo["store"] is False


def test_codex_later_turn_pairs_calls_and_outputs_and_drops_encrypted_reasoning():
    history = [
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": None, "encrypted_content": "gAAAAABsealed"},
        {"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "call_a", "name": "exec_command",
         "arguments": '{"cmd":"ls"}'},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_a", "output": "README.md\nsrc\n"},
        {"type": "reasoning", "id": "rs_2", "summary": [], "content": None, "encrypted_content": "gAAAAABmore"},
        typed("assistant", "There are two entries.", "output_text"),
        typed("user", "thanks"),
    ]
    messages = translate(**codex_request(history))["messages"][4:]
    assert messages == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "README.md\nsrc\n"},
        {"role": "assistant", "content": "There are two entries."},
        {"role": "user", "content": "thanks"},
    ]
    assert "gAAAA" not in orjson.dumps(messages).decode()


def test_reasoning_summaries_become_the_next_assistant_turns_reasoning_content():
    messages = translate(input=[
        typed("user", "hi"),
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Check the dir."}]},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "Part one."},
                                                         {"type": "summary_text", "text": "Part two."}]},
        typed("assistant", "Done.", "output_text"),
    ])["messages"]
    assert messages[1]["reasoning_content"] == "Check the dir." and messages[1]["tool_calls"]
    assert messages[3] == {"role": "assistant", "content": "Done.", "reasoning_content": "Part one.\n\nPart two."}


def test_reasoning_that_no_assistant_turn_follows_is_a_turn_of_its_own():
    thought = {"type": "reasoning", "id": "rs_1", "content": [{"type": "reasoning_text", "text": "raw thought"}],
               "summary": [{"type": "summary_text", "text": "summary"}]}
    messages = translate(input=[typed("user", "a"), thought, typed("user", "b"), thought])["messages"]
    assert messages == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "", "reasoning_content": "raw thought"},
        {"role": "user", "content": "b"}, {"role": "assistant", "content": "", "reasoning_content": "raw thought"}]


# ----- messages and parts


def test_input_string_instructions_and_developer_in_place():
    assert translate(input="Hi")["messages"] == [{"role": "user", "content": "Hi"}]
    messages = translate(instructions="Be brief.", input=[
        {"role": "user", "content": "one"}, {"role": "developer", "content": "Now French."},
        {"role": "system", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
    ])["messages"]
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"},
                        {"role": "system", "content": "Now French."}, {"role": "system", "content": "a\nb"}]


def test_images_become_image_url_parts_and_what_cannot_be_carried_is_a_clear_400():
    content = [{"type": "input_text", "text": "what is this?"},
               {"type": "input_image", "image_url": PNG, "detail": "low"},
               {"type": "input_image", "image_url": "https://example.com/cat.jpg"}]
    assert translate(input=[{"role": "user", "content": content}])["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    by_id = rejected(input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}])
    assert "input[0].content[0]" in by_id.message and "file_id" in by_id.message
    file = rejected(input=[typed("user", "x"), {"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}])
    assert "input[1].content[0]: input_file cannot be carried" in file.message
    assert "input[0].content[0].type" in rejected(input=[{"role": "assistant", "content": content[1:]}]).message


def test_consecutive_calls_join_the_assistant_text_before_them():
    messages = translate(input=[
        typed("user", "go"), typed("assistant", "Running both.", "output_text"),
        {"type": "function_call", "call_id": "c1", "name": "a", "arguments": '{"x":1}'},
        {"type": "function_call", "call_id": "c2", "name": "b", "arguments": {"y": 2}},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "tw"},
                                                                       {"type": "input_text", "text": "o"}]},
    ])["messages"]
    assert messages[1] == {"role": "assistant", "content": "Running both.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x":1}'}},
        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": '{"y":2}'}}]}
    assert messages[2:] == [{"role": "tool", "tool_call_id": "c1", "content": "one"},
                            {"role": "tool", "tool_call_id": "c2", "content": "tw\no"}]


def test_images_a_tool_returned_follow_the_tool_messages_as_a_user_message():
    messages = translate(input=[
        typed("user", "look"),
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": '{"path":"a.png"}'},
        {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_image", "image_url": PNG}]},
        {"type": "function_call_output", "call_id": "c2", "output": "a.png"},
    ])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert messages[4]["content"] == [{"type": "text", "text": "Images output by tool call c1:"},
                                      {"type": "image_url", "image_url": {"url": PNG}}]


def test_hosted_tool_records_are_dropped_and_client_tools_chatd_cannot_offer_are_refused():
    messages = translate(input=[typed("user", "news?"), {"type": "web_search_call", "id": "ws_1", "status":
                                                         "completed", "action": {"type": "search", "query": "x"}},
                                typed("assistant", "Here.", "output_text")])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    shell = rejected(input=[typed("user", "x"), {"type": "local_shell_call", "call_id": "c", "action": {}}])
    assert shell.message.startswith("input[1]: local_shell_call items cannot be carried")
    assert "compaction" in rejected(input=[{"type": "compaction", "encrypted_content": "gAAA"}]).message
    assert rejected(input=[{"type": "teleport"}]).message == "input[0].type 'teleport' is not supported"


# ----- tools


def test_custom_tools_take_one_string_and_their_calls_round_trip_as_arguments():
    request, context = responses_request({"model": "m", "input": [
        typed("user", "patch it"),
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
    ], "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files.",
                  "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}}]})
    parameters = request["tools"][0]["function"]["parameters"]
    assert parameters["required"] == ["input"] and parameters["properties"]["input"]["type"] == "string"
    assert "lark grammar:\nstart: patch" in parameters["properties"]["input"]["description"]
    assert context.tools == {"apply_patch": ToolRef("apply_patch", None, custom=True)}
    call = request["messages"][1]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch\n"}
    assert request["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "Done!"}


def test_a_namespaced_call_in_the_history_uses_the_flattened_name():
    call = {"type": "function_call", "call_id": "c", "name": "spawn_agent", "namespace": "multi_agent_v1",
            "arguments": "{}"}
    messages = translate(input=[typed("user", "spawn"), call])["messages"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"


@pytest.mark.parametrize(("choice", "expected"), [
    ("required", "required"), ("none", "none"),
    ({"type": "function", "name": "exec_command"}, {"type": "function", "function": {"name": "exec_command"}}),
    ({"type": "function", "name": "spawn_agent"}, {"type": "function", "function": {
        "name": "multi_agent_v1__spawn_agent"}}),
    ({"type": "web_search_preview"}, "auto"),
])
def test_tool_choice(choice, expected):
    assert translate(**{**codex_request(), "tool_choice": choice})["tool_choice"] == expected


def test_allowed_tools_narrows_the_tools_offered():
    request = translate(**{**codex_request(), "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [
        {"type": "function", "name": "exec_command"}, {"type": "function", "name": "wait_agent"},
        {"type": "web_search"}]}})
    assert request["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in request["tools"]] == ["exec_command", "multi_agent_v1__wait_agent"]


def test_only_hosted_tools_means_no_tools_and_no_tool_choice():
    request = translate(input="hi", tools=[{"type": "web_search"}], tool_choice="required", parallel_tool_calls=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & request.keys()


def test_tool_problems_name_the_tool():
    unnamed = rejected(input="x", tools=[{"type": "function"}])
    assert unnamed.message == "tools[0].name must be a non-empty string, got null"
    assert "not among the tools" in rejected(input="x", tools=[function("a")],
                                             tool_choice={"type": "function", "name": "b"}).message
    twice = rejected(input="x", tools=[function("a__b"), {"type": "namespace", "name": "a", "description": "",
                                                          "tools": [function("b")]}])
    assert "more than one tool is called 'a__b'" in twice.message


# ----- settings


def test_sampling_limits_format_and_identity():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    request = translate(input="x", max_output_tokens=256, temperature=0.2, top_p=0.9, metadata={"k": "v"},
                        safety_identifier="u-1", user="old", reasoning={"effort": "high", "summary": "detailed"},
                        text={"format": {"type": "json_schema", "name": "n", "schema": schema, "strict": True},
                              "verbosity": "low"}, service_tier="flex", truncation="auto", background=False)
    assert request == {
        "model": "smart", "messages": [{"role": "user", "content": "x"}], "max_tokens": 256, "temperature": 0.2,
        "top_p": 0.9, "reasoning_effort": "high", "metadata": {"k": "v"}, "user": "u-1",
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}}
    assert translate(input="x", text={"format": {"type": "json_object"}})["response_format"] == {"type": "json_object"}
    assert "response_format" not in translate(input="x", text={"format": {"type": "text"}})


@pytest.mark.parametrize("effort", EFFORTS)
def test_every_reasoning_effort_is_carried(effort):
    assert translate(input="x", reasoning={"effort": effort})["reasoning_effort"] == effort


@pytest.mark.parametrize("key", ["previous_response_id", "conversation"])
def test_server_side_state_is_refused_with_its_code(key):
    error = rejected(input="x", **{key: "resp_123"})
    assert error.status == 400 and error.code == "previous_response_id_unsupported"
    assert "chatd stores no responses" in error.message and "whole conversation" in error.message
    assert rejected(input=[{"type": "item_reference", "id": "msg_1"}]).code == "previous_response_id_unsupported"
    assert "background" in rejected(input="x", background=True).message


@pytest.mark.parametrize(("body", "message"), [
    ({"input": [typed("user", "a")] * 3 + [{"role": "user", "content": [{"type": 3}]}]},
     "input[3].content[0].type must be input_text, input_image, output_text or refusal, got int"),
    ({"input": None}, "input must be a string or a non-empty array of items, got null"),
    ({"input": ["hi"]}, "input[0] must be an object, got 'hi'"),
    ({"input": [{"role": "tool", "content": "x"}]},
     "input[0].role must be user, assistant, system or developer, got 'tool'"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": 1}]},
     "input[0].arguments must be a JSON string, got int"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id must be a string, got null"),
    ({"input": "x", "max_output_tokens": "9"}, "max_output_tokens must be an integer, got '9'"),
    ({"input": "x", "temperature": True}, "temperature must be a number, got bool"),
    ({"input": "x", "reasoning": {"effort": "huge"}},
     "reasoning.effort must be one of none, minimal, low, medium, high, xhigh, max, got 'huge'"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
     "text.format.name must be a non-empty string, got null"),
    ({"input": "x", "tools": {"type": "function"}}, "tools must be an array, got dict"),
])
def test_wrong_types_name_the_field(body, message):
    assert rejected(**body).message == message


def test_the_relay_request_translates_only_when_a_provider_needs_it():
    body = {**codex_request(), "previous_response_id": "resp_prev"}
    raw = orjson.dumps(body)
    request, context = relay_request(raw, body)
    assert (request.api, request.raw, request.stream, request.include_usage) == ("responses", raw, True, True)
    assert context.tools["multi_agent_v1__wait_agent"] == ToolRef("wait_agent", "multi_agent_v1")
    assert context.echo["previous_response_id"] == "resp_prev"
    with pytest.raises(BadRequest) as caught:
        request.canonical
    assert caught.value.code == "previous_response_id_unsupported"
    plain, _ = relay_request(b"{}", codex_request())
    assert plain.canonical == responses_request(codex_request())[0]


# ----- hostile input

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
KEYS = st.sampled_from(["type", "role", "content", "text", "call_id", "name", "arguments", "output", "summary",
                        "image_url", "namespace", "tools", "input", "format", "mode", "parameters"])
VALUES = st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "custom_tool_call",
                          "input_text", "input_image", "user", "assistant", "developer", "namespace", "function",
                          "custom", "allowed_tools", "summary_text", "json_schema", "grammar"]) | JSON
ITEM = st.dictionaries(KEYS, VALUES | st.lists(st.dictionaries(KEYS, VALUES, max_size=5), max_size=3), max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "input": JSON | st.lists(ITEM, max_size=5), "tools": JSON | st.lists(ITEM, max_size=3),
    "tool_choice": JSON | ITEM, "instructions": JSON, "reasoning": JSON | ITEM, "text": JSON | ITEM,
    "max_output_tokens": JSON, "temperature": JSON, "stream": JSON, "metadata": JSON, "truncation": JSON,
}))
def test_hostile_requests_raise_only_bad_request(body):
    try:
        request, _ = responses_request({"model": "m", **body})
    except BadRequest:
        return
    orjson.dumps(request)
    roles = {message["role"] for message in request["messages"]}
    assert request["messages"] and roles <= {"system", "user", "assistant", "tool"}
