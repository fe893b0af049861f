"""The Anthropic Messages surface end to end: the official anthropic SDK against chatd under hypercorn,
routed to every kind of upstream — translated for Chat Completions and Ollama upstreams, passed through
byte for byte to an `anthropic` provider (the fake Anthropic server).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anthropic
import httpx
import ollama
import openai
import orjson
import pytest

from tests.conftest import KEYS
from tests.fakes import Reply
from tests.test_e2e_streaming import ROUTES as CHAT_ROUTES
from tests.test_observability import access_lines, wait_for

ROUTES = [*CHAT_ROUTES, ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5")]
HI = [{"role": "user", "content": "Why is the sky blue?"}]
BASH = [{"name": "Bash", "description": "Run a command",
         "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]


@pytest.fixture
def client(closing) -> Callable[..., anthropic.Anthropic]:
    """`client(server)`: the anthropic SDK with chatd's /v1/chat as its base URL, closed after the test."""
    return lambda server: closing(anthropic.Anthropic(base_url=server.url + "/v1/chat", api_key="unused", max_retries=0))


def post(server, body: dict | bytes, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(server.url + "/v1/chat/v1/messages?beta=true", content=content, timeout=10,
                      headers={"anthropic-version": "2023-06-01", "content-type": "application/json",
                               **(headers or {})})


def sse(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event name, data) of each event; every event must have its `event:` line."""
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][7:], orjson.loads(lines[1][6:])))
    return events


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert not any(key in response.text for key in KEYS.values())
    return body["error"]["message"]


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_create_for_every_transform(gateway, upstreams, client, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="The sky is blue.", prompt_tokens=9, completion_tokens=4)
    message = client(gateway).messages.create(model=model, max_tokens=256, messages=HI, system="Be brief.")
    assert message.content[0].type == "text" and message.content[0].text == "The sky is blue."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 4
    sent = upstreams[fake].requests[-1]
    if fake == "anthropic":
        assert sent.path == "/v1/messages" and sent.json["system"] == "Be brief."
    elif not fake.startswith("ollama"):
        assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent.json["max_tokens"] == 256


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_stream_for_every_transform(gateway, upstreams, client, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three")
    with client(gateway).messages.stream(model=model, max_tokens=256, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three" and final.content[-1].text == "one two three"
    assert final.stop_reason == "end_turn"


def test_the_stream_is_anthropics_exact_event_sequence(gateway):
    events = [name for name, _ in sse(post(gateway, {"model": "qwen3:8b", "max_tokens": 64, "messages": HI,
                                                      "stream": True}))]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    assert events[1] == "content_block_start" and events[-3] == "content_block_stop"
    assert set(events[2:-3]) <= {"content_block_delta", "ping"}


def test_passthrough_keeps_the_body_the_version_and_the_betas_and_sends_the_providers_key(gateway, anthropic_api):
    body = (b'{"model": "anthropic/claude-sonnet-4-5", "max_tokens": 64, "unknown_field": {"keep": true},\n'
            b' "messages": [{"role": "user", "content": [{"type": "text", "text": "hi",'
            b' "cache_control": {"type": "ephemeral"}}]}]}')
    response = post(gateway, body, {"anthropic-beta": "interleaved-thinking-2025-05-14",
                                    "x-api-key": "the-clients-own-key", "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    sent = anthropic_api.requests[-1]
    assert sent.body == body.replace(b'"anthropic/claude-sonnet-4-5"', b'"claude-sonnet-4-5"')
    assert sent.headers["x-api-key"] == KEYS["ANTHROPIC_API_KEY"] and "authorization" not in sent.headers
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert response.json()["model"] == "claude-sonnet-4-5"  # the upstream's own answer, untouched


def test_thinking_round_trips_with_its_signature_through_passthrough(gateway, anthropic_api, client):
    anthropic_api.replies["claude-sonnet-4-5"] = Reply(text="Answer", thinking="Let me think")
    sdk = client(gateway)
    first = sdk.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=2048, messages=HI,
                                thinking={"type": "enabled", "budget_tokens": 1024})
    thinking = next(block for block in first.content if block.type == "thinking")
    assert thinking.thinking == "Let me think" and thinking.signature
    again = sdk.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=2048,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[*HI, {"role": "assistant", "content": first.model_dump()["content"]},
                                          {"role": "user", "content": "And at night?"}])
    assert again.content[-1].text == "Answer"  # the fake checks the signature came back unmodified


def test_reasoning_of_a_translated_upstream_is_a_thinking_block_that_travels_back(gateway, kimi, client):
    kimi.replies["kimi-for-coding"] = Reply(text="", thinking="I should list", tool_calls=[
        {"name": "Bash", "arguments": {"command": "ls"}}])
    sdk = client(gateway)
    first = sdk.messages.create(model="kimi/kimi-for-coding", max_tokens=1024, messages=HI, tools=BASH)
    kinds = [block.type for block in first.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds and first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    kimi.replies["kimi-for-coding"] = Reply(text="Done")
    second = sdk.messages.create(model="kimi/kimi-for-coding", max_tokens=1024, tools=BASH, messages=[
        *HI, {"role": "assistant", "content": first.model_dump()["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "a.txt"}]}])
    assert second.content[0].text == "Done"  # Kimi refuses a tool-call turn without its reasoning_content
    sent = kimi.requests[-1].json["messages"]
    assistant = next(m for m in sent if m["role"] == "assistant")
    assert assistant["reasoning_content"] == "I should list" and assistant["tool_calls"][0]["id"] == call.id
    assert next(m for m in sent if m["role"] == "tool") == {"role": "tool", "tool_call_id": call.id,
                                                            "content": "a.txt"}


@pytest.mark.parametrize("model, fake, upstream_model", [CHAT_ROUTES[0], CHAT_ROUTES[2]])
def test_a_streamed_tool_call_reaches_the_client(gateway, upstreams, client, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="", tool_calls=[{"name": "Bash",
                                                                          "arguments": {"command": "ls -l"}}])
    with client(gateway).messages.stream(model=model, max_tokens=256, messages=HI, tools=BASH) as stream:
        final = stream.get_final_message()
    [call] = [block for block in final.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("Bash", {"command": "ls -l"}) and final.stop_reason == "tool_use"


def test_count_tokens_from_an_anthropic_upstream_or_estimated(gateway, anthropic_api, client):
    sdk = client(gateway)
    counted = sdk.messages.count_tokens(model="anthropic/claude-sonnet-4-5", messages=HI)
    assert counted.input_tokens > 0 and anthropic_api.requests[-1].path == "/v1/messages/count_tokens"
    response = httpx.post(gateway.url + "/v1/chat/v1/messages/count_tokens", timeout=10,
                          json={"model": "qwen3:8b", "messages": HI})
    assert response.headers["x-chatd-estimate"] == "true" and response.json()["input_tokens"] > 0
    assert "x-chatd-estimate" not in httpx.post(gateway.url + "/v1/chat/v1/messages/count_tokens", timeout=10,
                                                json={"model": "anthropic/claude-sonnet-4-5",
                                                      "messages": HI}).headers


def test_models_in_anthropics_list_shape(gateway, client):
    listed = [model.id for model in client(gateway).models.list()]
    openai_ids = [m["id"] for m in httpx.get(gateway.url + "/v1/chat/models", timeout=10).json()["data"]]
    assert listed == openai_ids and "claude" in listed


@pytest.mark.parametrize("body, status, kind", [
    (b"{not json", 400, "invalid_request_error"),
    ({"model": "", "max_tokens": 1, "messages": HI}, 400, "invalid_request_error"),
    ({"model": "qwen3:8b", "messages": HI}, 400, "invalid_request_error"),  # max_tokens is required
    ({"model": "qwen3:8b", "max_tokens": 8, "messages": "hi"}, 400, "invalid_request_error"),
    ({"model": "ollama/no-such-model", "max_tokens": 8, "messages": HI}, 502, "api_error"),
])
def test_bad_requests_are_errors_in_anthropics_shape(gateway, body, status, kind):
    assert_anthropic_error(post(gateway, body), status, kind)


def test_a_body_over_the_limit_is_request_too_large(make_chatd):
    chatd = make_chatd(extra="max_body_bytes = 200")
    big = {"model": "qwen3:8b", "max_tokens": 8, "messages": [{"role": "user", "content": "x" * 400}]}
    assert_anthropic_error(post(chatd, big), 413, "request_too_large")


def test_an_unregistered_provider_is_not_found_error(make_chatd):
    chatd = make_chatd(environ={})
    message = assert_anthropic_error(post(chatd, {"model": "kimi/kimi-for-coding", "max_tokens": 8,
                                                  "messages": HI}), 404, "not_found_error")
    assert "not registered" in message


def test_an_overloaded_anthropic_is_529_and_worth_repeating(gateway, anthropic_api, client):
    anthropic_api.replies["claude-sonnet-4-5"] = Reply(status=529)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client(gateway).messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=8, messages=HI)
    assert overloaded.value.status_code == 529 and overloaded.value.response.headers["x-should-retry"] == "true"
    assert overloaded.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_a_failure_after_the_stream_began_is_an_error_event(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four", fail_after=2)
    events = sse(post(gateway, {"model": model, "max_tokens": 64, "messages": HI, "stream": True}))
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] in ("api_error", "overloaded_error")
    assert any(name == "content_block_delta" for name, _ in events)


def test_a_passthrough_stream_that_fails_before_content_falls_back(gateway, anthropic_api, ollama):
    anthropic_api.replies["claude-sonnet-4-5"] = Reply(fail_after=0)
    ollama.replies["qwen3:8b"] = Reply(text="from ollama")
    response = post(gateway, {"model": "claude", "max_tokens": 64, "messages": HI, "stream": True})
    assert response.headers["x-chatd-provider"] == "ollama" and response.headers["x-chatd-attempts"] == "2"
    events = sse(response)
    assert [name for name, _ in events].count("message_start") == 1 and events[-1][0] == "message_stop"
    assert "".join(data["delta"].get("text", "") for name, data in events
                   if name == "content_block_delta") == "from ollama"


def test_a_silent_upstream_mid_stream_gets_pings(gateway, ollama, monkeypatch):
    monkeypatch.setattr("chat_middleware.guard.KEEPALIVE", 0.2)
    ollama.replies["qwen3:8b"] = Reply(text="slow answer", delay_chunks=0.8)
    events = sse(post(gateway, {"model": "qwen3:8b", "max_tokens": 64, "messages": HI, "stream": True}))
    names = [name for name, _ in events]
    first, last = names.index("content_block_delta"), len(names) - 1 - names[::-1].index("content_block_delta")
    assert "ping" in names[first:last] and names[-1] == "message_stop"
    assert "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta") == "slow answer"


def test_claude_codes_body_reaches_ollama_translated(gateway, ollama):
    body = {"model": "qwen3:8b", "max_tokens": 32000, "stream": True,
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
                       {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "<reminder>"},
                                                      {"type": "text", "text": "hi"}]},
                         {"role": "system", "content": [{"type": "text", "text": "# Environment"}]}],
            "tools": [*BASH, {"name": "DeferredToolPlaceholder", "input_schema": {"type": "object"},
                              "defer_loading": True}],
            "metadata": {"user_id": '{"device_id":"d","session_id":"s"}'},
            "thinking": {"type": "adaptive", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "high"}}
    events = sse(post(gateway, body, {"anthropic-beta": "claude-code-20250219,context-management-2025-06-27"}))
    assert events[-1][0] == "message_stop"
    sent = ollama.requests[-1].json
    assert sent["messages"][0]["role"] == "system" and "You are Claude Code." in sent["messages"][0]["content"]
    assert {tool["function"]["name"] for tool in sent["tools"]} == {"Bash", "DeferredToolPlaceholder"}


def test_anthropic_requests_are_logged_and_counted(gateway, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    response = post(gateway, {"model": "qwen3:8b", "max_tokens": 64, "messages": HI},
                    {"x-request-id": "anthropic-log-1"})
    assert response.headers["x-request-id"] == "anthropic-log-1"
    assert wait_for(lambda: any(line["request_id"] == "anthropic-log-1" for line in access_lines(caplog)))
    line = next(line for line in access_lines(caplog) if line["request_id"] == "anthropic-log-1")
    assert line["path"] == "/v1/chat/v1/messages" and line["provider"] == "ollama" and line["tokens_out"] > 0


def test_a_client_that_leaves_mid_stream_closes_the_upstream(gateway, anthropic_api):
    anthropic_api.replies["claude-sonnet-4-5"] = Reply(text="a b c d e f g h", delay_chunks=0.3)
    with httpx.stream("POST", gateway.url + "/v1/chat/v1/messages", timeout=10,
                      headers={"anthropic-version": "2023-06-01"},
                      json={"model": "anthropic/claude-sonnet-4-5", "max_tokens": 64, "messages": HI,
                            "stream": True}) as response:
        for line in response.iter_lines():
            if "text_delta" in line:
                break
    assert anthropic_api.wait_open_streams(0)


def test_an_anthropic_compatible_endpoint_is_config_alone(make_chatd, anthropic_api, ollama, client):
    """As Kimi For Coding's Anthropic endpoint is configured (lakehouse.toml's kimi_anthropic)."""
    chatd = make_chatd(extra=f"""
