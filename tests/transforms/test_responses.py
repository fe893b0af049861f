"""Same-kind Responses passthrough: the upstream's events forwarded byte for byte, read only for usage and errors."""

from __future__ import annotations

import httpx
import orjson
import pytest

from chat_middleware.canonical import ChatRequest
from chat_middleware.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected, UpstreamStreamError
from chat_middleware.routing import Target
from chat_middleware.streams import Chunks
from chat_middleware.surfaces.responses_render import ResponsesRenderer
from chat_middleware.surfaces.responses_request import responses_request
from chat_middleware.transforms.responses import RESPONSES_PASSAGE, ResponsesPassthroughDecoder, passthrough_usage
from tests.fakes import FakeResponses, Reply

USAGE = {"input_tokens": 21, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 25}
ITEM = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Hi there", "annotations": []}]}


def event(kind: str, number: int, lines: bool = True, **fields) -> bytes:
    data = orjson.dumps({"type": kind, "sequence_number": number, **fields})
    return (b"event: " + kind.encode() + b"\n" if lines else b"") + b"data: " + data + b"\n\n"


def response(status: str, **fields) -> dict:
    return {"id": "resp_up", "object": "response", "status": status, "output": [], "usage": None, **fields}


def stream(lines: bool = True, end: str = "response.completed") -> list[bytes]:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    return [
        event("response.created", 0, lines, response=response("in_progress")),
        event("response.in_progress", 1, lines, response=response("in_progress")),
        event("response.output_item.added", 2, lines, output_index=0, item={**ITEM, "status": "in_progress",
                                                                             "content": []}),
        event("response.content_part.added", 3, lines, **where, part={"type": "output_text", "text": ""}),
        event("response.output_text.delta", 4, lines, **where, delta="Hi", logprobs=[]),
        event("response.output_text.delta", 5, lines, **where, delta=" there", logprobs=[]),
        event("response.output_item.done", 6, lines, output_index=0, item=ITEM),
        event(end, 7, lines, response=response(end.removeprefix("response."), output=[ITEM], usage=USAGE)),
    ]


def run(pieces: list[bytes]) -> tuple[ResponsesPassthroughDecoder, bytes, int]:
    decoder = ResponsesPassthroughDecoder()
    forwarded, count = [], 0
    for piece in pieces:
        chunks = decoder.feed(piece)
        forwarded.append(chunks.sse)
        count += len(chunks)
    chunks = decoder.close()
    return decoder, b"".join(forwarded) + chunks.sse, count + len(chunks)


@pytest.mark.parametrize("lines", [True, False])
def test_events_are_forwarded_byte_for_byte_however_the_reads_split_them(lines):
    whole = b"".join(stream(lines))
    for size in (1, 7, 64, len(whole)):
        decoder, forwarded, count = run([whole[i:i + size] for i in range(0, len(whole), size)])
        assert forwarded == whole and count == 8
        assert decoder.done and (decoder.prompt_tokens, decoder.completion_tokens) == (21, 4)


def test_payloads_are_each_events_data():
    chunks = ResponsesPassthroughDecoder().feed(b"".join(stream()[:3]))
    assert [chunk.data["sequence_number"] for chunk in chunks] == [0, 1, 2]


def test_an_unfinished_event_waits_for_the_rest():
    events = stream()
    decoder = ResponsesPassthroughDecoder()
    first = decoder.feed(events[0] + events[1][:20])
    assert first.sse == events[0] and len(first) == 1
    assert decoder.feed(events[1][20:]).sse == events[1]


def test_started_at_the_first_output_not_at_an_empty_item():
    """An opened item without content can still be taken back: a failure then falls back."""
    events = stream()
    decoder = ResponsesPassthroughDecoder()
    decoder.feed(b"".join(events[:4]))
    assert not decoder.started
    decoder.feed(events[4])
    assert decoder.started and not decoder.done


def test_response_incomplete_ends_the_stream_with_its_usage():
    decoder, forwarded, _ = run(stream(end="response.incomplete"))
    assert decoder.done and decoder.completion_tokens == 4 and forwarded.endswith(stream(end="response.incomplete")[-1])


