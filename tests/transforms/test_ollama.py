"""The Ollama transforms as pure functions: request bytes out, OpenAI objects and chunks back."""

from __future__ import annotations

import orjson
import pytest

from chat_middleware.config import ProviderConfig
from chat_middleware.errors import BadRequest, UpstreamError, UpstreamStreamError
from chat_middleware.transforms.ollama_chat import OllamaChat
from chat_middleware.transforms.ollama_generate import OllamaGenerate, flatten_messages

LOCAL = ProviderConfig(name="ollama", transform="ollama_chat", base_url="http://127.0.0.1:11434", think=False)
CLOUD = ProviderConfig(
    name="ollama_cloud", transform="ollama_generate", base_url="https://ollama.com",
    key_env="OLLAMA_CLOUD_KEY", think=False, min_output_tokens=400, default_temperature=0.3,
)
PLAIN = ProviderConfig(name="plain", transform="ollama_chat", base_url="http://h")
HI = [{"role": "user", "content": "Hi"}]
PNG = "data:image/png;base64,iVBORw0KGgo="
IMAGE = {"type": "image_url", "image_url": {"url": PNG}}
WEATHER_CALL = {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}


def chat(body: dict, provider: ProviderConfig = LOCAL, stream: bool = False, model: str = "qwen3:8b") -> dict:
    return orjson.loads(OllamaChat().build(body, model, provider, stream))


def generate(body: dict, provider: ProviderConfig = CLOUD, stream: bool = False) -> dict:
    return orjson.loads(OllamaGenerate().build(body, "gpt-oss:120b", provider, stream))


# ----- requests


def test_chat_request_sets_model_stream_false_and_think_false_explicitly():
    sent = chat({"model": "ollama/qwen3:8b", "messages": HI})
    assert sent == {"model": "qwen3:8b", "messages": HI, "stream": False, "think": False}


def test_chat_request_streams_only_when_asked_and_omits_think_when_provider_has_none():
    sent = chat({"messages": HI, "stream": False}, provider=PLAIN, stream=True)
    assert sent == {"model": "qwen3:8b", "messages": HI, "stream": True}


def test_options_mapping():
    sent = chat({
        "messages": HI, "max_completion_tokens": 64, "max_tokens": 9, "temperature": 0, "top_p": 0.5,
        "stop": "END", "seed": 7, "frequency_penalty": 0.1, "presence_penalty": -0.2,
    })
    assert sent["options"] == {
        "num_predict": 64, "temperature": 0, "top_p": 0.5, "frequency_penalty": 0.1,
        "presence_penalty": -0.2, "seed": 7, "stop": ["END"],
    }
    assert chat({"messages": HI, "max_tokens": 9, "stop": ["a", "b"]})["options"] == {
        "num_predict": 9, "stop": ["a", "b"]}


def test_cloud_provider_floor_and_default_temperature():
    assert generate({"messages": HI})["options"] == {"num_predict": 400, "temperature": 0.3}
    assert generate({"messages": HI, "max_tokens": 50})["options"]["num_predict"] == 400
    assert generate({"messages": HI, "max_tokens": 2000, "temperature": 1.2})["options"] == {
        "num_predict": 2000, "temperature": 1.2}
    assert chat({"messages": HI}, provider=CLOUD)["options"] == {"num_predict": 400, "temperature": 0.3}


def test_format_from_response_format():
    assert chat({"messages": HI, "response_format": {"type": "json_object"}})["format"] == "json"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert chat({"messages": HI, "response_format": rf})["format"] == schema
    assert "format" not in chat({"messages": HI, "response_format": {"type": "text"}})
    assert generate({"messages": HI, "response_format": {"type": "json_object"}})["format"] == "json"


@pytest.mark.parametrize(("effort", "think"), [
    ("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "max"), ("max", "max"),
])
def test_reasoning_effort_to_think(effort, think):
    assert chat({"messages": HI, "reasoning_effort": effort})["think"] == think


def test_images_from_data_urls():
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "text", "text": "this?"},
    ]}]
    assert chat({"messages": messages})["messages"] == [
        {"role": "user", "content": "What is\nthis?", "images": ["iVBORw0KGgo="]}]
    assert generate({"messages": messages})["images"] == ["iVBORw0KGgo="]


