"""The Anthropic surface's parse side as pure functions: Messages requests → canonical bodies."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_middleware.errors import BadRequest
from chat_middleware.surfaces.anthropic_request import count_tokens_estimate, messages_request

USER_ID = orjson.dumps({"device_id": "d1", "account_uuid": "", "session_id": "s1"}).decode()
EPHEMERAL = {"type": "ephemeral"}
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}


def request(messages: list, **fields) -> dict:
    return messages_request({"model": "smart", "max_tokens": 1024, "messages": messages, **fields})


def claude_code_body() -> dict:
    """A request shaped as Claude Code 2.1 sends it (PROTOCOLS §9.7), after one Bash call."""
    return {
        "model": "smart",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": EPHEMERAL},
            {"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>r</system-reminder>"},
                                         {"type": "text", "text": "list the files", "cache_control": EPHEMERAL}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /w", "cache_control": EPHEMERAL}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should run ls.", "signature": "chatd-unsigned"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt\nb.txt", "is_error": False,
                 "cache_control": EPHEMERAL},
            ]},
            {"role": "system", "content": "# Environment\ncwd: /w"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"command": "cat c.txt"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": True, "cache_control": EPHEMERAL,
                 "content": [{"type": "text", "text": "cat: c.txt: No such file"}]},
                {"type": "text", "text": "never mind"},
            ]},
        ],
        "tools": [
            {"name": "Bash", "description": "Run a command", "input_schema": SCHEMA},
            {"name": "Read", "description": "Read a file", "input_schema": SCHEMA, "cache_control": EPHEMERAL},
            {"name": "DeferredToolPlaceholder", "description": "later", "input_schema": {"type": "object"},
             "defer_loading": True},
        ],
        "metadata": {"user_id": USER_ID},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }


def test_a_claude_code_request_translates_cleanly():
    bash = {"type": "function", "function": {"name": "Bash", "description": "Run a command", "parameters": SCHEMA}}
    assert messages_request(claude_code_body()) == {
        "model": "smart",
        "max_tokens": 32000,
        "messages": [
            {"role": "system", "content": "x-anthropic-billing-header: cc_version=2.1.332\nYou are Claude Code.\n"
                                          "Be brief."},
            {"role": "user", "content": "<system-reminder>r</system-reminder>\nlist the files"},
            {"role": "system", "content": "# Environment\ncwd: /w"},
            {"role": "assistant", "content": "Listing.", "reasoning_content": "I should run ls.",
             "tool_calls": [{"id": "toolu_01", "type": "function",
                             "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "a.txt\nb.txt"},
            {"role": "system", "content": "# Environment\ncwd: /w"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "toolu_02", "type": "function",
                             "function": {"name": "Bash", "arguments": '{"command":"cat c.txt"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_02", "content": "Error: cat: c.txt: No such file"},
            {"role": "user", "content": "never mind"},
        ],
        "tools": [
            bash,
            {"type": "function", "function": {"name": "Read", "description": "Read a file", "parameters": SCHEMA}},
            {"type": "function", "function": {"name": "DeferredToolPlaceholder", "description": "later",
                                              "parameters": {"type": "object"}}},
        ],
        "user": USER_ID,
        "reasoning_effort": "high",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_plain_turns_stay_as_they_are():
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "bye"}]
    body = request(messages, system="be kind")
    assert body["messages"] == [{"role": "system", "content": "be kind"}, *messages]
    assert body["stream"] is False and "stream_options" not in body


def test_consecutive_turns_of_one_role_are_one_turn():
    body = request([
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "and"},
                                          {"type": "tool_use", "id": "t2", "name": "g", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "text", "text": "results:"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                                     {"type": "tool_result", "tool_use_id": "t2", "content": "two"}]},
    ])
    assert body["messages"] == [
        {"role": "user", "content": "first\nsecond"},
        {"role": "assistant", "content": "and", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "t2", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "one"},  # the results answer the calls at once…
        {"role": "tool", "tool_call_id": "t2", "content": "two"},
        {"role": "user", "content": "results:"},  # …and the turn's text follows them
    ]


def test_images_become_image_url_parts_in_order():
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    body = request([{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": png, "cache_control": EPHEMERAL},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}},
    ]}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}},
    ]


def test_an_image_in_a_tool_result_joins_the_user_turn_after_the_tool_message():
    body = request([
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "shot.png"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]},
    ])
    assert body["messages"][1:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "shot.png"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]


def test_an_error_result_says_so():
    body = request([
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True}]},
    ])
    assert body["messages"][1] == {"role": "tool", "tool_call_id": "t1", "content": "Error"}


def test_what_only_anthropic_understands_is_dropped_from_history():
    body = request([
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "found it"},
        ]},
    ])
    assert body["messages"][1] == {"role": "assistant", "content": "found it"}


def test_a_text_document_is_carried_as_its_text():
    body = request([{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "the doc"}},
        {"type": "text", "text": "summarise"}]}])
    assert body["messages"][0]["content"] == "the doc\nsummarise"


def test_a_pdf_document_is_a_400_naming_the_block():
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}
    with pytest.raises(BadRequest, match=r"messages\[2\]\.content\[0\]: a document block \(source 'base64'\)"):
        request([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                 {"role": "user", "content": [pdf]}])


def test_server_tools_are_dropped_and_a_choice_without_tools_with_them():
    body = request([{"role": "user", "content": "hi"}],
                   tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                          {"type": "bash_20250124", "name": "bash"}],
                   tool_choice={"type": "any"})
    assert "tools" not in body and "tool_choice" not in body


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
])
def test_tool_choice(choice, expected):
    body = request([{"role": "user", "content": "hi"}], tool_choice=choice,
                   tools=[{"type": "custom", "name": "Bash", "input_schema": SCHEMA, "strict": True}])
    assert body["tool_choice"] == expected
    assert body["tools"] == [{"type": "function", "function": {"name": "Bash", "parameters": SCHEMA}}]
    assert "parallel_tool_calls" not in body


def test_disable_parallel_tool_use_turns_parallel_calls_off():
    body = request([{"role": "user", "content": "hi"}], tools=[{"name": "f", "input_schema": SCHEMA}],
                   tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize("thinking, config, effort", [
    ({"type": "enabled", "budget_tokens": 16000}, None, "high"),
    ({"type": "enabled", "budget_tokens": 10000}, None, "high"),
    ({"type": "enabled", "budget_tokens": 5000}, None, "medium"),
    ({"type": "enabled", "budget_tokens": 2000}, None, "low"),
    ({"type": "enabled", "budget_tokens": 1024}, None, "minimal"),
    ({"type": "enabled", "budget_tokens": 1024}, {"effort": "high"}, "minimal"),  # the budget says how much
    ({"type": "disabled"}, {"effort": "high"}, "none"),
    ({"type": "adaptive"}, {"effort": "medium"}, "medium"),
    ({"type": "adaptive", "display": "summarized"}, None, None),
    (None, {"effort": "max"}, "max"),
    (None, {"effort": "some-future-level"}, None),
])
def test_thinking_becomes_reasoning_effort(thinking, config, effort):
    fields = {key: value for key, value in (("thinking", thinking), ("output_config", config)) if value}
    assert request([{"role": "user", "content": "hi"}], **fields).get("reasoning_effort") == effort


def test_sampling_fields_carry_over():
    body = request([{"role": "user", "content": "hi"}], temperature=0.2, top_p=0.9, top_k=40,
                   stop_sequences=["END", "STOP"], metadata={"user_id": "u-1"})
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "stop", "user")} == {
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop": ["END", "STOP"], "user": "u-1"}


def test_a_json_schema_output_format_becomes_response_format():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = request([{"role": "user", "content": "hi"}], output_config={"format": {"type": "json_schema",
                                                                                  "schema": schema}})
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def test_fields_without_a_counterpart_and_unknown_fields_are_accepted_and_dropped():
    body = request([{"role": "user", "content": "hi"}], cache_control=EPHEMERAL, service_tier="auto",
                   container="c1", context_management={"edits": []}, inference_geo="us", brand_new_field=[1])
    assert set(body) == {"model", "max_tokens", "messages", "stream"}


def test_max_tokens_is_required_as_anthropic_requires_it():
    with pytest.raises(BadRequest, match="max_tokens: Field required"):
        messages_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("fields, path", [
    ({"model": ""}, "model"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, r"messages\[0\]\.role"),
    ({"messages": [{"role": "user"}]}, r"messages\[0\]\.content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, r"messages\[0\]\.content\[0\]\.text"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"text": "x"}]}]},
     r"messages\[1\]\.content\[0\]\.type"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]},
     r"messages\[0\]\.content\[0\]: tool_use blocks belong in an assistant turn"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, r"messages\[0\]\.content\[0\]\.type"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     r"messages\[0\]\.content\[0\]\.source\.type"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "no"}]}]},
     r"messages\[0\]\.content\[0\]\.is_error"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}]}]},
     r"messages\[0\]\.content\[0\]\.input"),
    ({"system": [{"type": "image"}]}, r"system\[0\]\.type"),
    ({"tools": [{"name": "f"}]}, r"tools\[0\]\.input_schema"),
    ({"tools": {"name": "f"}}, "tools"),
    ({"tool_choice": {"type": "sometimes"}}, r"tool_choice\.type"),
    ({"thinking": {"type": "enabled"}}, r"thinking\.budget_tokens"),
    ({"thinking": "on"}, "thinking"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_k": 1.5}, "top_k"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"metadata": {"user_id": 7}}, r"metadata\.user_id"),
    ({"stream": "yes"}, "stream"),
    ({"output_config": {"effort": 3}}, r"output_config\.effort"),
])
def test_a_field_of_the_wrong_type_is_a_400_naming_it(fields, path):
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(BadRequest, match=path):
        messages_request(body)


def test_the_token_estimate_counts_characters_over_four_rounded_up():
    body = {"system": "abcd",  # 4
            "messages": [{"role": "user", "content": "hello"},  # 4 + 5
                         {"role": "assistant", "content": [  # 9
                             {"type": "thinking", "thinking": "hm", "signature": "s"},  # 2
                             {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},  # 1 + 7
                         {"role": "user", "content": [  # 4
                             {"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}],  # 2
            "tools": [{"name": "f", "description": "d", "input_schema": {}}]}  # 1 + 1 + 2
    chars = 4 + 4 + 5 + 9 + 2 + 1 + 7 + 4 + 2 + 1 + 1 + 2
    assert count_tokens_estimate(body) == -(-chars // 4) == 11


def test_the_token_estimate_never_fails():
    assert count_tokens_estimate({"messages": "x", "system": 5, "tools": [None, {"input_schema": object()}]}) == 0


# ----- hostile input

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.sampled_from(
        ["", "text", "image", "tool_use", "tool_result", "thinking", "document", "user", "assistant", "system",
         "base64", "url", "auto", "any", "tool", "enabled", "adaptive", "custom"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["type", "role", "content", "text", "source", "id", "name", "input", "tool_use_id", "is_error", "thinking",
         "data", "media_type", "url", "input_schema", "description", "budget_tokens", "effort", "format"]),
        inner, max_size=5),
    max_leaves=20,
)


BLOCK_KEYS = ("text", "source", "id", "name", "input", "tool_use_id", "content", "is_error", "thinking",
              "signature", "data", "cache_control")
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking",
                              "document", "search_result", "server_tool_use", "web_search_tool_result"]) | JSON},
    optional={key: JSON for key in BLOCK_KEYS} | {"source": st.fixed_dictionaries(
        {"type": st.sampled_from(["base64", "url", "text", "file"])},
        optional={"media_type": JSON, "data": JSON, "url": JSON})},
)
CONTENT = st.text(max_size=5) | st.lists(BLOCK | JSON, max_size=4) | JSON
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]) | JSON},
                                          optional={"content": CONTENT}), max_size=5) | JSON
TOOLS = st.lists(st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=3) | JSON, "input_schema": st.just({"type": "object"}) | JSON, "type": JSON,
    "description": JSON}), max_size=3) | JSON


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=MESSAGES, tools=TOOLS, system=CONTENT, choice=JSON, thinking=JSON, config=JSON)
def test_hostile_input_is_only_ever_a_400(messages, tools, system, choice, thinking, config):
    body = {"model": "m", "max_tokens": 100, "messages": messages, "tools": tools, "system": system,
            "tool_choice": choice, "thinking": thinking, "output_config": config}
    try:
        out = messages_request(body)
    except BadRequest:
        return
    finally:
        count_tokens_estimate(body)  # the estimate takes anything
    orjson.dumps(out)  # whatever passes can be sent on


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                                "content": st.lists(BLOCK, max_size=4) | st.text(max_size=3)}),
                         min_size=1, max_size=5))
def test_hostile_blocks_are_only_ever_a_400(messages):
    try:
        out = messages_request({"model": "m", "max_tokens": 1, "messages": messages})
    except BadRequest:
        return
    orjson.dumps(out)