def test_an_in_band_failure_is_held_back_and_what_came_before_it_is_not():
    events = stream()[:5]
    failed = event("response.failed", 5, response=response("failed", error={
        "code": "server_error", "message": "An error occurred while processing your request."}))
    decoder = ResponsesPassthroughDecoder()
    chunks = decoder.feed(b"".join(events) + failed + stream()[5])
    assert chunks.sse == b"".join(events) and len(chunks) == 5
    assert isinstance(decoder.failure, UpstreamStreamError) and decoder.failure.code == "server_error"
    assert "An error occurred while processing" in decoder.failure.message
    with pytest.raises(UpstreamStreamError):
        decoder.close()


def test_an_error_event_keeps_a_code_clients_act_on():
    decoder = ResponsesPassthroughDecoder()
    decoder.feed(event("error", 0, error={"type": "invalid_request_error", "code": "context_length_exceeded",
                                          "message": "Your input exceeds the context window."}))
    assert decoder.failure.code == "context_length_exceeded" and not decoder.started
    limited = ResponsesPassthroughDecoder()
    limited.feed(event("error", 3, code="rate_limit_exceeded", message="Rate limit reached", param=None))
    assert isinstance(limited.failure, UpstreamRateLimited) and limited.failure.retriable


def test_a_stream_that_ends_early_is_an_error_and_an_unterminated_end_is_not():
    with pytest.raises(UpstreamStreamError, match="before response.completed"):
        run(stream()[:6])
    decoder, forwarded, _ = run([*stream()[:7], stream()[7].rstrip(b"\n")])
    assert decoder.done and forwarded.endswith(b'"total_tokens":25}}}\n\n')


def test_nothing_after_the_end_is_forwarded():
    decoder = ResponsesPassthroughDecoder()
    chunks = decoder.feed(b"".join(stream()) + b": trailing keep-alive\n\n" + stream()[4])
    assert chunks.sse == b"".join(stream()) and decoder.done


def test_comments_pass_and_types_are_found_in_any_key_order():
    comment = b": OPENROUTER PROCESSING\n\n"
    reordered = b'data: {"sequence_number":7,"response":' + orjson.dumps(response("completed", usage=USAGE)) + \
        b',"type":"response.completed"}\n\n'
    decoder, forwarded, count = run([comment, *stream(False)[:7], reordered])
    assert forwarded == comment + b"".join(stream(False)[:7]) + reordered and count == 8 and decoder.done


def test_a_crlf_stream_is_split_on_its_events():
    decoder, forwarded, count = run([piece.replace(b"\n", b"\r\n") for piece in stream()])
    assert count == 8 and decoder.done and forwarded == b"".join(stream())


def test_the_renderer_numbers_its_failure_after_the_forwarded_events():
    _, context = responses_request({"model": "m", "input": "hi", "stream": True})
    renderer = ResponsesRenderer("m", context)
    renderer.serving(Target("openai", "gpt-5", "prefix", True), passthrough=True)
    decoder = ResponsesPassthroughDecoder()
    sent = renderer.chunks(decoder.feed(b"".join(stream()[:5])))
    decoder.feed(event("response.failed", 5, response=response("failed", error={"code": "server_error",
                                                                                 "message": "boom"})))
    failed = renderer.stream_error(decoder.failure)
    assert sent == b"".join(stream()[:5])
    data = orjson.loads(failed.split(b"data: ", 1)[1])
    assert (data["type"], data["sequence_number"], data["response"]["id"]) == ("response.failed", 5, "resp_up")
    assert data["response"]["error"] == {"code": "server_error", "message": "upstream error: boom"}


def test_the_passage_rewrites_only_the_model_and_keeps_what_chatd_cannot_translate():
    raw = (b'{"model":"openrouter/openai/gpt-5", "input":[{"type":"reasoning","encrypted_content":"gAAAAB"}],'
           b'"previous_response_id":"resp_prev","stream":true}')
    request = ChatRequest("responses", raw, orjson.loads(raw), stream=True)
    assert RESPONSES_PASSAGE.build(request, "openai/gpt-5") == raw.replace(b"openrouter/openai/gpt-5", b"openai/gpt-5")
    assert (RESPONSES_PASSAGE.api, RESPONSES_PASSAGE.path) == ("responses", "/responses")
    assert isinstance(RESPONSES_PASSAGE.decoder(False), ResponsesPassthroughDecoder)
    assert RESPONSES_PASSAGE.usage(orjson.dumps(response("completed", usage=USAGE))) == (21, 4)