def test_http_image_url_is_rejected_with_a_clear_message():
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]
    with pytest.raises(BadRequest, match="data URL"):
        chat({"messages": messages})


def test_tool_calls_round_trip_and_tool_name_lookup():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": WEATHER_CALL}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
    ]
    sent = chat({"messages": messages, "tools": tools})
    assert sent["tools"] == tools
    assert sent["messages"] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Tokyo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
        {"role": "tool", "content": "18C", "tool_name": "get_weather", "tool_call_id": "call_a"},
    ]
    assert "tools" not in chat({"messages": HI, "tools": tools, "tool_choice": "none"})
    assert "tools" not in generate({"messages": HI, "tools": tools})


def test_flatten_messages_for_generate():
    system, prompt, images = flatten_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "Weather in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": WEATHER_CALL}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "assistant", "content": "Il fait 18C."},
        {"role": "user", "content": [{"type": "text", "text": "And this?"}, IMAGE]},
    ])
    assert system == "Be brief.\n\nAnswer in French."
    assert prompt == (
        "User: Weather in Tokyo?\n\n"
        'Assistant: get_weather({"city":"Tokyo"})\n\n'
        "Tool: 18C\n\n"
        "Assistant: Il fait 18C.\n\n"
        "User: And this?"
    )
    assert images == ["iVBORw0KGgo="]


def test_generate_request():
    sent = generate({"messages": [{"role": "system", "content": "S"}, *HI], "stream": True}, stream=True)
    assert sent == {
        "model": "gpt-oss:120b", "prompt": "User: Hi", "stream": True, "system": "S",
        "options": {"num_predict": 400, "temperature": 0.3}, "think": False,
    }
    assert "system" not in generate({"messages": HI})


