"""The inbound Ollama API as pure functions: Ollama requests → OpenAI bodies, OpenAI answers → Ollama replies."""

from __future__ import annotations

import orjson
import pytest

from chat_middleware.config import ProviderConfig
from chat_middleware.errors import BadRequest, UpstreamError, UpstreamTimeout
from chat_middleware.surfaces.ollama import tag_list
from chat_middleware.surfaces.ollama_render import OllamaChatRenderer, OllamaGenerateRenderer
from chat_middleware.surfaces.ollama_request import chat_request, data_url, generate_request
from chat_middleware.streams import Chunk
from chat_middleware.transforms.ollama_chat import OllamaChat

HI = [{"role": "user", "content": "Hi"}]
PNG = "iVBORw0KGgoAAAANSUhEUg=="
JPEG = "/9j/4AAQSkZJRg=="
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
LOCAL = ProviderConfig(name="ollama", transform="ollama_chat", base_url="http://127.0.0.1:11434", think=False)


def chat(native: bool = False, **fields) -> dict:
    return chat_request({"model": "m", "messages": HI} | fields, native=native)


def generate(native: bool = False, **fields) -> dict:
    return generate_request({"model": "m", "prompt": "Why?"} | fields, native=native)


# ----- /api/chat requests


def test_chat_streams_by_default_as_ollama_does():
    assert chat() == {"model": "m", "stream": True, "messages": HI}
    assert chat(stream=False)["stream"] is False


def test_options_become_openai_sampling_fields():
    request = chat(options={"temperature": 0.2, "top_p": 0.9, "seed": 7, "num_predict": 64, "stop": ["END"],
                            "frequency_penalty": 0.1, "presence_penalty": -0.1, "top_k": 20, "num_ctx": 8192})
    assert {k: v for k, v in request.items() if k not in ("model", "stream", "messages")} == {
        "temperature": 0.2, "top_p": 0.9, "seed": 7, "max_tokens": 64, "stop": ["END"],
        "frequency_penalty": 0.1, "presence_penalty": -0.1}


def test_ollama_defaults_that_mean_no_value_are_dropped():
    request = chat(options={"num_predict": -1, "seed": -1, "stop": []})
    assert "max_tokens" not in request and "seed" not in request and "stop" not in request


def test_native_chains_keep_every_option_and_think_for_the_ollama_upstream():
    options = {"num_ctx": 8192, "top_k": 20, "num_predict": 32, "temperature": 0}
    request = chat(native=True, options=options, think="high")
    assert request["options"] == options and request["think"] == "high"
    assert "reasoning_effort" not in request
    sent = orjson.loads(OllamaChat().build(request, "qwen3:8b", LOCAL, True))
    assert sent["options"] == {"num_ctx": 8192, "top_k": 20, "num_predict": 32, "temperature": 0}
    assert sent["think"] == "high" and sent["stream"] is True


@pytest.mark.parametrize("think, effort", [("low", "low"), ("high", "high"), ("max", "max"), (True, None),
                                           (False, None)])
def test_think_for_openai_upstreams_is_a_reasoning_effort_or_nothing(think, effort):
    request = chat(think=think)
    assert request.get("reasoning_effort") == effort and "think" not in request


@pytest.mark.parametrize("fmt, expected", [
    ("json", {"type": "json_object"}),
    ({"type": "object", "properties": {"a": {"type": "integer"}}},
     {"type": "json_schema", "json_schema": {"name": "response", "schema": {
         "type": "object", "properties": {"a": {"type": "integer"}}}}}),
    ("", None),
])
def test_format_becomes_response_format(fmt, expected):
    assert chat(format=fmt).get("response_format") == expected


def test_images_become_data_url_parts_and_come_back_to_ollama_as_base64():
    request = chat(messages=[{"role": "user", "content": "What is this?", "images": [PNG, JPEG]}])
    assert request["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + JPEG}},
    ]
    sent = orjson.loads(OllamaChat().build(request, "llava", LOCAL, False))
    assert sent["messages"] == [{"role": "user", "content": "What is this?", "images": [PNG, JPEG]}]


def test_data_url_keeps_a_data_url_and_guesses_png_for_unknown_bytes():
    assert data_url("data:image/gif;base64,R0lGOD") == "data:image/gif;base64,R0lGOD"
    assert data_url("AAAA") == "data:image/png;base64,AAAA"


def test_tool_round_trip_ids_pair_calls_with_results_by_tool_name():
    history = [
        {"role": "user", "content": "Weather in Tokyo and Paris, and the time?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
            {"function": {"name": "get_time", "arguments": {}}},
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        ]},
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        {"role": "tool", "content": "rain"},
    ]
    messages = chat(messages=history, tools=[WEATHER])["messages"]
    assistant = messages[1]
    assert assistant["content"] is None
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        ("call_1_0", "get_weather", '{"city":"Tokyo"}'),
        ("call_1_1", "get_time", "{}"),
        ("call_1_2", "get_weather", '{"city":"Paris"}'),
    ]
    assert [m["tool_call_id"] for m in messages[2:]] == ["call_1_1", "call_1_0", "call_1_2"]


