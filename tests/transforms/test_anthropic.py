"""The `anthropic` transform as pure functions: canonical ⇄ Messages, its streams, and the passthrough."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_middleware.settings import ProviderConfig
from chat_middleware.canonical import ChatRequest
from chat_middleware.errors import (
    BadRequest, UpstreamAuth, UpstreamError, UpstreamOverloaded, UpstreamRateLimited, UpstreamRejected,
    UpstreamStreamError,
)
from chat_middleware.streams import Chunks
from chat_middleware.surfaces.anthropic_render import UNSIGNED, AnthropicRenderer
from chat_middleware.surfaces.anthropic_request import messages_request
from chat_middleware.transforms.anthropic import AnthropicMessages, AnthropicPassthroughDecoder, passthrough_usage
from tests.fakes.anthropic_checks import check_body
from tests.surfaces.test_anthropic_request import claude_code_body
from tests.surfaces.test_anthropic_render import Counts, canonical_stream, render

ANTHROPIC = AnthropicMessages()
PROVIDER = ProviderConfig(name="anthropic", transform="anthropic", base_url="https://api.anthropic.com")
USER = {"role": "user", "content": "hi"}


def build(messages: list, provider: object = PROVIDER, stream: bool = False, **fields) -> dict:
    """The request the transform sends, which must pass the checks of Anthropic's API (tests/fakes)."""
    body = orjson.loads(ANTHROPIC.build({"model": "anthropic/claude", "messages": messages, **fields}, "claude",
                                        provider, stream))
    assert check_body(body) is None, check_body(body)
    return body


def sse(*events: dict) -> bytes:
    """Events as Anthropic frames them, each named by its type."""
    return b"".join(b"event: " + (e["type"] if isinstance(e["type"], str) else "odd").encode() + b"\ndata: "
                    + orjson.dumps(e) + b"\n\n" for e in events)


def anthropic_stream(stop_reason: str = "tool_use") -> bytes:
    """A stream as the Messages API sends it: thinking, text (a ping inside), a tool call in pieces."""
    return sse(
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2,
                      "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                        "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Weather "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "tool."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " there"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01",
                                                                        "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"city": "To'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": 'kyo"}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
         "usage": {"output_tokens": 15}},
        {"type": "message_stop"},
    )


def assemble(chunks: list[Chunks]) -> dict:
    """What a Chat Completions client makes of canonical chunks."""
    out: dict = {"role": None, "content": "", "reasoning": "", "calls": {}, "finish": None, "usage": None}
    for group in chunks:
        for chunk in group:
            data = chunk.data
            if data.get("usage"):
                out["usage"] = data["usage"]
            for choice in data["choices"]:
                delta = choice["delta"]
                out["role"] = out["role"] or delta.get("role")
                out["content"] += delta.get("content") or ""
                out["reasoning"] += delta.get("reasoning_content") or delta.get("reasoning") or ""
                for fragment in delta.get("tool_calls") or ():
                    call = out["calls"].setdefault(fragment["index"], {"id": None, "name": "", "arguments": ""})
                    call["id"] = call["id"] or fragment.get("id")
                    call["name"] += fragment.get("function", {}).get("name") or ""
                    call["arguments"] += fragment.get("function", {}).get("arguments") or ""
                out["finish"] = choice["finish_reason"] or out["finish"]
    out["calls"] = [out["calls"][k] for k in sorted(out["calls"])]
    return out


def decode(raw: bytes, piece: int = 0, include_usage: bool = False) -> tuple[dict, object]:
    """`raw` through a fresh decoder, whole or in pieces of `piece` bytes."""
    decoder = ANTHROPIC.decoder(include_usage)
    pieces = [raw[k:k + piece] for k in range(0, len(raw), piece)] if piece else [raw]
    chunks = [decoder.feed(p) for p in pieces]
    chunks.append(decoder.close())
    return assemble(chunks), decoder


# ----- the request


def test_system_and_developer_messages_anywhere_are_folded_into_system():
    body = build([{"role": "system", "content": "be brief"}, {"role": "developer", "content": [
        {"type": "text", "text": "use tools"}]}, USER, {"role": "system", "content": "# Environment"}])
    assert body["system"] == "be brief\n\nuse tools\n\n# Environment"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_tool_results_are_one_user_turn_right_after_the_calls():
    body = build([
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": None, "reasoning_content": "two tools", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9:00"}]},
        {"role": "user", "content": "thanks"},
    ])
    assert body["messages"] == [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": [  # no thinking block: its signature cannot be made
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "9:00"},
            {"type": "text", "text": "thanks"}]},
    ]