HOSTILE = [
    ({"messages": "Hi"}, "messages must be a list"),
    ({"messages": {"role": "user"}}, "messages must be a list"),
    ({}, "messages must be a list"),
    ({"messages": []}, "at least one message"),
    ({"messages": ["Hi"]}, r"messages\[0\] must be an object"),
    ({"messages": [None]}, r"messages\[0\] must be an object"),
    ({"messages": [{"content": "Hi"}]}, r"messages\[0\]\.role"),
    ({"messages": [{"role": ["user"], "content": "Hi"}]}, r"messages\[0\]\.role"),
    ({"messages": [{"role": "wizard", "content": "Hi"}]}, r"messages\[0\]\.role"),
    ({"messages": [{"role": "user", "content": 42}]}, r"messages\[0\]\.content must be a string or a list"),
    ({"messages": [{"role": "user", "content": {"text": "Hi"}}]}, r"content must be a string or a list"),
    ({"messages": [{"role": "user", "content": ["Hi"]}]}, r"content\[0\] must be a content part object"),
    ({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}, r"content\[0\]\.type"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, r"content\[0\]\.type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, r"text must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, r"image_url\.url must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,x"}}]}]},
     "base64"),
    ({"messages": [{"role": "assistant", "tool_calls": "x"}]}, r"tool_calls must be a list"),
    ({"messages": [{"role": "assistant", "tool_calls": [1]}]}, r"tool_calls\[0\] must be"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]}, r"tool_calls\[0\]"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]},
     "not valid JSON"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]},
     "JSON object"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": 3, "function": {"name": "f"}}]}]}, r"\.id"),
    ({"messages": [{"role": "tool", "tool_call_id": ["x"], "content": "r"}]}, "tool_call_id"),
    ({"messages": HI, "max_tokens": "100"}, "max_tokens must be an integer"),
    ({"messages": HI, "max_tokens": True}, "max_tokens must be an integer"),
    ({"messages": HI, "max_completion_tokens": -5}, "at least 1"),
    ({"messages": HI, "max_tokens": 1.5}, "max_tokens"),
    ({"messages": HI, "temperature": "hot"}, "temperature must be a number"),
    ({"messages": HI, "seed": 1.5}, "seed must be an integer"),
    ({"messages": HI, "stop": 5}, "stop must be"),
    ({"messages": HI, "stop": ["a", None]}, "stop must be"),
    ({"messages": HI, "n": 2}, "n must be 1"),
    ({"messages": HI, "response_format": "json"}, "response_format must be an object"),
    ({"messages": HI, "response_format": {"type": "yaml"}}, "response_format.type"),
    ({"messages": HI, "response_format": {"type": "json_schema"}}, "json_schema.schema"),
    ({"messages": HI, "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"messages": HI, "reasoning_effort": 3}, "reasoning_effort"),
    ({"messages": HI, "tools": {"name": "f"}}, "tools must be a list"),
    ({"messages": HI, "tools": ["f"]}, r"tools\[0\]"),
    ({"messages": HI, "tools": [{"type": "function", "function": {}}]}, r"tools\[0\]"),
    ({"messages": HI, "options": []}, "options must be an object"),
]


@pytest.mark.parametrize(("body", "message"), HOSTILE)
@pytest.mark.parametrize("transform", [OllamaChat(), OllamaGenerate()], ids=["chat", "generate"])
def test_hostile_shapes_are_bad_requests(transform, body, message):
    if transform.name == "ollama_generate" and "tools" in body:
        assert b'"tools"' not in transform.build(body, "m", LOCAL, False)  # dropped unread
        return
    with pytest.raises(BadRequest, match=message):
        transform.build(body, "m", LOCAL, False)


# ----- non-streamed replies


def test_chat_completion_mapping():
    raw = orjson.dumps({
        "model": "llama3.2", "created_at": "2025-07-07T20:32:53.844124Z",
        "message": {"role": "assistant", "content": "Hello!", "thinking": "greet"},
        "done": True, "done_reason": "stop", "prompt_eval_count": 26, "eval_count": 3,
    })
    out = OllamaChat().completion(raw)
    assert out["id"].startswith("chatcmpl-") and len(out["id"]) > 12
    assert out["object"] == "chat.completion" and isinstance(out["created"], int)
    assert out["model"] == "llama3.2"
    assert out["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "Hello!", "reasoning": "greet"}}]
    assert out["usage"] == {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}


def test_chat_completion_with_tool_calls():
    raw = orjson.dumps({"model": "qwen3", "done": True, "done_reason": "stop", "message": {
        "role": "assistant", "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
                       {"id": "call_x", "function": {"index": 1, "name": "now", "arguments": {}}}]}})
    choice = OllamaChat().completion(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    first, second = choice["message"]["tool_calls"]
    assert first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}
    assert (second["id"], second["index"], second["function"]["arguments"]) == ("call_x", 1, "{}")


def test_generate_completion_and_finish_reasons():
    raw = orjson.dumps({"model": "llama3.2", "response": '{"reason":"Rayleigh"}', "done": True,
                        "done_reason": "length", "context": [1, 2], "prompt_eval_count": 26, "eval_count": 290})
    out = OllamaGenerate().completion(raw)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"reason":"Rayleigh"}'}
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["total_tokens"] == 316
    bare = OllamaGenerate().completion(b'{"model":"m","response":"x","done":true}')
    assert bare["choices"][0]["finish_reason"] is None
    assert bare["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"error":"model \'x\' not found"}', "model 'x' not found"),
    (b"<html>bad gateway</html>", "not JSON"),
    (b'["a"]', "not a JSON object"),
    (b'{"model":"m","message":{"content":"a"}}\n{"model":"m","done":true}\n', "not JSON"),
])
def test_bad_replies_are_upstream_errors(raw, message):
    for transform in (OllamaChat(), OllamaGenerate()):
        with pytest.raises(UpstreamError, match=message):
            transform.completion(raw)


# ----- streams

QWEN = [
    b'{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"","thinking":"Count r\'s"},'
    b'"done":false}\n',
    b'{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"Three"},"done":false}\n',
    b'{"model":"qwen3","created_at":"t","message":{"role":"assistant","thinking":" done","content":" r."},'
    b'"done":false}\n',
    b'{"model":"qwen3","created_at":"t","message":{"role":"assistant","content":""},"done":true,'
    b'"done_reason":"stop","prompt_eval_count":26,"eval_count":282}\n',
]