# ----- against the fake OpenAI Responses upstream


def fake_stream(reply: Reply, size: int) -> bytes:
    """The raw bytes of a streamed answer from FakeResponses on loopback, read `size` bytes at a time."""
    with FakeResponses(api_key="sk-fake") as fake:
        fake.replies["gpt-5"] = reply
        with httpx.stream("POST", f"{fake.base_url}/responses", headers={"Authorization": "Bearer sk-fake"},
                          json={"model": "gpt-5", "input": "Weather in Tokyo?", "stream": True,
                                "reasoning": {"summary": "auto"}}) as answer:
            return b"".join(answer.iter_raw(size))


@pytest.mark.parametrize("size", [5, 4096])
def test_a_real_shaped_stream_passes_through_whole_with_its_usage(size):
    reply = Reply(thinking="Needs a tool", tool_calls=[{"name": "get_weather", "arguments": {"city": "Tokyo"}}],
                  prompt_tokens=17, completion_tokens=9)
    whole = fake_stream(reply, size)
    decoder, forwarded, _ = run([whole[i:i + size] for i in range(0, len(whole), size)])
    assert forwarded == whole and decoder.done and decoder.started
    assert (decoder.prompt_tokens, decoder.completion_tokens) == (17, 9)


@pytest.mark.parametrize("fail_event", ["", "error"])
def test_a_real_shaped_failure_is_held_back_and_answered_in_sequence(fail_event):
    whole = fake_stream(Reply(fail_after=3, error="model crashed", fail_event=fail_event), 4096)
    decoder = ResponsesPassthroughDecoder()
    _, context = responses_request({"model": "gpt-5", "input": "Weather in Tokyo?", "stream": True})
    renderer = ResponsesRenderer("gpt-5", context)
    renderer.serving(Target("openai", "gpt-5", "prefix", True), passthrough=True)
    sent = renderer.chunks(decoder.feed(whole))
    assert decoder.failure is not None and "model crashed" in decoder.failure.message
    assert whole.startswith(sent) and b"model crashed" not in sent
    ours = renderer.stream_error(decoder.failure)
    numbers = [orjson.loads(line[6:])["sequence_number"] for line in (sent + ours).split(b"\n")
               if line.startswith(b"data: ")]
    assert numbers == list(range(len(numbers)))
    first = orjson.loads(sent.split(b"\n")[1][6:])
    assert orjson.loads(ours.split(b"data: ")[1])["response"]["id"] == first["response"]["id"]


# ----- non-streamed


def test_passthrough_usage_of_a_response():
    raw = orjson.dumps(response("completed", output=[ITEM], usage=USAGE))
    assert passthrough_usage(raw) == (21, 4)
    assert passthrough_usage(orjson.dumps(response("incomplete", usage=None))) == (0, 0)


@pytest.mark.parametrize(("raw", "error", "message"), [
    (b"<html>", UpstreamError, "not JSON"),
    (b"[1]", UpstreamError, "not a JSON object"),
    (orjson.dumps(response("failed", error={"code": "server_error", "message": "model crashed"})),
     UpstreamStreamError, "model crashed"),
    (orjson.dumps({"error": {"code": 400, "message": "bad tool schema"}}), UpstreamRejected, "bad tool schema"),
])
def test_passthrough_usage_raises_for_an_error_body(raw, error, message):
    with pytest.raises(error, match=message):
        passthrough_usage(raw)


def test_empty_chunks_for_a_read_of_no_whole_event():
    chunks = ResponsesPassthroughDecoder().feed(b"event: response.cre")
    assert isinstance(chunks, Chunks) and len(chunks) == 0 and chunks.sse == b""
