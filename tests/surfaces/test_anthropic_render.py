"""The Anthropic surface's render side: canonical answers → Messages, streams → Anthropic's events.

What the official anthropic SDK accepts is checked with the SDK itself: its
models validate the bodies and events, and its client (over an in-process mock
transport, no socket) reads the rendered stream with its own accumulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import anthropic
import httpx2  # the HTTP package of the anthropic SDK 2.x (0.x used httpx)
import orjson
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent

from chat_middleware.errors import (
    BadRequest, NotFound, PayloadTooLarge, RequestError, Unauthorized, UpstreamError, UpstreamRateLimited,
    UpstreamStreamError, UpstreamTimeout,
)
from chat_middleware.streams import Chunk, Chunks
from chat_middleware.surfaces.anthropic_render import UNSIGNED, AnthropicRenderer, anthropic_error_type

EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)


@dataclass
class Counts:
    """What `finish` reads of a decoder."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


def chunk(delta: dict | None = None, finish: str | None = None) -> Chunk:
    return Chunk(data={"id": "c1", "object": "chat.completion.chunk", "model": "m",
                       "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]})


def completion(message: dict, finish: str = "stop", usage: dict | None = None) -> dict:
    return {"id": "c1", "object": "chat.completion", "model": "upstream-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 12, "completion_tokens": 3}}


def canonical_stream() -> list[Chunks]:
    """Thinking, text, then two tool calls in fragments, as an OpenAI-compatible upstream streams them."""
    return [
        Chunks([chunk({"role": "assistant", "content": ""})]),
        Chunks([chunk({"reasoning_content": "Let me "}), chunk({"reasoning_content": "look."})]),
        Chunks([chunk({"content": "Checking "}), chunk({"content": "both."})]),
        Chunks([chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                       "function": {"name": "weather", "arguments": ""}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "To'}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'kyo"}'}}]})]),
        Chunks([chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                       "function": {"name": "time", "arguments": '{"zone": '}}]}),
                chunk({"tool_calls": [{"index": 1, "function": {"arguments": '"JST"}'}}]})]),
        Chunks([chunk(finish="tool_calls")]),
    ]


def render(renderer: AnthropicRenderer, stream: list[Chunks], counts: Counts = Counts(40, 20)) -> bytes:
    return b"".join(renderer.chunks(chunks) for chunks in stream) + renderer.finish(counts, 5.0)


def events(body: bytes) -> list[tuple[str, dict]]:
    """Each SSE event as (its event: name, its data), checking that every event is `event:` + `data:`."""
    out = []
    for raw in body.split(b"\n\n")[:-1]:
        name, data = raw.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        out.append((name[7:].decode(), orjson.loads(data[6:])))
    assert body.endswith(b"\n\n")
    return out


def sdk(body: bytes, status: int = 200, content_type: str = "text/event-stream") -> anthropic.Anthropic:
    """An anthropic SDK client whose every request is answered with `body`."""
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)
    return anthropic.Anthropic(api_key="k", base_url="http://chatd.test", max_retries=0,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))


