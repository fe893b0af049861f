"""Same-kind passthrough as pure functions: the client's bytes, only `model` rewritten."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from chat_middleware.canonical import CHAT, ChatRequest
from chat_middleware.passthrough import with_field, with_model
from chat_middleware.transforms.openai import CHAT_PASSAGE


def rewrite(raw: bytes, model: str = "x") -> bytes:
    return with_model(raw, orjson.loads(raw), model)


def test_only_the_model_changes_byte_for_byte():
    raw = b'{ "messages" : [ {"role":"user", "content":"caf\\u00e9 \\"model\\": 1"} ],\n  "model" : "openrouter/m", "x":1.50}'
    assert rewrite(raw, "m") == raw.replace(b'"openrouter/m"', b'"m"')


def test_a_nested_model_key_is_left_alone():
    raw = (b'{"tools":[{"type":"function","function":{"name":"pick","parameters":{"properties":'
           b'{"model":{"type":"string"}}}}}],"metadata":{"model":"other"},"model":"kimi/k","messages":[]}')
    sent = orjson.loads(rewrite(raw, "k"))
    assert sent["model"] == "k" and sent["metadata"] == {"model": "other"}
    assert rewrite(raw, "k") == raw.replace(b'"kimi/k"', b'"k"')


def test_the_same_name_nested_again_is_encoded_anew_with_only_the_model_changed():
    raw = b'{"model":"m","metadata":{"model":"m"},"messages":[]}'
    assert orjson.loads(rewrite(raw, "n")) == {"model": "n", "metadata": {"model": "m"}, "messages": []}


def test_a_model_spelled_with_escapes_is_encoded_anew():
    raw = b'{"model":"\\u006d","messages":[]}'  # "m", spelled as an escape
    assert orjson.loads(rewrite(raw, "n")) == {"model": "n", "messages": []}


@given(st.dictionaries(st.sampled_from(["a", "model", "messages", "metadata"]),
                       st.recursive(st.none() | st.text(max_size=8) | st.integers(-(2**63), 2**63 - 1),
                                    lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.sampled_from(["model", "b"]), inner, max_size=3),
                                    max_leaves=8)),
       st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12), st.booleans())
def test_any_body_gets_exactly_the_new_model(extra, asked, model, pretty):
    body = {**extra, "model": asked}
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
    assert orjson.loads(with_model(raw, body, model)) == {**body, "model": model}


def test_a_field_is_added_before_the_others():
    assert orjson.loads(with_field(b' {"model":"m"}', "stream_options", {"include_usage": True})) == {
        "stream_options": {"include_usage": True}, "model": "m"}


def test_a_chat_stream_asks_for_usage_without_re_encoding():
    raw = b'{"model": "openrouter/m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    sent = CHAT_PASSAGE.build(ChatRequest(CHAT, raw, orjson.loads(raw), stream=True), "m")
    assert sent == b'{"stream_options":{"include_usage":true},' + raw[1:].replace(b'"openrouter/m"', b'"m"')
    asked = raw.replace(b'"stream": true', b'"stream": true, "stream_options": {"include_usage": true}')
    body = orjson.loads(asked)
    assert CHAT_PASSAGE.build(ChatRequest(CHAT, asked, body, stream=True), "m") == asked.replace(
        b'"openrouter/m"', b'"m"')
    other = raw.replace(b'"stream": true', b'"stream": true, "stream_options": {"include_obfuscation": false}')
    body = orjson.loads(other)
    sent = orjson.loads(CHAT_PASSAGE.build(ChatRequest(CHAT, other, body, stream=True), "m"))
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True} and sent["model"] == "m"