[chatd.providers.kimi_anthropic]
transform = "anthropic"
base_url = "{anthropic_api.url}"
key_env = "ANTHROPIC_API_KEY"

[[chatd.routes]]
prefix = "kimi-anthropic/"
provider = "kimi_anthropic"
""")
    sdk = client(chatd)
    assert sdk.messages.create(model="kimi-anthropic/claude-sonnet-4-5", max_tokens=64, messages=HI).content
    assert anthropic_api.requests[-1].json["model"] == "claude-sonnet-4-5"
    completion = httpx.post(chatd.url + "/v1/chat/chat/completions", timeout=10, json={  # translated from OpenAI
        "model": "kimi-anthropic/claude-sonnet-4-5", "messages": HI}).json()
    assert completion["choices"][0]["message"]["content"] and "max_tokens" in anthropic_api.requests[-1].json


def test_other_surfaces_reach_an_anthropic_provider_translated(gateway, anthropic_api, closing):
    anthropic_api.replies["claude-sonnet-4-5"] = Reply(text="", thinking="Use ls", tool_calls=[
        {"name": "ls", "arguments": {"path": "."}}])
    sdk = closing(openai.OpenAI(base_url=gateway.url + "/v1/chat", api_key="unused", max_retries=0))
    tools = [{"type": "function", "function": {"name": "ls", "parameters": {"type": "object"}}}]
    chunks = list(sdk.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI, tools=tools,
                                              reasoning_effort="low", max_tokens=4096, stream=True))
    calls = [c for chunk in chunks if chunk.choices for c in chunk.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "ls" and chunks[-1].choices[0].finish_reason == "tool_calls"
    sent = anthropic_api.requests[-1].json
    assert sent["thinking"]["type"] == "enabled" and sent["tools"][0]["name"] == "ls"
    anthropic_api.replies["claude-sonnet-4-5"] = Reply(text="It is blue.")
    with ollama.Client(host=gateway.url + "/v1/chat", timeout=10) as local:
        assert local.chat(model="anthropic/claude-sonnet-4-5", messages=HI, stream=False).message.content == \
            "It is blue."
    assert anthropic_api.requests[-1].json["max_tokens"] == 4096  # the provider's default_max_tokens