def test_turns_alternate_and_tool_results_come_first_in_their_turn():
    body = build([USER, {"role": "user", "content": "again"}, {"role": "assistant", "content": "a"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                  {"role": "user", "content": "before the result"},
                  {"role": "tool", "tool_call_id": "c1", "content": ""}])
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                          {"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1"},
                                     {"type": "text", "text": "before the result"}]},
    ]


def test_tool_call_ids_fit_anthropics_pattern_on_both_sides():
    body = build([USER, {"role": "assistant", "tool_calls": [
        {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sun"}])
    assert body["messages"][1]["content"][0]["id"] == body["messages"][2]["content"][0]["tool_use_id"] == \
        "functions_get_weather_0"


def test_images_become_image_blocks():
    body = build([{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}]}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


def test_generation_fields_carry_over():
    body = build([USER], stream=True, temperature=0.5, top_p=0.9, top_k=20, stop=["END", " "], user="u1",
                 max_tokens=300, seed=7, n=1, presence_penalty=0.1)
    assert {k: v for k, v in body.items() if k not in ("messages",)} == {
        "model": "claude", "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "top_k": 20,
        "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "stream": True}


@pytest.mark.parametrize("fields, provider, max_tokens", [
    ({}, PROVIDER, 4096),
    ({}, SimpleNamespace(default_max_tokens=8000), 8000),
    ({"max_tokens": 100}, PROVIDER, 100),
    ({"max_tokens": 100, "max_completion_tokens": 200}, PROVIDER, 200),
])
def test_max_tokens_is_always_sent(fields, provider, max_tokens):
    assert build([USER], provider, **fields)["max_tokens"] == max_tokens


@pytest.mark.parametrize("choice, parallel, expected", [
    (None, None, None),
    ("auto", None, {"type": "auto"}),
    ("none", False, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_tools_and_tool_choice(choice, parallel, expected):
    fields = {key: value for key, value in (("tool_choice", choice), ("parallel_tool_calls", parallel))
              if value is not None}
    body = build([USER], tools=[{"type": "function", "function": {
        "name": "f", "description": "does f", "parameters": {"type": "object", "properties": {}}}}], **fields)
    assert body["tools"] == [{"name": "f", "description": "does f",
                              "input_schema": {"type": "object", "properties": {}}}]
    assert body.get("tool_choice") == expected


@pytest.mark.parametrize("fields, thinking", [
    ({"reasoning_effort": "high", "max_tokens": 32000}, {"type": "enabled", "budget_tokens": 16000}),
    ({"reasoning_effort": "high", "max_tokens": 64000}, {"type": "enabled", "budget_tokens": 16384}),
    ({"reasoning_effort": "low"}, {"type": "enabled", "budget_tokens": 2048}),  # half of the default 4096
    ({"reasoning_effort": "minimal", "max_tokens": 2048}, {"type": "enabled", "budget_tokens": 1024}),
    ({"reasoning_effort": "minimal", "max_tokens": 2000}, None),  # no room for Anthropic's minimum
    ({"reasoning_effort": "none"}, None),
    ({"reasoning_effort": "high", "tool_choice": "required"}, None),  # Anthropic refuses forced tools with thinking
])
def test_reasoning_effort_becomes_a_thinking_budget(fields, thinking):
    body = build([USER], tools=[{"type": "function", "function": {"name": "f"}}], temperature=0.3, **fields)
    assert body.get("thinking") == thinking
    assert ("temperature" in body) is (thinking is None)  # Anthropic rejects sampling fields with thinking
    budget = thinking["budget_tokens"] if thinking else 0
    assert budget == 0 or 1024 <= budget < body["max_tokens"]


def test_a_json_schema_response_format_becomes_output_config():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = build([USER], response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in build([USER], response_format={"type": "json_object"})


@pytest.mark.parametrize("messages, fields, path", [
    ([USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{nope"}}]}],
     {}, r"messages\[1\]\.tool_calls\[0\]\.function\.arguments is not valid JSON"),
    ([USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}],
     {}, r"messages\[1\]\.tool_calls\[0\]\.function\.arguments must encode a JSON object"),
    ([{"role": "tool", "content": "x"}], {}, r"messages\[0\]\.tool_call_id"),
    ([{"role": "user", "content": [{"type": "input_audio"}]}], {}, r"messages\[0\]\.content\[0\]\.type"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///x.png"}}]}], {},
     r"messages\[0\]\.content\[0\]\.image_url\.url"),
    ([{"role": "function", "content": "x"}], {}, r"messages\[0\]\.role"),
    ([], {}, "messages"),
    ([USER], {"tools": [{"type": "custom", "custom": {}}]}, r"tools\[0\]"),
    ([USER], {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}, "tool_choice"),
    ([USER], {"reasoning_effort": "extreme"}, "reasoning_effort"),
    ([USER], {"max_tokens": 0}, "max_tokens"),
    ([USER], {"temperature": "warm"}, "temperature"),
    ([USER], {"stop": 5}, "stop"),
    ([USER], {"response_format": {"type": "yaml"}}, "response_format"),
])
def test_a_request_anthropic_cannot_take_is_a_400_naming_the_field(messages, fields, path):
    with pytest.raises(BadRequest, match=path):
        build(messages, **fields)


def test_headers_carry_the_key_as_anthropic_wants_it():
    assert ANTHROPIC.headers("sk-ant-1") == {"x-api-key": "sk-ant-1", "anthropic-version": "2023-06-01"}
    assert ANTHROPIC.headers(None) == {"anthropic-version": "2023-06-01"}
    assert (ANTHROPIC.name, ANTHROPIC.path) == ("anthropic", "/v1/messages")


def test_a_tool_round_trip_through_both_directions_keeps_the_pairing():
    """Claude Code's request → canonical → an Anthropic upstream: each tool_use is answered by the next turn."""
    body = orjson.loads(ANTHROPIC.build(messages_request(claude_code_body()), "claude", PROVIDER, True))
    assert check_body(body) is None
    assert body["system"] == ("x-anthropic-billing-header: cc_version=2.1.332\nYou are Claude Code.\nBe brief."
                              "\n\n# Environment\ncwd: /w\n\n# Environment\ncwd: /w")
    assert body["messages"] == [
        {"role": "user", "content": "<system-reminder>r</system-reminder>\nlist the files"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt\nb.txt"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"command": "cat c.txt"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_02", "content": "Error: cat: c.txt: No such file"},
            {"type": "text", "text": "never mind"}]},
    ]
    assert [tool["name"] for tool in body["tools"]] == ["Bash", "Read", "DeferredToolPlaceholder"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16000}  # adaptive + effort high → high
    assert body["metadata"]["user_id"] == claude_code_body()["metadata"]["user_id"]


CANONICAL = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(
        ["", "x", "user", "assistant", "tool", "system", "text", "image_url", "function", "data:image/png;base64,AA",
         "https://h/i.png", "{}", "{\"a\":1}", "call_1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["role", "content", "type", "text", "image_url", "url", "tool_calls", "id", "function", "name",
         "arguments", "tool_call_id", "parameters"]), inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool", "system"])},
                                               optional={"content": CANONICAL, "tool_calls": CANONICAL,
                                                         "tool_call_id": CANONICAL}), max_size=4) | CANONICAL,
       tools=CANONICAL, choice=CANONICAL, effort=CANONICAL)
def test_hostile_canonical_bodies_are_only_ever_a_400(messages, tools, choice, effort):
    body = {"model": "m", "messages": messages, "tools": tools, "tool_choice": choice, "reasoning_effort": effort}
    try:
        ANTHROPIC.build(body, "m", PROVIDER, False)
    except BadRequest:
        pass


# ----- a whole answer


def message(content: list, stop_reason: str = "end_turn", **usage) -> bytes:
    return orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                         "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                         "usage": {"input_tokens": 10, "output_tokens": 4, **usage}})


def test_a_message_becomes_a_chat_completion():
    completion = ANTHROPIC.completion(message([
        {"type": "thinking", "thinking": "Use the tool.", "signature": "EqQB"},
        {"type": "text", "text": "The answer, ", "citations": None},
        {"type": "text", "text": "cited."},
        {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": "x"}},
    ], "tool_use", cache_read_input_tokens=30, cache_creation_input_tokens=5))
    assert completion["object"] == "chat.completion" and completion["model"] == "claude-x"
    choice = completion["choices"][0]
    assert choice["message"] == {
        "role": "assistant", "content": "The answer, cited.", "reasoning_content": "Use the tool.",
        "tool_calls": [{"id": "toolu_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]}
    assert choice["finish_reason"] == "tool_calls"
    assert completion["usage"] == {"prompt_tokens": 45, "completion_tokens": 4, "total_tokens": 49,
                                   "prompt_tokens_details": {"cached_tokens": 30}}


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("model_context_window_exceeded", "length"),
])
def test_stop_reasons(stop_reason, finish):
    completion = ANTHROPIC.completion(message([{"type": "text", "text": "x"}], stop_reason))
    assert completion["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("kind, error_class, status, retriable, message", [
    ("invalid_request_error", UpstreamRejected, 400, False, "it went wrong"),
    ("authentication_error", UpstreamAuth, 502, False, "refused chatd's credentials"),  # never echoed
    ("rate_limit_error", UpstreamRateLimited, 429, True, "it went wrong"),
    ("api_error", UpstreamError, 502, False, "it went wrong"),
    ("overloaded_error", UpstreamOverloaded, 529, True, "it went wrong"),
    ("brand_new_error", UpstreamError, 502, False, "it went wrong"),
])
def test_an_error_body_is_the_matching_error(kind, error_class, status, retriable, message):
    raw = orjson.dumps({"type": "error", "error": {"type": kind, "message": "it went wrong"},
                        "request_id": "req_1"})
    with pytest.raises(error_class, match=message) as raised:
        ANTHROPIC.completion(raw)
    assert (type(raised.value), raised.value.status, raised.value.retriable) == (error_class, status, retriable)


@pytest.mark.parametrize("raw, match", [
    (b"<html>", "not JSON"), (b"[]", "not a JSON object"), (b'{"type": "message"}', "not an Anthropic Message"),
    (b'{"choices": []}', "not an Anthropic Message"),
])
def test_a_body_that_is_not_a_message_is_an_upstream_error(raw, match):
    with pytest.raises(UpstreamError, match=match):
        ANTHROPIC.completion(raw)


# ----- streams


@pytest.mark.parametrize("piece", [0, 1, 7, 64])
def test_a_stream_becomes_canonical_chunks_however_it_is_split(piece):
    result, decoder = decode(anthropic_stream(), piece)
    assert result == {"role": "assistant", "content": "Hello there", "reasoning": "Weather tool.",
                      "calls": [{"id": "toolu_01", "name": "get_weather", "arguments": '{"city": "Tokyo"}'}],
                      "finish": "tool_calls", "usage": None}
    assert decoder.done and decoder.started and decoder.failure is None
    assert (decoder.prompt_tokens, decoder.completion_tokens) == (32, 15)


def test_usage_is_a_last_chunk_when_asked_for():
    result, _ = decode(anthropic_stream("end_turn"), include_usage=True)
    assert result["usage"] == {"prompt_tokens": 32, "completion_tokens": 15, "total_tokens": 47,
                               "prompt_tokens_details": {"cached_tokens": 5}}
    assert result["finish"] == "stop"


def test_the_answer_has_begun_only_with_content():
    raw = anthropic_stream()
    first_block = raw.index(b"event: content_block_delta")
    decoder = ANTHROPIC.decoder(False)
    head = decoder.feed(raw[:first_block])  # message_start and the thinking block's start
    assert len(head) == 1 and not decoder.started
    decoder.feed(raw[first_block:])
    assert decoder.started


@pytest.mark.parametrize("kind, error_class, retriable", [
    ("overloaded_error", UpstreamOverloaded, True),
    ("rate_limit_error", UpstreamRateLimited, True),
    ("api_error", UpstreamError, False),
    ("something_else", UpstreamStreamError, False),
])
def test_an_error_event_is_a_failure_after_the_chunks_before_it(kind, error_class, retriable):
    raw = anthropic_stream()
    cut = raw.index(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}")
    error = sse({"type": "error", "error": {"type": kind, "message": "Overloaded"}})
    decoder = ANTHROPIC.decoder(False)
    chunks = decoder.feed(raw[:cut] + error + raw[cut:])
    assert assemble([chunks])["content"] == "Hello there"
    assert type(decoder.failure) is error_class and decoder.failure.retriable is retriable
    with pytest.raises(error_class):
        decoder.close()


def test_a_stream_cut_before_message_stop_is_an_error():
    raw = anthropic_stream()
    decoder = ANTHROPIC.decoder(False)
    decoder.feed(raw[:raw.index(b"event: message_stop")])
    with pytest.raises(UpstreamStreamError, match="message_stop"):
        decoder.close()


def test_an_event_that_is_not_json_is_a_failure():
    decoder = ANTHROPIC.decoder(False)
    decoder.feed(b"event: message_start\ndata: {oops\n\n")
    assert isinstance(decoder.failure, UpstreamStreamError)


def test_a_tool_input_given_whole_at_its_start_is_one_arguments_fragment():
    raw = sse({"type": "message_start", "message": {"model": "k", "usage": {"input_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {
                  "type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}},
              {"type": "content_block_stop", "index": 0},
              {"type": "brand_new_event", "stuff": 1},
              {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
              {"type": "message_stop"})
    result, _ = decode(raw)
    assert result["calls"] == [{"id": "t1", "name": "f", "arguments": '{"a":[1,2]}'}]


def test_a_rendered_stream_decodes_back_to_the_same_content():
    """canonical → the Anthropic surface's events → this decoder → canonical: nothing lost but the role chunk."""
    original = assemble(canonical_stream())
    result, decoder = decode(render(AnthropicRenderer("smart"), canonical_stream(), Counts(40, 20)), piece=13)
    assert {k: result[k] for k in ("content", "reasoning", "calls", "finish")} == {
        k: original[k] for k in ("content", "reasoning", "calls", "finish")}
    assert (decoder.prompt_tokens, decoder.completion_tokens) == (40, 20)


EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                              "message_delta", "message_stop", "ping", "error"]) | CANONICAL},
    optional={"index": st.integers(-1, 3) | CANONICAL, "message": CANONICAL, "usage": CANONICAL,
              "content_block": st.fixed_dictionaries({"type": st.sampled_from(["text", "thinking", "tool_use"])},
                                                     optional={"text": CANONICAL, "thinking": CANONICAL,
                                                               "input": CANONICAL, "id": CANONICAL}),
              "delta": st.fixed_dictionaries({"type": st.sampled_from(["text_delta", "thinking_delta",
                                                                       "input_json_delta"]) | CANONICAL},
                                             optional={"text": CANONICAL, "partial_json": CANONICAL,
                                                       "stop_reason": CANONICAL}),
              "error": CANONICAL},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(EVENT, max_size=8), passthrough=st.booleans())
def test_hostile_streams_are_only_ever_an_upstream_error(stream, passthrough):
    decoder = AnthropicPassthroughDecoder() if passthrough else ANTHROPIC.decoder(True)
    for chunk in decoder.feed(sse(*stream)):
        chunk.data  # every chunk handed on is JSON
    try:
        decoder.close()
    except UpstreamError:
        pass


# ----- same-kind passthrough


def client_request(body: dict) -> ChatRequest:
    raw = orjson.dumps(body)
    return ChatRequest("anthropic", raw, orjson.loads(raw), stream=body.get("stream") is True,
                       translate=messages_request)


def test_an_anthropic_client_is_passed_through_with_only_the_model_rewritten():
    passage = ANTHROPIC.passages(PROVIDER)["anthropic"]
    assert (passage.api, passage.path, passage.forward) == ("anthropic", "/v1/messages",
                                                            ("anthropic-version", "anthropic-beta"))
    body = claude_code_body()
    body["messages"][2]["content"][0]["signature"] = "EqQBCkgIBBABGAIqQ"  # Anthropic's own thinking
    request = client_request(body)
    assert passage.build(request, "claude-opus-4") == request.raw.replace(b'"model":"smart"',
                                                                          b'"model":"claude-opus-4"')


def test_thinking_chatd_made_is_taken_out_before_anthropic_sees_it():
    body = claude_code_body()  # its first assistant turn came from a translated provider
    assert body["messages"][2]["content"][0]["signature"] == UNSIGNED
    body["messages"].insert(3, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "only this", "signature": UNSIGNED}]})
    sent = orjson.loads(ANTHROPIC.passages(PROVIDER)["anthropic"].build(client_request(body), "claude"))
    expected = claude_code_body()
    del expected["messages"][2]["content"][0]  # a turn of nothing else is gone as a whole
    assert sent == {**expected, "model": "claude"}


def test_a_passed_through_answer_is_read_for_usage_and_errors_only():
    passage = ANTHROPIC.passages(PROVIDER)["anthropic"]
    assert passage.usage(message([{"type": "text", "text": "x"}])) == (10, 4)
    assert isinstance(passage.decoder(True), AnthropicPassthroughDecoder)


def forward(raw: bytes, cuts: list[int]) -> tuple[list[Chunks], AnthropicPassthroughDecoder]:
    decoder = AnthropicPassthroughDecoder()
    edges = [0, *sorted(set(cuts)), len(raw)]
    chunks = [decoder.feed(raw[a:b]) for a, b in zip(edges, edges[1:])]
    chunks.append(decoder.close())
    return chunks, decoder


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(anthropic_stream())), max_size=12))
def test_passthrough_forwards_the_bytes_as_they_came_in_whole_events(cuts):
    raw = anthropic_stream()
    chunks, decoder = forward(raw, cuts)
    assert b"".join(c.sse for c in chunks if len(c)) == raw
    assert all(c.sse.endswith(b"\n\n") for c in chunks if len(c))
    assert [chunk.data["type"] for c in chunks for chunk in c] == [line[7:].decode() for line in raw.split(b"\n")
                                                          if line.startswith(b"event: ")]
    assert decoder.done and decoder.started
    assert (decoder.prompt_tokens, decoder.completion_tokens) == (32, 15)


def test_passthrough_starts_at_the_first_content_not_at_an_empty_block():
    """A block that only opened can still be taken back: a failure then may fall back."""
    raw = anthropic_stream()
    decoder = AnthropicPassthroughDecoder()
    delta = raw.index(b"event: content_block_delta")
    decoder.feed(raw[:delta])
    assert not decoder.started and decoder.prompt_tokens == 32
    decoder.feed(raw[delta:][:200])
    assert decoder.started


def test_passthrough_keeps_an_error_event_back_as_the_failure():
    head = anthropic_stream()[:anthropic_stream().index(b"event: content_block_start")]
    error = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    decoder = AnthropicPassthroughDecoder()
    chunks = decoder.feed(head + error + sse({"type": "ping"}))
    assert chunks.sse == head  # neither the error nor what follows is forwarded
    assert decoder.failure.retriable and not decoder.started
    with pytest.raises(UpstreamError, match="Overloaded"):
        decoder.close()


def test_passthrough_ends_at_message_stop():
    raw = anthropic_stream() + sse({"type": "ping"})
    chunks, decoder = forward(raw, [])
    assert b"".join(c.sse for c in chunks if len(c)) == anthropic_stream()


def test_passthrough_of_a_stream_cut_short_is_an_error():
    raw = anthropic_stream()
    with pytest.raises(UpstreamStreamError, match="message_stop"):
        forward(raw[:raw.index(b"event: message_delta") + 30], [])


def test_passthrough_completes_a_last_event_left_unterminated():
    raw = anthropic_stream()[:-1]  # message_stop without its blank line
    chunks, decoder = forward(raw, [])
    assert decoder.done and b"".join(c.sse for c in chunks if len(c)) == raw + b"\n"


def test_passthrough_forwards_crlf_framing_untouched():
    raw = anthropic_stream().replace(b"\n", b"\r\n")
    chunks, decoder = forward(raw, [len(raw) // 3, len(raw) // 2])
    assert b"".join(c.sse for c in chunks if len(c)) == raw and decoder.done
    assert decoder.completion_tokens == 15


def test_passthrough_usage_of_a_whole_answer():
    assert passthrough_usage(message([{"type": "text", "text": "x"}], cache_read_input_tokens=7)) == (17, 4)
    with pytest.raises(UpstreamRateLimited):
        passthrough_usage(orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}))
    with pytest.raises(UpstreamError, match="not JSON"):
        passthrough_usage(b"<html>")
