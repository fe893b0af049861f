"""The openai passthrough as pure functions: request rewriting, completions, SSE decoding."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_middleware.config import ProviderConfig
from chat_middleware.errors import UpstreamError, UpstreamRateLimited, UpstreamStreamError
from chat_middleware.surfaces.chat_render import OpenAIRenderer
from chat_middleware.transforms.openai import OpenAIChat

OPENAI = OpenAIChat()
PROVIDER = ProviderConfig(name="openrouter", transform="openai", base_url="http://h/v1")


def chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None, **extra) -> bytes:
    delta = {} if content is None else {"content": content}
    choices = [] if usage and content is None and finish is None else [
        {"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": choices,
                                     "usage": usage, **extra}) + b"\n\n"


def test_build_rewrites_only_the_model_and_keeps_unknown_fields():
    body = {"model": "openrouter/moonshotai/kimi-k2", "messages": [{"role": "user", "content": "hi"}],
            "provider": {"order": ["groq"]}, "top_k": 5, "reasoning": {"effort": "low"}}
    sent = orjson.loads(OPENAI.build(body, "moonshotai/kimi-k2", PROVIDER, stream=False))
    assert sent == {**body, "model": "moonshotai/kimi-k2"}


def test_build_asks_for_usage_on_streams_and_keeps_other_stream_options():
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_obfuscation": False}}
    sent = orjson.loads(OPENAI.build(body, "m", PROVIDER, stream=True))
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_completion_returns_the_upstream_object():
    raw = orjson.dumps({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert OPENAI.completion(raw)["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize("raw, message", [
    (b"<html>oops</html>", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"id": "x", "choices": []}', "zero choices"),
    (b'{"id": "x"}', "zero choices"),
])
def test_bad_completions_are_upstream_errors(raw, message):
    with pytest.raises(UpstreamError, match=message):
        OPENAI.completion(raw)


def test_an_error_inside_a_200_answer_keeps_its_status():
    with pytest.raises(UpstreamRateLimited):
        OPENAI.completion(b'{"error": {"code": 429, "message": "slow down"}}')


def test_a_null_error_field_is_no_error():
    answer = {"id": "c1", "object": "chat.completion", "error": None,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
    assert OPENAI.completion(orjson.dumps(answer))["choices"][0]["message"]["content"] == "ok"
    decoder = OPENAI.decoder(include_usage=False)
    chunks = decoder.feed(chunk("ok", error=None) + chunk(finish="stop") + b"data: [DONE]\n\n")
    assert decoder.failure is None and decoder.done and len(chunks) == 2


def test_decoder_forwards_bytes_untouched_across_awkward_splits():
    stream = chunk("Hel") + b": OPENROUTER PROCESSING\n\n" + chunk("lo") + chunk(finish="stop") + b"data: [DONE]\n\n"
    decoder = OPENAI.decoder(include_usage=False)
    chunks = []
    for i in range(0, len(stream), 7):
        chunks += decoder.feed(stream[i:i + 7])
    chunks += decoder.close()
    assert b"".join(c.sse for c in chunks) == chunk("Hel") + chunk("lo") + chunk(finish="stop")
    assert decoder.done


def test_decoder_reads_usage_and_hides_the_chunk_the_client_did_not_ask_for():
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    stream = chunk("hi") + chunk(finish="stop") + chunk(usage=usage) + b"data: [DONE]\n\n"
    hidden, shown = OPENAI.decoder(include_usage=False), OPENAI.decoder(include_usage=True)
    assert len(hidden.feed(stream)) == 2 and len(shown.feed(stream)) == 3
    assert (hidden.prompt_tokens, hidden.completion_tokens) == (9, 4)


def test_decoder_reads_kimi_usage_inside_the_choice():
    data = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                                    "usage": {"prompt_tokens": 5, "completion_tokens": 2}}]}
    decoder = OPENAI.decoder(include_usage=False)
    assert len(decoder.feed(b"data: " + orjson.dumps(data) + b"\n\n")) == 1
    assert (decoder.prompt_tokens, decoder.completion_tokens) == (5, 2)


def test_decoder_stops_at_done_so_a_later_cost_chunk_is_ignored():
    decoder = OPENAI.decoder(include_usage=True)
    chunks = decoder.feed(chunk("a") + b"data: [DONE]\n\n" + chunk(usage={"prompt_tokens": 1}, cost="0.1"))
    assert len(chunks) == 1 and decoder.done


@pytest.mark.parametrize("after", [chunk(cost="0.1"), chunk("more")])
def test_nothing_after_done_reaches_the_client_even_in_the_same_read(after):
    decoder = OPENAI.decoder(include_usage=True)
    chunks = decoder.feed(chunk("a") + b"data: [DONE]\n\n" + after)
    assert [c.data["choices"][0]["delta"] for c in chunks] == [{"content": "a"}] and decoder.done
    assert OpenAIRenderer().chunks(chunks) == chunk("a")


@pytest.mark.parametrize("include_usage", [False, True])
def test_usage_in_the_middle_of_a_read_is_counted_and_hidden_unless_asked(include_usage):
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    decoder = OPENAI.decoder(include_usage=include_usage)
    chunks = decoder.feed(chunk("a") + chunk(usage=usage) + chunk("b"))
    assert (decoder.prompt_tokens, decoder.completion_tokens) == (7, 3)
    assert len(chunks) == (3 if include_usage else 2)


def test_a_usage_key_inside_the_text_is_only_text():
    decoder = OPENAI.decoder(include_usage=False)
    text = 'say "prompt_tokens": 5 and "usage":{"x":1}'
    chunks = decoder.feed(chunk(text) + chunk("b"))
    assert decoder.prompt_tokens == 0 and chunks.sse == chunk(text) + chunk("b")  # forwarded as it came


@pytest.mark.parametrize("event", [
    b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n',
    b'data: {"id": "c", "error": {"code": "server_error", "message": "Provider disconnected"}, '
    b'"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}\n\n',
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"error"}]}\n\n',
])
def test_in_band_errors_fail_after_the_chunks_before_them(event):
    decoder = OPENAI.decoder(include_usage=False)
    chunks = decoder.feed(chunk("partial") + event + chunk("after"))
    assert [c.data["choices"][0]["delta"] for c in chunks] == [{"content": "partial"}]
    assert isinstance(decoder.failure, UpstreamStreamError)
    with pytest.raises(UpstreamStreamError):
        decoder.close()


def test_a_stream_cut_before_done_is_not_a_silent_truncation():
    decoder = OPENAI.decoder(include_usage=False)
    decoder.feed(chunk("partial"))
    with pytest.raises(UpstreamStreamError, match="before \\[DONE\\]"):
        decoder.close()


def test_crlf_line_endings_and_multi_line_data():
    decoder = OPENAI.decoder(include_usage=False)
    chunks = decoder.feed(b'data: {"id":"c",\r\ndata: "choices":[]}\r\n\r\ndata: [DONE]\r\n\r\n')
    assert [c.data for c in chunks] == [{"id": "c", "choices": []}]


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12), include_usage=st.booleans(),
       comment=st.booleans())
def test_any_split_of_a_stream_renders_the_same_bytes(cuts, include_usage, comment):
    """Reads that hold whole events go out as they came; every other split gives the same answer."""
    usage = {"prompt_tokens": 24, "completion_tokens": 20, "total_tokens": 44}
    content = [chunk(f"tok{i} \\n\"q\"", usage=None) for i in range(20)] + [chunk(finish="stop")]
    usage_chunk = chunk(usage=usage)
    stream = b"".join(content[:10]) + (b": keep-alive\n\n" if comment else b"") + b"".join(content[10:]) \
        + usage_chunk + b"data: [DONE]\n\n"
    decoder, renderer = OPENAI.decoder(include_usage), OpenAIRenderer()
    out, start = [], 0
    for cut in sorted({c % len(stream) for c in cuts}) + [len(stream)]:
        out.append(renderer.chunks(decoder.feed(stream[start:cut])))
        start = cut
    out.append(renderer.chunks(decoder.close()))
    assert b"".join(out) == b"".join(content) + (usage_chunk if include_usage else b"")
    assert (decoder.prompt_tokens, decoder.completion_tokens, decoder.done) == (24, 20, True)


def test_whole_events_with_nothing_to_read_are_forwarded_as_the_same_bytes():
    decoder = OPENAI.decoder(include_usage=False)
    read = chunk("a") + chunk("b")
    assert decoder.feed(read + chunk("c")[:9]).sse == read  # the unfinished event waits for its end
    assert decoder.feed(chunk("c")[9:]).sse == chunk("c")