def test_client_ids_are_kept_and_matched():
    history = [
        {"role": "assistant", "tool_calls": [{"id": "call_a", "function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "done", "tool_call_id": "call_a", "tool_name": "f"},
    ]
    messages = chat(messages=history)["messages"]
    assert messages[0]["tool_calls"][0]["id"] == "call_a" and messages[1]["tool_call_id"] == "call_a"


def test_tool_history_reaches_an_ollama_upstream_with_names_and_object_arguments():
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    sent = orjson.loads(OllamaChat().build(chat(native=True, messages=history, tools=[WEATHER]), "q", LOCAL, True))
    assert sent["messages"][1]["tool_calls"][0]["function"] == {
        "index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}
    assert sent["messages"][2]["tool_name"] == "get_weather"
    assert sent["tools"] == [WEATHER]


def test_roles_are_lowercased_and_thinking_in_history_travels_as_reasoning_content():
    messages = chat(messages=[{"role": "User", "content": "Hi"},
                              {"role": "assistant", "content": "Hello", "thinking": "greet back"}])["messages"]
    assert messages == [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello", "reasoning_content": "greet back"}]


def test_no_messages_means_only_load_the_model():
    assert chat_request({"model": "m"}, native=False) is None
    assert chat_request({"model": "m", "messages": [], "tools": []}, native=False) is None


@pytest.mark.parametrize("fields, message", [
    ({"messages": "Hi"}, "messages must be a list"),
    ({"messages": ["Hi"]}, "messages[0] must be an object"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be one of"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content must be a string"),
    ({"messages": [{"role": "user", "content": "x", "images": [1]}]}, "messages[0].images must be a list"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]},
     "messages[0].tool_calls[0].function.arguments must be a JSON object"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
     "messages[0].tool_calls[0] must be"),
    ({"stream": "yes"}, "stream must be true or false"),
    ({"format": "yaml"}, 'format must be "json" or a JSON Schema object'),
    ({"options": []}, "options must be an object"),
    ({"options": {"temperature": "hot"}}, "options.temperature must be a number"),
    ({"options": {"num_predict": 1.5}}, "options.num_predict must be an integer"),
    ({"options": {"stop": [1]}}, "options.stop must be a list of strings"),
    ({"think": "very"}, "think must be true, false or one of low, medium, high, max"),
    ({"tools": {"name": "f"}}, "tools must be a list"),
    ({"tools": [{"type": "function"}]}, "tools[0] must be"),
    ({"logprobs": True}, "logprobs are not supported"),
])
def test_invalid_chat_requests_are_400s_that_name_the_field(fields, message):
    with pytest.raises(BadRequest) as caught:
        chat(**fields)
    assert message in caught.value.message


# ----- /api/generate requests


def test_generate_is_a_system_and_a_user_turn():
    request = generate(system="Be brief.", options={"num_predict": 10}, stream=False)
    assert request == {"model": "m", "stream": False, "max_tokens": 10, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]}


def test_generate_images_join_the_prompt():
    content = generate(images=[PNG])["messages"][0]["content"]
    assert content == [{"type": "text", "text": "Why?"},
                       {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]


def test_generate_with_no_prompt_only_loads_the_model():
    assert generate_request({"model": "m"}, native=False) is None
    assert generate_request({"model": "m", "prompt": "", "system": "s"}, native=False) is None


@pytest.mark.parametrize("fields, message", [
    ({"raw": True}, "raw prompts are not supported"),
    ({"raw": "yes"}, "raw must be true or false"),
    ({"suffix": "}"}, "suffix is not supported"),
    ({"template": "{{ .Prompt }}"}, "template is not supported"),
    ({"context": [1, 2, 3]}, "context is not supported"),
    ({"prompt": 42}, "prompt must be a string"),
    ({"images": "abc"}, "images must be a list"),
])
def test_invalid_generate_requests_are_400s(fields, message):
    with pytest.raises(BadRequest) as caught:
        generate(**fields)
    assert message in caught.value.message


def test_generate_accepts_what_ollama_clients_send_empty():
    assert generate(raw=False, suffix="", template="", context=[])["messages"] == [{"role": "user", "content": "Why?"}]


# ----- replies


class Decoder:
    prompt_tokens = 12
    completion_tokens = 5


def chunk(delta: dict, finish_reason: str | None = None) -> Chunk:
    return Chunk(orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish_reason}]}))


def lines(data: bytes) -> list[dict]:
    assert data.endswith(b"\n") or not data
    return [orjson.loads(line) for line in data.splitlines()]


COMPLETION = {
    "id": "c", "object": "chat.completion", "model": "upstream-model",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "reasoning_content": "Look it up.",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}}]}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
}


