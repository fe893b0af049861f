"""FakeAnthropic speaks the Messages API as the official `anthropic` SDK (2.x) reads it, and as raw SSE."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.fakes import FakeAnthropic, Reply

KEY = "sk-ant-test-secret-789"
MODEL = "claude-sonnet-4-5"
HELLO = "Hello! How can I help you today?"
HI = [{"role": "user", "content": "Say hi"}]
WEATHER = [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]
TOOLS = [{"name": "get_weather", "description": "Weather of a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}  # as Claude Code and SDK 0.x send them


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0) as sdk:
        yield sdk


def post(fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str] = HEADERS,
         path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(fake.url + path, json=body, headers=headers)


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) per SSE event; every event must carry both lines."""
    out = []
    for chunk in text.strip().split("\n\n"):
        name, data = chunk.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        out.append((name[7:], orjson.loads(data[6:])))
    return out


# -- answers ----------------------------------------------------------------


def test_text_answer_non_streamed(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=HI, system="Be brief")
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL and [b.type for b in message.content] == ["text"]
    assert message.content[0].text == HELLO
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (4, 7)  # "Be brief" + "Say hi"; 7 words out
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    assert raw.headers["request-id"].startswith("req_") and message._request_id == raw.headers["request-id"]
    sent = fake.requests[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}" and "anthropic-version" in sent.headers


def test_text_answer_streamed_with_the_sdk_helper(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces[:2] == ["Hello!", " How"] and "".join(pieces) == HELLO
    assert final.content[0].text == HELLO and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 7)