def feed_all(decoder, pieces: list[bytes]) -> list[dict]:
    chunks = []
    for piece in pieces:
        chunks += decoder.feed(piece)
    chunks += decoder.close()
    return [orjson.loads(c.payload) for c in chunks]


def awkward(lines: list[bytes]) -> list[bytes]:
    """The same bytes as: a line split in three, two lines in one piece, a lone newline."""
    blob = b"".join(lines)
    cut = len(lines[0]) // 2
    two = len(lines[0]) + len(lines[1]) + 5
    return [blob[:7], blob[7:cut], blob[cut:two], blob[two:-1], blob[-1:]]


def deltas(chunks: list[dict]) -> list:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) if c["choices"] else c["usage"]
            for c in chunks]


@pytest.mark.parametrize("pieces", [QWEN, awkward(QWEN), [b"".join(QWEN)]], ids=["lines", "awkward", "one"])
def test_chat_stream_exact_chunk_sequence(pieces):
    decoder = OllamaChat().decoder(include_usage=False)
    chunks = feed_all(decoder, pieces)
    assert deltas(chunks) == [
        ({"role": "assistant", "reasoning": "Count r's"}, None),
        ({"content": "Three"}, None),
        ({"reasoning": " done"}, None),
        ({"content": " r."}, None),
        ({}, "stop"),
    ]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "qwen3" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert (decoder.done, decoder.prompt_tokens, decoder.completion_tokens, decoder.finish_reason) == (
        True, 26, 282, "stop")


def test_stream_usage_chunk_only_when_asked():
    chunks = feed_all(OllamaChat().decoder(include_usage=True), awkward(QWEN))
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 26, "completion_tokens": 282, "total_tokens": 308}
    assert chunks[-1]["id"] == chunks[0]["id"] and chunks[-1]["created"] == chunks[0]["created"]


def test_stream_tool_calls():
    lines = [
        b'{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"function":'
        b'{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}\n',
        b'{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_b","function":'
        b'{"index":0,"name":"now","arguments":{}}}]},"done":false}\n',
        b'{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n',
    ]
    decoder = OllamaChat().decoder(include_usage=False)
    chunks = feed_all(decoder, awkward(lines))
    (first, _), (second, _), (last, reason) = deltas(chunks)
    assert first["role"] == "assistant"
    [call] = first["tool_calls"]
    assert call["index"] == 0 and call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}
    assert second == {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                      "function": {"name": "now", "arguments": "{}"}}]}
    assert (last, reason, decoder.finish_reason) == ({}, "tool_calls", "tool_calls")


def test_tool_calls_in_the_done_line_and_a_null_error_field():
    """Ollama's harmony parser (gpt-oss) sends tool calls with `done: true`; `"error": null` is no error."""
    lines = [
        b'{"model":"gpt-oss","message":{"role":"assistant","content":"","thinking":"need ls"},"done":false,'
        b'"error":null}\n',
        b'{"model":"gpt-oss","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_x","function":'
        b'{"index":0,"name":"ls","arguments":{"path":"."}}}]},"done":true,"done_reason":"stop","eval_count":3}\n',
    ]
    decoder = OllamaChat().decoder(include_usage=False)
    chunks = feed_all(decoder, awkward(lines))
    assert deltas(chunks) == [
        ({"role": "assistant", "reasoning": "need ls"}, None),
        ({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                          "function": {"name": "ls", "arguments": '{"path":"."}'}}]}, None),
        ({}, "tool_calls"),
    ]
    completion = OllamaChat().completion(lines[1].replace(b'"done":true', b'"error":null,"done":true'))
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_reasoning_of_an_earlier_turn_becomes_its_thinking():
    for field in ("reasoning_content", "reasoning"):
        sent = chat({"messages": [*HI, {"role": "assistant", "content": "Hello", field: "greet back"}]})
        assert sent["messages"][1] == {"role": "assistant", "content": "Hello", "thinking": "greet back"}


