"""Ollama's API inbound, end to end: the official `ollama` client against chatd under hypercorn.

Each test checks what an Ollama user sees, and what the upstream (an Ollama or an
OpenAI-compatible fake) was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from ollama import AsyncClient, Client, ResponseError

from tests.conftest import KEYS
from tests.fakes import Reply
from tests.test_e2e_streaming import HI, ROUTES as SDK_ROUTES

OLLAMA = SDK_ROUTES[0]
GROQ = ("groq/llama-3.3-70b", "groq", "llama-3.3-70b")
ROUTES = [*SDK_ROUTES, GROQ]  # (model asked, fake name, model the fake sees)
OPENAI_FAKES = ("openrouter", "opencode", "kimi", "groq")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def client() -> Iterator[Callable[..., Client]]:
    """`client(server)`: an Ollama client whose host is chatd's /v1/chat, closed after the test."""
    made: list[Client] = []

    def make(server, **kwargs) -> Client:
        made.append(Client(host=server.url + "/v1/chat", timeout=10, **kwargs))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def sent(fake) -> dict:
    """The last request body the fake upstream received."""
    return fake.requests[-1].json


# ----- chat and generate, stream and non-stream, through every kind of upstream


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_chat_non_stream(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="The sky is blue.", prompt_tokens=9, completion_tokens=4)
    reply = client(gateway).chat(model=model, messages=HI, stream=False)
    assert reply.message.role == "assistant" and reply.message.content == "The sky is blue."
    assert reply.done is True and reply.done_reason == "stop"
    assert (reply.prompt_eval_count, reply.eval_count) == (9, 4)
    assert reply.model == model and reply.total_duration > 0
    assert sent(upstreams[fake])["stream"] is False


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_chat_stream(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four", completion_tokens=4)
    parts = list(client(gateway).chat(model=model, messages=HI, stream=True))
    assert "".join(p.message.content for p in parts) == "one two three four"
    assert len(parts) > 2 and [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 4
    assert sent(upstreams[fake])["stream"] is True


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_generate_non_stream(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="Rayleigh scattering.")
    reply = client(gateway).generate(model=model, prompt="Why is the sky blue?", system="Be brief.")
    assert reply.response == "Rayleigh scattering." and reply.done and reply.done_reason == "stop"
    assert reply.eval_count > 0
    request = sent(upstreams[fake])
    if fake in OPENAI_FAKES:
        assert request["messages"] == [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Why is the sky blue?"}]
    else:
        text = orjson.dumps(request).decode()
        assert "Be brief." in text and "Why is the sky blue?" in text


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_generate_stream(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="red green blue")
    parts = list(client(gateway).generate(model=model, prompt="Colours?", stream=True))
    assert "".join(p.response for p in parts) == "red green blue"
    assert parts[-1].done is True and not any(p.done for p in parts[:-1])


async def test_async_client_chat_and_generate(gateway, groq, ollama):
    groq.replies["llama-3.3-70b"] = Reply(text="alpha beta")
    ollama.replies["qwen3:8b"] = Reply(text="gamma delta")
    async with AsyncClient(host=gateway.url + "/v1/chat", timeout=10) as sdk:
        reply = await sdk.chat(model="groq/llama-3.3-70b", messages=HI)
        text = "".join([part.response async for part in await sdk.generate(model="qwen3:8b", prompt="Go",
                                                                            stream=True)])
    assert reply.message.content == "alpha beta"
    assert text == "gamma delta"


def test_streamed_reply_is_ndjson_with_chatd_headers(gateway, groq):
    groq.replies["llama-3.3-70b"] = Reply(text="a b c")
    with httpx.stream("POST", gateway.url + "/v1/chat/api/chat", timeout=10,
                      json={"model": "groq/llama-3.3-70b", "messages": HI}) as response:  # streams by default
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["x-chatd-provider"] == "groq"
        lines = [orjson.loads(line) for line in response.iter_lines()]
    assert [line["done"] for line in lines] == [False, False, False, True]
    non_stream = httpx.post(gateway.url + "/v1/chat/api/chat", timeout=10,
                            json={"model": "groq/llama-3.3-70b", "messages": HI, "stream": False})
    assert non_stream.headers["content-type"] == "application/json"


# ----- the translated request


def test_openai_upstream_gets_openai_fields(gateway, groq, client):
    client(gateway).chat(
        model="groq/llama-3.3-70b", messages=HI, format="json", think="high",
        options={"temperature": 0.1, "top_p": 0.5, "num_predict": 32, "seed": 3, "stop": ["END"], "num_ctx": 4096})
    request = sent(groq)
    assert {k: request[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed", "stop",
                                    "response_format", "reasoning_effort")} == {
        "model": "llama-3.3-70b", "temperature": 0.1, "top_p": 0.5, "max_tokens": 32, "seed": 3, "stop": ["END"],
        "response_format": {"type": "json_object"}, "reasoning_effort": "high"}
    assert not {"options", "think", "format", "keep_alive"} & set(request)


def test_ollama_upstream_keeps_ollama_options_and_think(gateway, ollama, client):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    reply = client(gateway).chat(model="qwen3:8b", messages=HI, format=schema, think="low", keep_alive="10m",
                                 options={"num_ctx": 8192, "top_k": 20, "num_predict": 16, "temperature": 0})
    assert orjson.loads(reply.message.content) == {"answer": "Hello! How can I help you today?"}
    request = sent(ollama)
    assert request["options"] == {"num_ctx": 8192, "top_k": 20, "num_predict": 16, "temperature": 0}
    assert request["format"] == schema and request["think"] == "low" and request["stream"] is False


def test_images_reach_both_kinds_of_upstream(gateway, ollama, groq, client):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    messages = [{"role": "user", "content": "What is this?", "images": [png]}]
    client(gateway).chat(model="qwen3:8b", messages=messages)
    assert sent(ollama)["messages"] == [{"role": "user", "content": "What is this?", "images": [png]}]
    client(gateway).chat(model="groq/llama-3.3-70b", messages=messages)
    assert sent(groq)["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": "data:image/png;base64," + png}}


# ----- tool calls, both ways


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model, fake, upstream_model", [OLLAMA, GROQ])
def test_tool_call_round_trip(gateway, upstreams, model, fake, upstream_model, stream, client):
    upstream = upstreams[fake]
    upstream.replies[upstream_model] = Reply(text="", tool_calls=[{"name": "get_weather",
                                                                   "arguments": {"city": "Tokyo"}}])
    sdk = client(gateway)
    messages: list = [{"role": "user", "content": "Weather in Tokyo?"}]
    if stream:
        parts = list(sdk.chat(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True))
        with_calls = [p for p in parts if p.message.tool_calls]
        assert len(with_calls) == 1 and not with_calls[0].done  # whole, in one line, before the final one
        message = with_calls[0].message
        assert parts[-1].done and parts[-1].done_reason == "stop"
    else:
        message = sdk.chat(model=model, messages=messages, tools=[WEATHER_TOOL]).message
    call = message.tool_calls[0]
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", {"city": "Tokyo"})
    assert sent(upstream)["tools"][0]["function"]["name"] == "get_weather"

    upstream.replies[upstream_model] = Reply(text="It is sunny in Tokyo.")
    messages += [message, {"role": "tool", "content": "sunny, 24°C", "tool_name": "get_weather"}]
    answer = sdk.chat(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert answer.message.content == "It is sunny in Tokyo."
    history = sent(upstream)["messages"]
    if fake == "ollama":
        assert history[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Tokyo"}
        assert history[2]["tool_name"] == "get_weather" and history[2]["content"] == "sunny, 24°C"
    else:
        call_sent = history[1]["tool_calls"][0]
        assert orjson.loads(call_sent["function"]["arguments"]) == {"city": "Tokyo"}
        assert history[2] == {"role": "tool", "content": "sunny, 24°C", "tool_call_id": call_sent["id"]}


def test_thinking_is_shown_unless_think_is_false(gateway, openrouter, client):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(text="Three.", thinking="Count the r letters.")
    parts = list(client(gateway).chat(model="router", messages=HI, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Count the r letters."
    assert "".join(p.message.content for p in parts) == "Three."
    quiet = client(gateway).chat(model="router", messages=HI, think=False)
    assert quiet.message.thinking is None and quiet.message.content == "Three."


# ----- errors


@pytest.mark.parametrize("model, fake, upstream_model", [OLLAMA, GROQ])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_is_a_429_response_error(gateway, upstreams, model, fake, upstream_model, stream, client):
    upstreams[fake].replies[upstream_model] = Reply(status=429, error="slow down", retry_after="7")
    with pytest.raises(ResponseError) as caught:
        list(client(gateway).chat(model=model, messages=HI, stream=True)) if stream else \
            client(gateway).chat(model=model, messages=HI)
    assert caught.value.status_code == 429 and "slow down" in caught.value.error


def test_unknown_upstream_model_is_a_502_response_error(gateway, client):
    with pytest.raises(ResponseError) as caught:
        client(gateway).generate(model="ollama/no-such-model", prompt="Hi")
    assert caught.value.status_code == 502 and "model 'no-such-model' not found" in caught.value.error


def test_unregistered_provider_is_a_404_response_error(make_chatd, client):
    chatd = make_chatd(environ={})
    with pytest.raises(ResponseError) as caught:
        client(chatd).chat(model="kimi-k2.6:cloud", messages=HI)
    assert caught.value.status_code == 404 and "ollama_cloud" in caught.value.error


def test_invalid_request_is_a_400_in_ollamas_error_shape(gateway, ollama, client):
    with pytest.raises(ResponseError) as caught:
        client(gateway).chat(model="qwen3:8b", messages=HI, think="very")
    assert caught.value.status_code == 400 and caught.value.error.startswith("think must be")
    response = httpx.post(gateway.url + "/v1/chat/api/generate", content=b"not json", timeout=10)
    assert response.status_code == 400 and set(response.json()) == {"error"}
    assert isinstance(response.json()["error"], str)
    assert not ollama.requests


def test_failure_mid_stream_is_an_error_line(gateway, groq, client):
    groq.replies["llama-3.3-70b"] = Reply(text="one two three four", fail_after=2, error="model crashed")
    received = []
    with pytest.raises(ResponseError) as caught:
        for part in client(gateway).chat(model="groq/llama-3.3-70b", messages=HI, stream=True):
            received.append(part)
    assert "".join(p.message.content for p in received) == "one two"
    assert "model crashed" in caught.value.error


def test_fallback_chain_serves_ollama_clients(make_chatd, kimi, ollama_cloud, client):
    chatd = make_chatd()
    kimi.replies["kimi-for-coding"] = Reply(status=503)
    ollama_cloud.replies["kimi-k2.6"] = Reply(text="from the cloud")
    reply = client(chatd).chat(model="smart", messages=HI)
    assert reply.message.content == "from the cloud" and reply.model == "smart"
    assert len(kimi.requests) == 1 and len(ollama_cloud.requests) == 1


def test_client_keys_apply_and_refusals_are_ollama_shaped(make_chatd, client):
    chatd = make_chatd(extra='api_keys_env = "CHATD_CLIENT_KEYS"', environ={**KEYS, "CHATD_CLIENT_KEYS": "key-1"})
    with pytest.raises(ResponseError) as caught:
        client(chatd).list()
    assert caught.value.status_code == 401 and isinstance(caught.value.error, str)
    assert client(chatd, headers={"Authorization": "Bearer key-1"}).chat(model="qwen3:8b", messages=HI).done


def test_unknown_ollama_endpoints_and_methods_are_ollama_shaped(gateway):
    missing = httpx.post(gateway.url + "/v1/chat/api/pull", json={"model": "qwen3:8b"}, timeout=10)
    wrong = httpx.get(gateway.url + "/v1/chat/api/chat", timeout=10)
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert isinstance(missing.json()["error"], str) and isinstance(wrong.json()["error"], str)


# ----- loading, listing, version


def test_empty_chat_and_generate_only_load_the_model(gateway, ollama, client):
    assert client(gateway).chat(model="qwen3:8b").done_reason == "load"
    assert client(gateway).generate(model="qwen3:8b").done_reason == "load"
    assert client(gateway).generate(model="qwen3:8b", keep_alive=0).done_reason == "unload"
    assert not ollama.requests


def test_list_shows_the_models_chatd_knows(gateway, client):
    listed = client(gateway).list().models
    openai_ids = [m["id"] for m in httpx.get(gateway.url + "/v1/chat/models", timeout=10).json()["data"]]
    assert [m.model for m in listed] == openai_ids
    assert {"fast", "smart", "ollama/qwen3:4b"} <= set(openai_ids)
    assert all(m.modified_at is not None and m.details is not None for m in listed)


def test_version_is_a_current_ollama_release_and_configurable(gateway, make_chatd, client):
    version = httpx.get(gateway.url + "/v1/chat/api/version", timeout=10).json()
    assert version == {"version": "0.13.0"}  # VS Code Copilot refuses < 0.6.4
    chatd = make_chatd(extra='ollama_api_version = "0.14.2"')
    assert httpx.get(chatd.url + "/v1/chat/api/version", timeout=10).json() == {"version": "0.14.2"}


@pytest.mark.parametrize("path", ["/v1/chat/", "/v1/chat", "/v1/chat/api/version", "/v1/chat/api/tags"])
def test_start_up_probes_answer_head_and_get(gateway, path):
    """Ollama's CLI heartbeat and health checks send HEAD; `/` says Ollama is running."""
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        head, get = http.head(path), http.get(path)
    assert head.status_code == get.status_code == 200 and head.content == b""
    if path.startswith("/v1/chat/api/"):
        assert get.json()
    else:
        assert get.text == "Ollama is running"


def test_show_is_the_ollama_upstreams_own_answer(gateway, ollama, client):
    shown = client(gateway).show("ollama/qwen3:8b")  # ollama-python's ShowResponse requires model_info
    assert "thinking" in shown.capabilities and shown.modelinfo["qwen3.context_length"] == 40960
    assert ollama.requests[-1].path == "/api/show" and ollama.requests[-1].json == {"model": "qwen3:8b"}
    with pytest.raises(ResponseError) as missing:
        client(gateway).show("ollama/no-such-model")
    assert missing.value.status_code == 404 and "not found" in missing.value.error


def test_show_for_other_providers_comes_from_their_capabilities(make_chatd, client, openrouter):
    chatd = make_chatd(blocks={"opencode": 'capabilities = ["completion", "tools", "vision"]'})
    assert client(chatd).show("openrouter/moonshotai/kimi-k2").capabilities == ["completion", "tools"]
    shown = client(chatd).show("opencode/big-pickle")
    assert shown.capabilities == ["completion", "tools", "vision"] and shown.modelinfo is not None
    assert shown.details is not None and not openrouter.requests
    with pytest.raises(ResponseError) as unregistered:
        client(make_chatd(environ={})).show("kimi/kimi-for-coding")
    assert unregistered.value.status_code == 404


def test_ps_lists_no_loaded_models(gateway, client):
    assert client(gateway).ps().models == []


def test_keep_alive_reaches_ollama_upstreams_only(gateway, ollama, openrouter, client):
    client(gateway).chat(model="qwen3:8b", messages=HI, stream=False, keep_alive="10m")
    assert sent(ollama)["keep_alive"] == "10m"
    client(gateway).generate(model="qwen3:8b", prompt="Hi", stream=False, keep_alive=0)
    assert sent(ollama)["keep_alive"] == 0
    client(gateway).chat(model="openrouter/moonshotai/kimi-k2", messages=HI, stream=False, keep_alive=300)
    assert "keep_alive" not in sent(openrouter)
    bad = httpx.post(gateway.url + "/v1/chat/api/chat", timeout=10,
                     json={"model": "qwen3:8b", "messages": HI, "keep_alive": [1]})
    assert bad.status_code == 400 and "keep_alive" in bad.json()["error"]
