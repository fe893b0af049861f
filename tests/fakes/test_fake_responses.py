"""FakeResponses speaks the Responses API as the official openai SDK reads it, and keeps its parent's routes."""

from __future__ import annotations

import time
import typing
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import ResponseStreamEvent

from tests.fakes import FakeResponses, Reply

KEY = "sk-test-responses-789"
HELLO = "Hello! How can I help you today?"
WEATHER = {"name": "get_weather", "arguments": {"city": "Tokyo"}}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": False,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
# Each event type of the SDK's ResponseStreamEvent union and the class it parses into.
SDK_EVENTS = {typing.get_args(cls.model_fields["type"].annotation)[0]: cls
              for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])}
TEXT_EVENTS = ["response.output_item.added", "response.content_part.added", *["response.output_text.delta"] * 7,
               "response.output_text.done", "response.content_part.done", "response.output_item.done"]


@pytest.fixture
def fake() -> Iterator[FakeResponses]:
    with FakeResponses(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def client(fake: FakeResponses) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as client:
        yield client


def post(fake: FakeResponses, body: Any, key: str = KEY) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{fake.base_url}/responses", content=content,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def sse_blocks(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event line, parsed data) of every SSE block; fails on a block that is not one `event:` + one `data:`."""
    blocks = []
    for block in text.strip("\n").split("\n\n"):
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        blocks.append((event[7:], orjson.loads(data[6:])))
    return blocks


def test_create_returns_a_response_with_usage_and_the_echoed_settings(fake, client) -> None:
    done = client.responses.create(model="gpt-4.1", input="Say hi", instructions="Be brief", temperature=0.5,
                                   max_output_tokens=64, metadata={"run": "1"})
    assert done.output_text == HELLO and done.status == "completed" and done.id.startswith("resp_")
    assert (done.object, done.model, done.error, done.incomplete_details) == ("response", "gpt-4.1", None, None)
    message = done.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.role == "assistant"
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (4, 7, 11)
    assert done.usage.input_tokens_details.cached_tokens == 0 and done.usage.output_tokens_details.reasoning_tokens == 0
    assert (done.instructions, done.temperature, done.max_output_tokens, done.metadata) == ("Be brief", 0.5, 64,
                                                                                           {"run": "1"})
    settings = (done.tool_choice, done.parallel_tool_calls, done.store, done.text.format.type, done.reasoning.effort)
    assert settings == ("auto", True, True, "text", None)
    assert done.completed_at is not None and done.completed_at >= done.created_at
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}
    shaped = client.responses.create(model="gpt-4.1", input="Where?",
                                     text={"format": {"type": "json_schema", "name": "w", "schema": schema}})
    assert orjson.loads(shaped.output_text) == {"city": HELLO, "days": 1}
    assert fake.requests[0].path == "/v1/responses" and fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_stream_numbers_every_event_and_each_is_a_type_the_sdk_knows(fake, client) -> None:
    fake.replies["gpt-4.1"] = Reply(thinking="Weather needs a tool", tool_calls=[WEATHER])
    events = list(client.responses.create(model="gpt-4.1", input="Weather in Tokyo?", tools=TOOLS, stream=True,
                                          reasoning={"effort": "low", "summary": "auto"}))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert all(type(e) is SDK_EVENTS[e.type] for e in events)
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * 4, "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done",
        *TEXT_EVENTS,
        "response.output_item.added", *["response.function_call_arguments.delta"] * 2,
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    created, final = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    assert created.id == final.id and final.status == "completed" and final.reasoning.effort == "low"
    assert [i.type for i in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[0].summary[0].text == "Weather needs a tool"
    assert final.usage.output_tokens_details.reasoning_tokens == 4
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == HELLO == final.output_text
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == '{"city":"Tokyo"}' == final.output[2].arguments
    fake.replies["gpt-4.1"] = Reply(thinking="Easy")
    r = post(fake, {"model": "gpt-4.1", "input": "Hi", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = sse_blocks(r.text)
    assert all(event == data["type"] for event, data in blocks) and "[DONE]" not in r.text
    # Without reasoning.summary the reasoning item comes, but empty and with no summary events.
    assert [data["type"] for _, data in blocks[2:-1]] == ["response.output_item.added", "response.output_item.done",
                                                          *TEXT_EVENTS]
    assert blocks[3][1]["item"] == {"id": blocks[2][1]["item"]["id"], "type": "reasoning", "summary": []}
    assert blocks[4][1]["item"]["content"] == [] and blocks[5][1]["part"] == {
        "type": "output_text", "annotations": [], "logprobs": [], "text": ""}


def test_stream_helper_builds_the_final_response(client) -> None:
    with client.responses.stream(model="gpt-4o-mini", input="Hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == HELLO == final.output_text and final.status == "completed" and final.usage.total_tokens == 8


def test_function_call_round_trip_is_accepted_with_and_without_stored_state(fake, client) -> None:
    fake.replies["gpt-4.1"] = [Reply(text="", tool_calls=[WEATHER]), Reply(text="Sunny in Tokyo.")]
    first = client.responses.create(model="gpt-4.1", input="Weather in Tokyo?", tools=TOOLS)
    [call] = first.output
    assert call.type == "function_call" and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert (call.name, call.arguments, call.status, first.output_text) == ("get_weather", '{"city":"Tokyo"}',
                                                                         "completed", "")
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}
    history = [{"role": "user", "content": "Weather in Tokyo?"}, call.model_dump(exclude_none=True), answer]
    second = client.responses.create(model="gpt-4.1", input=history, tools=TOOLS, store=False)
    assert second.output_text == "Sunny in Tokyo." and second.store is False
    assert fake.requests[-1].json["input"][1]["type"] == "function_call"
    chained = client.responses.create(model="gpt-4.1", input=[answer], previous_response_id=first.id)
    assert chained.output_text == "Sunny in Tokyo." and chained.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError, match="No tool call found for function call output"):
        client.responses.create(model="gpt-4.1", input=[answer])
    with pytest.raises(openai.BadRequestError, match=f"No tool output found for function call {call.call_id}"):
        client.responses.create(model="gpt-4.1", input=history[:2], store=False)
    for missing in ("resp_never_served", second.id):  # second had store=False: nothing was kept
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="gpt-4.1", input="And tomorrow?", previous_response_id=missing)
        assert (info.value.code, info.value.param) == ("previous_response_not_found", "previous_response_id")


def test_encrypted_reasoning_comes_back_only_from_this_upstream(fake, client) -> None:
    fake.replies["gpt-4.1"] = Reply(thinking="Count the r letters", text="Three.")
    first = client.responses.create(model="gpt-4.1", input="r in strawberry?", store=False,
                                    include=["reasoning.encrypted_content"])
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary == [] and reasoning.encrypted_content.startswith("gAAAA")
    history = [{"role": "user", "content": "r in strawberry?"}, reasoning.model_dump(exclude_none=True),
               {"role": "user", "content": "Sure?"}]
    assert client.responses.create(model="gpt-4.1", input=history, store=False).output_text == "Three."
    history[1]["encrypted_content"] = "EqQBCkYIBRgCKkD-anthropic-signature"
    with pytest.raises(openai.BadRequestError, match=r"The encrypted content EqQB\.\.\.ture could not be verified"):
        client.responses.create(model="gpt-4.1", input=history, store=False)


def test_incomplete_answer_ends_with_response_incomplete(fake, client) -> None:
    fake.replies["gpt-4.1"] = Reply(text="A long story that", finish_reason="length")
    done = client.responses.create(model="gpt-4.1", input="Tell a story", max_output_tokens=4)
    assert (done.status, done.incomplete_details.reason, done.output[0].status) == ("incomplete", "max_output_tokens",
                                                                                    "incomplete")
    assert done.output_text == "A long story that" and done.completed_at is None and done.usage.output_tokens == 4
    events = list(client.responses.create(model="gpt-4.1", input="Tell a story", stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-2].type == "response.output_item.done" and events[-2].item.status == "incomplete"
    with client.responses.stream(model="gpt-4.1", input="Tell a story") as stream:
        with pytest.raises(RuntimeError, match="Didn't receive a `response.completed` event"):
            stream.get_final_response()


def test_mid_stream_failure_is_a_yielded_response_failed_event(fake, client) -> None:
    fake.replies["gpt-4.1"] = Reply(fail_after=2, error="model crashed")
    events = list(client.responses.create(model="gpt-4.1", input="Hi", stream=True))  # the SDK does not raise
    assert [e.type for e in events[2:]] == ["response.output_item.added", "response.content_part.added",
                                            "response.output_text.delta", "response.output_text.delta",
                                            "response.failed"]
    assert [e.sequence_number for e in events] == list(range(7))
    failed = events[-1].response
    assert (failed.status, failed.error.code, failed.error.message) == ("failed", "server_error", "model crashed")
    assert failed.id == events[0].response.id and failed.usage is None and failed.output == []
    with client.responses.stream(model="gpt-4.1", input="Hi") as stream:
        assert [e.type for e in stream][-1] == "response.failed"
        with pytest.raises(RuntimeError, match="Didn't receive a `response.completed` event"):
            stream.get_final_response()
    fake.replies["gpt-4.1"] = Reply(fail_after=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="gpt-4.1", input="Hi")
    request_id = info.value.response.headers["x-request-id"]
    assert info.value.code == "server_error" and f"include the request ID {request_id} in" in info.value.message


def test_a_bare_error_event_is_nested_as_openai_sends_it_and_the_sdk_raises(fake, client) -> None:
    fake.replies["gpt-4.1"] = Reply(fail_after=99, fail_event="error", error="overloaded")
    seen = []
    with pytest.raises(openai.APIError, match="overloaded") as info:
        for event in client.responses.create(model="gpt-4.1", input="Hi", stream=True):
            seen.append(event.type)
    assert seen[-1] == "response.output_item.done" and "response.completed" not in seen
    assert info.value.body == {"type": "server_error", "code": "server_error", "message": "overloaded", "param": None}
    event, data = sse_blocks(post(fake, {"model": "gpt-4.1", "input": "Hi", "stream": True}).text)[-1]
    assert event == "error" and data["sequence_number"] == len(seen) and set(data) == {"type", "sequence_number",
                                                                                       "error"}


def test_failed_event_carries_the_items_already_done(fake) -> None:
    fake.replies["gpt-4.1"] = Reply(text="Calling.", tool_calls=[WEATHER], fail_after=2)
    blocks = sse_blocks(post(fake, {"model": "gpt-4.1", "input": "Hi", "stream": True}).text)
    event, data = blocks[-1]
    assert event == "response.failed" and data["sequence_number"] == len(blocks) - 1
    assert [i["type"] for i in data["response"]["output"]] == ["message"]


def test_errors_before_the_stream_in_openai_shape(fake, client) -> None:
    fake.replies["gpt-4o-mini"] = Reply(status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
    assert info.value.response.headers["retry-after"] == "7" and info.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="gpt-9", input="Hi")
    assert info.value.code == "model_not_found"
    for body, param, code in [({"input": "Hi"}, "model", "missing_required_parameter"),
                              ({"model": "gpt-4.1", "input": {"text": "Hi"}}, "input", "invalid_type"),
                              ({"model": "gpt-4.1", "input": ["Hi"]}, "input[0]", "invalid_type"),
                              (b"{not json", None, None)]:
        r = post(fake, body)
        error = r.json()["error"]
        assert (r.status_code, error["type"], error["param"], error["code"]) == (400, "invalid_request_error",
                                                                                 param, code)


def test_a_bad_key_is_refused_without_being_echoed(fake) -> None:
    with openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong-key-456", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.responses.create(model="gpt-4.1", input="Hi")
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(info.value) and KEY not in str(info.value)
    r = httpx.post(f"{fake.base_url}/responses", json={"model": "gpt-4.1", "input": "Hi"})
    assert r.status_code == 401 and KEY not in r.text


def test_delays_hang_drop_and_a_client_that_leaves(fake, client) -> None:
    fake.replies["gpt-4.1"] = Reply(text="one two three", delay_chunks=0.1)
    started = time.monotonic()
    with httpx.stream("POST", f"{fake.base_url}/responses", json={"model": "gpt-4.1", "input": "Hi"},
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status_code == 200 and time.monotonic() - started >= 0.3  # the head waits for all three words
    fake.replies["gpt-4.1"] = Reply(delay_chunks=30)
    with client.responses.create(model="gpt-4.1", input="Hi", stream=True) as stream:
        assert next(stream).type == "response.created"
        assert fake.wait_open_streams(1, timeout=2)
    assert fake.wait_open_streams(0, timeout=2)
    fake.replies["gpt-4.1"] = Reply(drop_after=1)
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="gpt-4.1", input="Hi", stream=True))
    fake.replies["gpt-4.1"] = Reply(hang=True)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).responses.create(model="gpt-4.1", input="Hi")
    assert fake.wait_open_requests(0, timeout=2) and fake.open_streams == 0


def test_parent_routes_still_answer(client) -> None:
    done = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "Hi"}])
    assert done.choices[0].message.content == HELLO and done.object == "chat.completion"
    assert [m.id for m in client.models.list()] == ["gpt-4.1", "gpt-4o-mini"]


def test_openrouter_flavor_keeps_openrouter_error_bodies() -> None:
    with FakeResponses(api_key=KEY, models=["openai/gpt-5"], flavor="openrouter") as fake:
        assert post(fake, {"model": "openai/gpt-5", "input": "Hi"}).json()["output"][0]["type"] == "message"
        fake.replies["openai/gpt-5"] = Reply(status=429, error="slow down")
        assert post(fake, {"model": "openai/gpt-5", "input": "Hi"}).json() == {"error": {"code": 429,
                                                                                         "message": "slow down"}}