def test_generate_stream_length_and_lines_after_done_ignored():
    lines = [
        b'{"model":"llama3.2","response":"The","done":false}\n',
        b'{"model":"llama3.2","response":" sky","done":false}\n',
        b'{"model":"llama3.2","response":"","done":true,"done_reason":"length","context":[1],'
        b'"prompt_eval_count":5,"eval_count":2}\n',
        b'{"model":"llama3.2","response":"ghost","done":false}\n',
        b"not json after done",
    ]
    decoder = OllamaGenerate().decoder(include_usage=True)
    chunks = feed_all(decoder, awkward(lines))
    assert deltas(chunks) == [
        ({"role": "assistant", "content": "The"}, None),
        ({"content": " sky"}, None),
        ({}, "length"),
        {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    ]


def test_empty_stream_still_opens_with_the_role():
    decoder = OllamaGenerate().decoder(include_usage=False)
    chunks = feed_all(decoder, [b'{"model":"m","response":"","done":true}\n'])
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None), ({}, "stop")]


def test_in_band_error_line_fails_after_earlier_chunks():
    decoder = OllamaGenerate().decoder(include_usage=False)
    assert len(decoder.feed(b'{"model":"llama3.2","response":"The","done":false}\n{"model":"llama3.2",')) == 1
    chunks = decoder.feed(b'"response":" sky","done":false}\n'
                          b'{"error":"an error was encountered while running the model"}\n'
                          b'{"model":"llama3.2","response":" later","done":false}\n')
    assert [c.data["choices"][0]["delta"] for c in chunks] == [{"content": " sky"}]
    assert isinstance(decoder.failure, UpstreamStreamError)
    assert "an error was encountered while running the model" in decoder.failure.message
    with pytest.raises(UpstreamStreamError):
        decoder.close()


@pytest.mark.parametrize("line", [b"<html>oops</html>\n", b"[1, 2]\n"])
def test_garbage_line_fails(line):
    decoder = OllamaChat().decoder(include_usage=False)
    assert len(decoder.feed(line)) == 0
    assert isinstance(decoder.failure, UpstreamStreamError)


def test_truncated_stream_raises_on_close():
    decoder = OllamaChat().decoder(include_usage=False)
    assert len(decoder.feed(QWEN[0] + QWEN[1][:20])) == 1
    with pytest.raises(UpstreamStreamError, match="ended in the middle of a line"):
        decoder.close()


def test_final_line_without_newline_is_read_on_close():
    decoder = OllamaChat().decoder(include_usage=False)
    decoder.feed(b"".join(QWEN)[:-1])
    assert not decoder.done
    assert deltas([orjson.loads(c.payload) for c in decoder.close()]) == [({}, "stop")]
    assert decoder.done


def test_stream_cut_between_lines_raises_on_close():
    decoder = OllamaChat().decoder(include_usage=False)
    decoder.feed(QWEN[0] + QWEN[1])
    with pytest.raises(UpstreamStreamError, match="ended before its final"):
        decoder.close()


def test_flatten_never_leaves_generate_an_empty_prompt():
    # Ollama answers an empty prompt with done_reason "load" and no text.
    assert flatten_messages([{"role": "system", "content": "Say hi."}]) == ("", "Say hi.", [])
    image_only = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}]
    assert flatten_messages(image_only) == ("", "User: [image]", ["iVBORw0KGgo="])


def test_native_ollama_fields_survive_for_ollama_clients():
    body = {"messages": HI, "options": {"num_ctx": 8192, "temperature": 0.9}, "think": "high", "format": "json"}
    sent = chat(body, provider=CLOUD)
    assert sent["options"] == {"num_ctx": 8192, "temperature": 0.9, "num_predict": 400}
    assert (sent["think"], sent["format"]) == ("high", "json")
    assert chat({**body, "reasoning_effort": "none", "temperature": 0.1})["options"]["temperature"] == 0.1
    assert chat({**body, "reasoning_effort": "none"})["think"] is False