def test_stream_events_follow_the_documented_sequence(fake: FakeAnthropic) -> None:
    fake.replies[MODEL] = Reply(text="Hi", tool_calls=WEATHER)
    r = post(fake, {"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True}, path="/v1/messages?beta=true")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    seq = events(r.text)
    assert all(data["type"] == name for name, data in seq)
    assert [name for name, _ in seq] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    start = seq[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    tool = seq[5][1]["content_block"]
    assert tool["type"] == "tool_use" and tool["id"].startswith("toolu_") and tool["input"] == {}
    fragments = [data["delta"]["partial_json"] for _, data in seq[6:9]]
    assert fragments[0] == "" and orjson.loads("".join(fragments)) == {"city": "Tokyo"}
    assert seq[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert seq[-2][1]["usage"]["output_tokens"] == 3  # cumulative: "Hi", `get_weather {"city":"Tokyo"}`


@pytest.mark.parametrize("reason, stop", [("length", "max_tokens"), ("stop_sequence", "stop_sequence")])
def test_scripted_stop_reasons(fake: FakeAnthropic, client: anthropic.Anthropic, reason: str, stop: str) -> None:
    fake.replies[MODEL] = Reply(finish_reason=reason)
    message = client.messages.create(model=MODEL, max_tokens=64, messages=HI, stop_sequences=["END"])
    assert message.stop_reason == stop
    assert message.stop_sequence == ("END" if stop == "stop_sequence" else None)


def test_tool_use_round_trip_and_a_misplaced_tool_result(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.replies[MODEL] = [Reply(text="", tool_calls=WEATHER), Reply(text="Sunny in Tokyo")]
    first = client.messages.create(model=MODEL, max_tokens=64, messages=HI, tools=TOOLS)
    assert first.stop_reason == "tool_use" and [b.type for b in first.content] == ["tool_use"]
    call = first.content[0]
    assert call.id.startswith("toolu_") and (call.name, call.input) == ("get_weather", {"city": "Tokyo"})
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}
    second = client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS,
                                    messages=[*HI, first.to_param(), result])
    assert second.content[0].text == "Sunny in Tokyo" and second.stop_reason == "end_turn"

    stray = [*HI, first.to_param(), result, {"role": "assistant", "content": "ok"}, result]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=stray)
    assert info.value.type == "invalid_request_error"
    assert info.value.api_message == (
        f"messages.4.content.0: unexpected `tool_use_id` found in `tool_result` blocks: {call.id}. "
        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
    with pytest.raises(anthropic.BadRequestError, match="ids were found without `tool_result` blocks"):
        client.messages.create(model=MODEL, max_tokens=64, messages=[*HI, first.to_param(), *HI])


def test_thinking_with_signature_comes_back_and_is_checked(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.replies[MODEL] = Reply(text="Three", thinking="Count the r's")
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(model=MODEL, max_tokens=2048, thinking=thinking, messages=HI) as stream:
        final = stream.get_final_message()
    block, text = final.content
    assert (block.type, block.thinking, text.text) == ("thinking", "Count the r's", "Three")
    assert block.signature
    follow_up = [*HI, final.to_param(), {"role": "user", "content": "And in 'cherry'?"}]
    assert client.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=follow_up).content

    edited = {**block.to_dict(), "thinking": "Count the r's!"}  # a gateway that rewrites the thinking text
    follow_up[1] = {"role": "assistant", "content": [edited, {"type": "text", "text": "Three"}]}
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature` in `thinking` block"):
        client.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=follow_up)
    plain = client.messages.create(model=MODEL, max_tokens=64, messages=HI)
    assert [b.type for b in plain.content] == ["text"]  # no thinking unless the request asks for it
    omitted = client.messages.create(model=MODEL, max_tokens=64, messages=HI,
                                     thinking={"type": "adaptive", "display": "omitted"})
    assert omitted.content[0].thinking == "" and omitted.content[0].signature


@pytest.mark.parametrize("budget, max_tokens, message", [
    (512, 2048, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    (2048, 2048, "`max_tokens` must be greater than `thinking.budget_tokens`."),
])
def test_thinking_budget_is_validated(client: anthropic.Anthropic, budget: int, max_tokens: int, message: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=max_tokens, messages=HI,
                               thinking={"type": "enabled", "budget_tokens": budget})
    assert info.value.api_message.startswith(message)


def test_mid_conversation_system_message_is_accepted(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 64, "messages": [*HI, {"role": "system", "content": "Be terse"}]}
    assert post(fake, body).json()["content"][0]["text"] == HELLO
    body["messages"][1]["role"] = "tool"
    assert post(fake, body).json()["error"]["message"] == "messages.1.role: Input should be 'user' or 'assistant'"


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize("status, kind, cls", [
    (400, "invalid_request_error", anthropic.BadRequestError),
    (401, "authentication_error", anthropic.AuthenticationError),
    (403, "permission_error", anthropic.PermissionDeniedError),
    (404, "not_found_error", anthropic.NotFoundError),
    (413, "request_too_large", anthropic.ContentTooLargeError),
    (429, "rate_limit_error", anthropic.RateLimitError),
    (500, "api_error", anthropic.InternalServerError),
    (529, "overloaded_error", anthropic.OverloadedError),
])
def test_scripted_error_statuses(fake: FakeAnthropic, client: anthropic.Anthropic, status: int, kind: str,
                                 cls: type[anthropic.APIStatusError]) -> None:
    fake.replies[MODEL] = Reply(status=status, retry_after=7 if status == 429 else None)
    with pytest.raises(cls) as info:
        client.messages.create(model=MODEL, max_tokens=64, messages=HI)
    body = info.value.body
    assert info.value.status_code == status and info.value.type == kind and body["type"] == "error"
    assert body["request_id"].startswith("req_") and info.value.request_id == body["request_id"]
    assert (info.value.response.headers.get("retry-after") == "7") is (status == 429)
    assert len(fake.requests) == 1  # max_retries=0: one attempt


def test_overloaded_is_an_internal_server_error_the_sdk_retries(fake: FakeAnthropic) -> None:
    assert issubclass(anthropic.OverloadedError, anthropic.InternalServerError)
    fake.replies[MODEL] = [Reply(status=529, retry_after=0), Reply(text="Back")]
    with anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=1) as sdk:
        assert sdk.messages.create(model=MODEL, max_tokens=64, messages=HI).content[0].text == "Back"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("kind", ["overloaded_error", "api_error"])
def test_mid_stream_error_after_a_200_head(fake: FakeAnthropic, client: anthropic.Anthropic, kind: str) -> None:
    fake.replies[MODEL] = Reply(fail_after=2, error_type=kind)
    seq = events(post(fake, {"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True}).text)
    assert [name for name, _ in seq][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert seq[-1][1]["error"]["type"] == kind and seq[-1][1]["error"]["message"]
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
            got.extend(stream.text_stream)
    assert got == ["Hello!", " How"] and info.value.status_code == 200 and info.value.type == kind
    assert fake.wait_open_streams(0)


def test_missing_max_tokens_model_and_version(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=anthropic.omit, messages=HI, timeout=10)
    assert info.value.api_message == "max_tokens: Field required"
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-nope", max_tokens=64, messages=HI)
    assert missing.value.type == "not_found_error" and missing.value.api_message == "model: claude-nope"
    r = post(fake, {"model": MODEL, "max_tokens": 64, "messages": HI}, headers={"x-api-key": KEY})
    assert r.status_code == 400 and r.json()["error"] == {"type": "invalid_request_error",
                                                          "message": "anthropic-version: header is required"}
    assert post(fake, {"model": MODEL, "max_tokens": 64}).json()["error"]["message"] == "messages: Field required"


def test_bad_key_is_refused_without_echoing_any_key(fake: FakeAnthropic) -> None:
    wrong = "sk-ant-wrong-key-456"
    with anthropic.Anthropic(api_key=wrong, base_url=fake.url, max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as info:
            sdk.messages.create(model=MODEL, max_tokens=64, messages=HI)
    assert info.value.type == "authentication_error"
    assert wrong not in str(info.value) and KEY not in str(info.value)
    for headers in ({"anthropic-version": "2023-06-01"}, {**HEADERS, "x-api-key": wrong}):
        r = post(fake, {"model": MODEL, "max_tokens": 64, "messages": HI}, headers=headers)
        assert r.status_code == 401 and wrong not in r.text and KEY not in r.text
    assert post(fake, {"model": MODEL, "max_tokens": 64, "messages": HI}).status_code == 200  # x-api-key works


# -- timing and the connection ---------------------------------------------------


def test_non_streamed_answer_sends_nothing_until_complete(fake: FakeAnthropic) -> None:
    fake.replies[MODEL] = Reply(delay_chunks=0.3)  # 7 pieces: the whole answer takes ~2 s
    body = {"model": MODEL, "max_tokens": 64, "messages": HI}
    with httpx.Client(headers=HEADERS, timeout=httpx.Timeout(5, read=0.6)) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post(fake.url + "/v1/messages", json=body)
        started = time.monotonic()
        with http.stream("POST", fake.url + "/v1/messages", json=body | {"stream": True}) as r:
            lines = r.iter_lines()  # keep a reference: a discarded iterator closes the connection
            assert r.status_code == 200 and next(lines) == "event: message_start"
            assert time.monotonic() - started < 0.6
    assert fake.wait_open_streams(0) and fake.wait_open_requests(0)


def test_drop_and_hang(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.replies[MODEL] = Reply(drop_after=1)
    with pytest.raises(anthropic.APIConnectionError):  # non-streamed: dropped before any head
        client.messages.create(model=MODEL, max_tokens=64, messages=HI)
    got: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):  # streamed: cut after the first delta
        with httpx.stream("POST", fake.url + "/v1/messages", headers=HEADERS,
                          json={"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True}) as r:
            got.extend(r.iter_lines())
    data = [orjson.loads(line[6:]) for line in got if line.startswith("data: ")]
    assert [d["delta"]["text"] for d in data if d["type"] == "content_block_delta"] == ["Hello!"]
    fake.replies[MODEL] = Reply(hang=True)
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model=MODEL, max_tokens=64, messages=HI, timeout=0.3)
    assert fake.wait_open_requests(0) and fake.open_streams == 0


async def test_async_client_streams(fake: FakeAnthropic) -> None:
    fake.replies[MODEL] = Reply(text="Async hello", thinking="quick")
    async with anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url, max_retries=0) as sdk:
        async with sdk.messages.stream(model=MODEL, max_tokens=64, messages=HI,
                                       thinking={"type": "adaptive"}) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
    assert text == "Async hello" and [b.type for b in final.content] == ["thinking", "text"]


# -- count_tokens and models ---------------------------------------------------------


def test_count_tokens_counts_system_messages_and_tools(client: anthropic.Anthropic) -> None:
    plain = client.messages.count_tokens(model=MODEL, messages=HI)
    assert plain.input_tokens == 2
    more = client.messages.count_tokens(model=MODEL, messages=HI, system="Be brief", tools=TOOLS)
    assert more.input_tokens > plain.input_tokens + 2  # the tool's name, description and schema count too
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="claude-nope", messages=HI)


def test_models_are_paged_through_by_the_sdk() -> None:
    ids = [f"claude-test-{n}" for n in range(5)]
    with FakeAnthropic(ids, api_key=KEY) as fake, \
            anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0) as sdk:
        page = sdk.models.list(limit=2)
        assert [m.id for m in page.data] == ids[:2] and page.has_more and page.last_id == ids[1]
        assert [m.id for m in page] == ids  # auto-pagination follows after_id = last_id
        assert [r.query.get("after_id") for r in fake.requests[1:]] == [ids[1], ids[3]]
        entry = sdk.models.retrieve(ids[3])
        assert (entry.type, entry.display_name) == ("model", "Claude Test 3") and entry.created_at.year == 2025
        with pytest.raises(anthropic.NotFoundError):
            sdk.models.retrieve("claude-nope")
