"""Framing and request shapes as pure functions."""

from __future__ import annotations

import pytest

from chat_middleware.errors import BadRequest
from chat_middleware.surfaces.native_render import NativeRenderer
from chat_middleware.routing import Target
from chat_middleware.shapes import parse_json_object
from chat_middleware.surfaces.chat_request import check_completion
from chat_middleware.surfaces.native_request import native_to_openai
from chat_middleware.streams import Chunk, Chunks, LineSplitter, SSESplitter


def feed_all(splitter, data: bytes, step: int) -> list[bytes]:
    out = []
    for i in range(0, len(data), step):
        out += splitter.feed(data[i:i + step])
    return out + splitter.close()


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_line_splitter_hands_out_whole_lines_whatever_the_split(step):
    data = b'{"a":1}\n\n{"b":2}\n{"c":3}'
    assert feed_all(LineSplitter(), data, step) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_sse_splitter_keeps_data_and_drops_comments(step):
    data = b": keep-alive\n\ndata: one\n\nevent: x\ndata: two\ndata: lines\n\ndata:three\n\n"
    assert feed_all(SSESplitter(), data, step) == [b"one", b"two\nlines", b"three"]
    assert Chunk(b"two\nlines").sse == b"data: two\ndata: lines\n\n"


def test_chunk_is_parsed_only_when_asked_and_dumped_once():
    raw = Chunk(b'{"a": 1}')
    assert raw.sse == b'data: {"a": 1}\n\n'
    assert raw.data == {"a": 1}
    assert Chunk(data={"b": 2}).sse == b'data: {"b":2}\n\n'


def test_forwarded_chunks_come_first_and_keep_their_bytes():
    forwarded = b'data: {"n":1}\n\ndata: {"n":2}\n\n'
    chunks = Chunks([Chunk(data={"n": 3})], forwarded + b'data: {"n":3}\n\n', [b'{"n":1}', b'{"n":2}'])
    assert len(chunks) == 3 and [c.data["n"] for c in chunks] == [1, 2, 3]
    assert chunks.sse.startswith(forwarded)
    assert not Chunks() and Chunks([Chunk(b'{"n":1}')]).sse == b'data: {"n":1}\n\n'


def test_native_body_becomes_openai():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
            "temperature": 0.1, "format": "json", "stream": True}
    assert native_to_openai(body) == {"model": "m", "messages": body["messages"], "max_tokens": 5,
                                      "temperature": 0.1, "stream": True,
                                      "response_format": {"type": "json_object"}}
    with pytest.raises(BadRequest, match="format"):
        native_to_openai({**body, "format": "xml"})


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff"])
def test_bodies_that_are_not_json_objects(raw):
    with pytest.raises(BadRequest):
        parse_json_object(raw)


@pytest.mark.parametrize("body", [
    {}, {"messages": []}, {"messages": {}}, {"messages": [None]}, {"messages": [{"role": 1}]},
    {"messages": [{"role": "user", "content": {}}]},
    {"messages": [{"role": "user"}], "stream": 1},
    {"messages": [{"role": "user"}], "stream_options": []},
    {"messages": [{"role": "user"}], "max_tokens": 1.5},
    {"messages": [{"role": "user"}], "top_p": "high"},
])
def test_completion_checks(body):
    with pytest.raises(BadRequest):
        check_completion(body)


def test_native_renderer_turns_chunks_into_deltas_and_skips_usage_chunks():
    renderer = NativeRenderer()
    renderer.serving(Target("ollama", "qwen3:8b", "default", True))
    events = renderer.chunks([
        Chunk(data={"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
        Chunk(data={"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
        Chunk(data={"choices": [], "usage": {"prompt_tokens": 1}}),
    ])
    assert events == b'data: {"delta":"Hi"}\n\n'
    assert renderer.finish_reason == "length"