ASK = {"model": "smart", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


# ----- whole answers


def test_a_completion_becomes_a_message_the_sdk_validates():
    renderer = AnthropicRenderer("smart")
    body = renderer.completion(completion(
        {"content": "It is sunny.", "reasoning_content": "Look it up.",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"c": 1}'}},
                        {"type": "function", "function": {"name": "time", "arguments": ""}}]},
        finish="tool_calls",
        usage={"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}),
        b"", passthrough=False, latency_ms=3.0)
    message = Message.model_validate(orjson.loads(body))
    assert message.id.startswith("msg_") and message.model == "smart" and message.role == "assistant"
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, first, second = message.content
    assert (thinking.thinking, thinking.signature, text.text) == ("Look it up.", UNSIGNED, "It is sunny.")
    assert (first.id, first.name, first.input) == ("call_1", "weather", {"c": 1})
    assert second.id.startswith("toolu_") and second.input == {}
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert message.usage.model_dump(include={"input_tokens", "output_tokens", "cache_read_input_tokens",
                                             "cache_creation_input_tokens"}) == {
        "input_tokens": 40, "output_tokens": 7, "cache_read_input_tokens": 60, "cache_creation_input_tokens": 0}


def test_the_sdk_client_reads_a_rendered_message():
    body = AnthropicRenderer("smart").completion(completion({"content": "Hello"}), b"", False, 1.0)
    message = sdk(body, content_type="application/json").messages.create(**ASK)
    assert message.content[0].text == "Hello" and message.usage.input_tokens == 12


@pytest.mark.parametrize("finish, tools, stop_reason", [
    ("stop", False, "end_turn"),
    ("length", False, "max_tokens"),
    ("tool_calls", True, "tool_use"),
    ("stop", True, "tool_use"),  # some upstreams end a tool call with "stop"
    ("content_filter", False, "refusal"),
    (None, False, "end_turn"),
    ("something_new", False, "end_turn"),
])
def test_stop_reasons_are_never_null(finish, tools, stop_reason):
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}] if tools else None
    body = AnthropicRenderer("m").completion(completion({"content": "x", "tool_calls": calls}, finish), b"", False, 1)
    assert orjson.loads(body)["stop_reason"] == stop_reason


def test_an_empty_answer_is_one_empty_text_block():
    body = AnthropicRenderer("m").completion(completion({"content": None}), b"", False, 1.0)
    assert Message.model_validate(orjson.loads(body)).content[0].text == ""