def test_chat_completion_is_one_done_object_with_object_arguments():
    reply = orjson.loads(OllamaChatRenderer("fast").completion(COMPLETION, b"", False, 1.5))
    assert reply["model"] == "fast" and reply["created_at"].endswith("Z")
    assert reply["message"] == {"role": "assistant", "content": "", "thinking": "Look it up.", "tool_calls": [
        {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}]}
    assert (reply["done"], reply["done_reason"], reply["prompt_eval_count"], reply["eval_count"]) == (
        True, "stop", 20, 8)
    assert reply["total_duration"] == 1_500_000


def test_think_false_keeps_reasoning_out_of_the_reply():
    reply = orjson.loads(OllamaChatRenderer("m", thinking=False).completion(COMPLETION, b"", False, 1.0))
    assert "thinking" not in reply["message"]


def test_generate_completion_has_response_instead_of_message():
    completion = {"choices": [{"finish_reason": "length", "message": {"role": "assistant", "content": "Rayleigh"}}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    reply = orjson.loads(OllamaGenerateRenderer("m").completion(completion, b"", False, 2.0))
    assert reply["response"] == "Rayleigh" and "message" not in reply
    assert (reply["done"], reply["done_reason"], reply["eval_count"]) == (True, "length", 4)


def test_stream_lines_then_a_final_line():
    renderer = OllamaChatRenderer("m")
    out = renderer.chunks([chunk({"role": "assistant", "content": ""}), chunk({"reasoning": "Hmm."}),
                           chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop")])
    out += renderer.finish(Decoder(), 3.0)
    replies = lines(out)
    assert [r["message"].get("thinking", "") for r in replies[:3]] == ["Hmm.", "", ""]
    assert [r["message"]["content"] for r in replies] == ["", "Hel", "lo", ""]
    assert [r["done"] for r in replies] == [False, False, False, True]
    assert (replies[-1]["done_reason"], replies[-1]["prompt_eval_count"], replies[-1]["eval_count"]) == (
        "stop", 12, 5)


def test_streamed_tool_call_fragments_arrive_as_one_whole_call():
    renderer = OllamaChatRenderer("m")
    fragments = [
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Tokyo"}'}}]}),
    ]
    assert renderer.chunks(fragments) == b""
    replies = lines(renderer.chunks([chunk({}, "tool_calls")]) + renderer.finish(Decoder(), 1.0))
    assert replies[0]["message"]["tool_calls"] == [
        {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}},
        {"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {}}},
    ]
    assert replies[0]["done"] is False and replies[1]["done"] is True and replies[1]["done_reason"] == "stop"


def test_tool_call_arguments_that_are_not_an_object_are_an_upstream_error():
    renderer = OllamaChatRenderer("m")
    renderer.chunks([chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "f", "arguments": "[1"}}]})])
    with pytest.raises(UpstreamError, match="not a JSON object"):
        renderer.chunks([chunk({}, "tool_calls")])


def test_a_retry_forgets_what_the_failed_attempt_collected():
    renderer = OllamaChatRenderer("m")
    renderer.chunks([chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "f", "arguments": "{"}}]})])
    renderer.serving(None)  # type: ignore[arg-type]
    assert lines(renderer.finish(Decoder(), 1.0))[0]["done"] is True


def test_generate_stream_uses_response():
    renderer = OllamaGenerateRenderer("m")
    replies = lines(renderer.chunks([chunk({"content": "The"}), chunk({}, "stop")]) + renderer.finish(Decoder(), 1))
    assert [(r["response"], r["done"]) for r in replies] == [("The", False), ("", True)]


def test_errors_are_ollama_shaped_before_and_inside_a_stream():
    renderer = OllamaChatRenderer("m")
    error = UpstreamTimeout("ollama sent nothing within 60s")
    assert orjson.loads(renderer.error_body(error)) == {"error": "ollama sent nothing within 60s"}
    assert renderer.stream_error(error) == b'{"error":"ollama sent nothing within 60s"}\n'
    assert renderer.stream_headers[0] == (b"content-type", b"application/x-ndjson")


def test_load_reply():
    assert orjson.loads(OllamaChatRenderer("m").loaded()) | {"created_at": ""} == {
        "model": "m", "created_at": "", "message": {"role": "assistant", "content": ""}, "done": True,
        "done_reason": "load"}
    assert orjson.loads(OllamaGenerateRenderer("m").loaded(unloaded=True))["done_reason"] == "unload"


def test_tags_list_the_models_of_the_openai_list():
    models = orjson.dumps({"object": "list", "data": [
        {"id": "fast", "object": "model", "created": 1_753_357_673, "owned_by": "chatd"},
        {"id": "ollama/qwen3:4b", "object": "model", "created": 1_753_357_673, "owned_by": "ollama"}]})
    listed = orjson.loads(tag_list(models))["models"]
    assert [(m["name"], m["model"]) for m in listed] == [("fast", "fast"), ("ollama/qwen3:4b", "ollama/qwen3:4b")]
    assert listed[0]["modified_at"] == "2025-07-24T11:47:53Z" and len(listed[0]["digest"]) == 64
    assert set(listed[0]["details"]) == {"parent_model", "format", "family", "families", "parameter_size",
                                         "quantization_level"}