def test_tool_arguments_that_are_not_json_are_an_upstream_error():
    with pytest.raises(UpstreamError, match="not a JSON object"):
        AnthropicRenderer("m").completion(completion(
            {"tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}),
            b"", False, 1.0)


def test_a_passthrough_answer_is_the_upstream_bytes():
    raw = b'{"id":"msg_up","type":"message","content":[{"type":"text","text":"hi","citations":[]}]}'
    assert AnthropicRenderer("m").completion({}, raw, passthrough=True, latency_ms=1.0) is raw


# ----- streams


def test_a_stream_renders_anthropics_exact_event_sequence():
    seen = events(render(AnthropicRenderer("smart"), canonical_stream()))
    for name, data in seen:
        assert name == data["type"]
        EVENTS.validate_python(data)  # every event is one the SDK knows, with every field it needs
    shape = [(name, data.get("index"), (data.get("delta") or data.get("content_block") or {}).get("type"))
             for name, data in seen]
    assert shape == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),  # just before the thinking block's stop
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    start, tool = seen[0][1]["message"], seen[10][1]["content_block"]
    assert start["content"] == [] and start["stop_reason"] is None and start["model"] == "smart"
    assert tool == {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}
    assert seen[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert seen[-2][1]["usage"] == {"input_tokens": 40, "output_tokens": 20}


def test_the_sdk_accumulates_a_rendered_stream():
    body = render(AnthropicRenderer("smart"), canonical_stream())
    with sdk(body).messages.stream(**ASK) as stream:
        message = stream.get_final_message()
    thinking, text, weather, time = message.content
    assert (thinking.thinking, thinking.signature) == ("Let me look.", UNSIGNED)
    assert text.text == "Checking both."
    assert (weather.id, weather.name, weather.input) == ("call_a", "weather", {"city": "Tokyo"})
    assert (time.id, time.name, time.input) == ("call_b", "time", {"zone": "JST"})
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 20)
    Message.model_validate(message.to_dict())


def test_a_stream_with_no_content_is_still_a_valid_message():
    renderer = AnthropicRenderer("m")
    body = render(renderer, [Chunks([chunk({"role": "assistant"})]), Chunks([chunk(finish="stop")])], Counts(3, 0))
    assert [name for name, _ in events(body)] == ["message_start", "content_block_start", "content_block_delta",
                                                  "content_block_stop", "message_delta", "message_stop"]
    with sdk(body).messages.stream(**ASK) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "" and message.stop_reason == "end_turn"


def test_finish_alone_makes_a_whole_stream():
    """An upstream that ended before any chunk still gets the client a whole message."""
    body = AnthropicRenderer("m").finish(Counts(), 1.0)
    assert [name for name, _ in events(body)] == ["message_start", "content_block_start", "content_block_delta",
                                                  "content_block_stop", "message_delta", "message_stop"]


def test_text_after_a_tool_call_opens_a_new_block():
    stream = [Chunks([chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
                      chunk({"content": "done"}), chunk(finish="stop")])]
    seen = events(render(AnthropicRenderer("m"), stream))
    starts = [data["content_block"]["type"] for name, data in seen if name == "content_block_start"]
    assert starts == ["tool_use", "text"] and seen[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_reasoning_under_either_name_is_thinking():
    for key in ("reasoning_content", "reasoning"):
        seen = events(render(AnthropicRenderer("m"), [Chunks([chunk({key: "hm"})])]))
        assert seen[2][1]["delta"] == {"type": "thinking_delta", "thinking": "hm"}


def test_a_retry_starts_a_new_message():
    renderer = AnthropicRenderer("m")
    first = renderer.chunks(Chunks([chunk({"content": "partial"})]))
    renderer.serving(None)  # the relay asks another upstream
    second = render(renderer, [Chunks([chunk({"content": "whole"}), chunk(finish="stop")])])
    assert events(second)[0][0] == "message_start" and events(second)[1][1]["index"] == 0
    assert events(first)[0][1]["message"]["id"] != events(second)[0][1]["message"]["id"]


def test_passthrough_streams_forward_the_upstream_bytes():
    renderer = AnthropicRenderer("m")
    renderer.serving(None, passthrough=True)
    upstream = b'event: ping\ndata: {"type": "ping"}\n\n'
    assert renderer.chunks(Chunks(sse=upstream, payloads=[b'{"type": "ping"}'])) == upstream
    assert renderer.finish(Counts(), 1.0) == b""


def test_ping_is_an_event_the_sdk_skips():
    renderer = AnthropicRenderer("m")
    body = renderer.chunks(Chunks([chunk({"content": "a"})])) + renderer.ping() + renderer.finish(Counts(), 1.0)
    assert ("ping", {"type": "ping"}) in events(body)
    with sdk(body).messages.stream(**ASK) as stream:
        assert stream.get_final_text() == "a"


# ----- errors


@pytest.mark.parametrize("status, kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (405, "invalid_request_error"), (413, "request_too_large"),
    (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
    (503, "api_error"), (504, "api_error"), (529, "overloaded_error"),
])
def test_error_types_follow_the_status(status, kind):
    assert anthropic_error_type(status) == kind


@pytest.mark.parametrize("error, kind, sdk_error", [
    (BadRequest("messages: Field required"), "invalid_request_error", anthropic.BadRequestError),
    (Unauthorized("no key"), "authentication_error", anthropic.AuthenticationError),
    (NotFound("no such model"), "not_found_error", anthropic.NotFoundError),
    (PayloadTooLarge("too big"), "request_too_large", anthropic.APIStatusError),
    (UpstreamRateLimited("slow down", retry_after="3"), "rate_limit_error", anthropic.RateLimitError),
    (UpstreamError("upstream answered HTTP 500"), "api_error", anthropic.InternalServerError),
    (UpstreamTimeout("upstream went silent"), "api_error", anthropic.APIStatusError),
])
def test_an_error_body_is_anthropics_shape_and_the_sdk_raises_its_class(error: RequestError, kind, sdk_error):
    body = AnthropicRenderer("m").error_body(error)
    assert orjson.loads(body) == {"type": "error", "error": {"type": kind, "message": error.message}}
    with pytest.raises(sdk_error) as raised:
        sdk(body, status=error.status, content_type="application/json").messages.create(**ASK)
    assert raised.value.status_code == error.status and error.message in str(raised.value)


def test_a_stream_error_is_an_error_event_the_sdk_raises():
    renderer = AnthropicRenderer("m")
    body = renderer.chunks(Chunks([chunk({"content": "par"})])) + renderer.stream_error(
        UpstreamStreamError("upstream error: Overloaded"))
    name, data = events(body)[-1]
    assert name == "error" and data == {"type": "error", "error": {"type": "api_error",
                                                                   "message": "upstream error: Overloaded"}}
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with sdk(body).messages.stream(**ASK) as stream:
            stream.get_final_message()
