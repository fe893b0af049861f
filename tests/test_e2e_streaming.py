"""Streaming through chatd with the official openai SDK, sync and async, for every transform."""

from __future__ import annotations

import asyncio

import httpx
import openai
import orjson
import pytest

from tests.fakes import Reply

HI = [{"role": "user", "content": "Hi there"}]
ROUTES = [  # (model asked, fake name, model the fake sees)
    ("qwen3:8b", "ollama", "qwen3:8b"),
    ("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6"),
    ("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2"),
    ("opencode/big-pickle", "opencode", "big-pickle"),
    ("kimi/kimi-for-coding", "kimi", "kimi-for-coding"),
]


def client(server, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1/chat", api_key="unused", max_retries=0, **kwargs)


def aclient(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1/chat", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_sdk_non_stream(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="The sky is blue.")
    completion = client(gateway).chat.completions.create(model=model, messages=HI)
    assert completion.choices[0].message.content == "The sky is blue."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_sdk_stream(gateway, upstreams, model, fake, upstream_model, include_usage):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four")
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client(gateway).chat.completions.create(model=model, messages=HI, stream=True, **options))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage_chunks = [c for c in chunks if not c.choices]
    if include_usage and fake == "kimi":  # Kimi reports usage inside the choice, passed through as is
        assert usage_chunks == [] and chunks[-1].choices[0].model_extra["usage"]["completion_tokens"] > 0
    elif include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0].usage.completion_tokens > 0
    else:
        assert usage_chunks == []
    assert upstreams[fake].requests[-1].json["stream"] is True


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_telemetry_gets_usage_from_every_stream(make_chatd, upstreams, model, fake, upstream_model):
    chatd = make_chatd()
    upstreams[fake].replies[upstream_model] = Reply(text="a b c", prompt_tokens=11, completion_tokens=3)
    list(client(chatd).chat.completions.create(model=model, messages=HI, stream=True))
    stats = chatd.app.telemetry.snapshot()[fake]
    assert (stats["tokens_in"], stats["tokens_out"], stats["statuses"]) == (11, 3, {200: 1})


def test_ollama_stream_translates_tool_calls_and_reasoning(gateway, ollama):
    ollama.replies["qwen3:8b"] = Reply(text="", thinking="Let me look.",
                                       tool_calls=[{"name": "get_weather", "arguments": {"city": "Tokyo"}}])
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    chunks = list(client(gateway).chat.completions.create(model="qwen3:8b", messages=HI, tools=tools, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].id and calls[0].function.name == "get_weather"
    assert orjson.loads(calls[0].function.arguments) == {"city": "Tokyo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert ollama.requests[-1].json["tools"][0]["function"]["name"] == "get_weather"


def test_native_stream_sends_deltas_then_a_final_event(gateway, ollama):
    ollama.replies["qwen3:8b"] = Reply(text="alpha beta gamma")
    with httpx.stream("POST", gateway.url + "/v1/chat", json={"model": "qwen3:8b", "messages": HI, "stream": True},
                      timeout=10) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert "".join(e["delta"] for e in events[:-1]) == "alpha beta gamma"
    final = events[-1]
    assert final["finish_reason"] == "stop" and final["input_tokens"] > 0 and final["output_tokens"] > 0
    assert final["latency_ms"] > 0 and final["provider"] == "ollama"


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_failure_after_streaming_began_is_an_sse_error_event(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four", fail_after=2)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client(gateway).chat.completions.create(model=model, messages=HI, stream=True):
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices).startswith("one")


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_dropped_connection_mid_stream_is_an_sse_error_event(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four", drop_after=2)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                      json={"model": model, "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] != "data: [DONE]"
    assert "error" in orjson.loads(lines[-1][6:])


def test_idle_timeout_mid_stream_is_an_sse_error_event(make_chatd, ollama):
    chatd = make_chatd(extra="idle_timeout_s = 0.3")
    ollama.replies["qwen3:8b"] = Reply(text="one two three", delay_chunks=3.0)
    with httpx.stream("POST", chatd.url + "/v1/chat/completions", timeout=10,
                      json={"model": "qwen3:8b", "messages": HI, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    error = orjson.loads(lines[-1][6:])["error"]
    assert error["code"] == "upstream_timeout" and "0.3s" in error["message"]
    assert ollama.wait_open_streams(0, timeout=5)


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_client_disconnect_mid_stream_closes_the_upstream(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four five six", delay_chunks=0.2)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                      json={"model": model, "messages": HI, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert upstreams[fake].open_streams == 1  # the upstream is still writing
    # leaving the block closes the client connection mid-stream
    assert upstreams[fake].wait_open_streams(0, timeout=5)
    assert len(upstreams[fake].requests) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_client_disconnect_while_waiting_closes_the_upstream(
    make_chatd, upstreams, model, fake, upstream_model, stream
):
    chatd = make_chatd()
    upstream = upstreams[fake]
    upstream.replies[upstream_model] = Reply(hang=True)

    async def leave_early() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            request = http.post(chatd.url + "/v1/chat/completions", json={
                "model": model, "messages": HI, "stream": stream})
            task = asyncio.ensure_future(request)
            assert await asyncio.to_thread(upstream.wait_open_requests, 1, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(leave_early())
    assert upstream.wait_open_requests(0, timeout=5)
    stats = chatd.app.telemetry.snapshot()[fake]
    assert stats["statuses"] == {499: 1} and stats["in_flight"] == 0


def test_total_deadline_ends_a_stream_that_keeps_trickling(make_chatd, ollama):
    chatd = make_chatd(extra="timeout_s = 0.5\nidle_timeout_s = 5")
    ollama.replies["qwen3:8b"] = Reply(text=" ".join(["tick"] * 50), delay_chunks=0.05)
    with httpx.stream("POST", chatd.url + "/v1/chat/completions", timeout=10,
                      json={"model": "qwen3:8b", "messages": HI, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert 1 < len(lines) < 50
    assert "did not finish within 0.5s" in orjson.loads(lines[-1][6:])["error"]["message"]
    assert ollama.wait_open_streams(0, timeout=5)


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_native_stream_for_every_transform(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="red green blue", prompt_tokens=7, completion_tokens=3)
    with httpx.stream("POST", gateway.url + "/v1/chat", json={"model": model, "messages": HI, "stream": True},
                      timeout=10) as response:
        events = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert "".join(e["delta"] for e in events[:-1]) == "red green blue"
    assert {k: events[-1][k] for k in ("provider", "model", "input_tokens", "output_tokens", "finish_reason")} == {
        "provider": fake, "model": upstream_model, "input_tokens": 7, "output_tokens": 3, "finish_reason": "stop"}


def test_sdk_tool_call_round_trip_through_ollama(gateway, ollama):
    ollama.replies["qwen3:8b"] = Reply(text="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    sdk = client(gateway)
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    completion = sdk.chat.completions.create(model="qwen3:8b", messages=messages)
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Oslo"})
    ollama.replies["qwen3:8b"] = Reply(text="It is sunny.")
    messages += [completion.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = sdk.chat.completions.create(model="qwen3:8b", messages=messages,
                                         response_format={"type": "json_object"}, max_completion_tokens=20)
    assert answer.choices[0].message.content.startswith("{")
    sent = ollama.requests[-1].json
    assert sent["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert sent["messages"][2]["tool_name"] == "get_weather"
    assert sent["format"] == "json" and sent["options"]["num_predict"] == 20


def test_first_chunk_arrives_before_the_upstream_finishes(gateway, openrouter):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(text="a b c d e", delay_chunks=0.1)
    stream = iter(client(gateway).chat.completions.create(model="router", messages=HI, stream=True))
    first = next(stream)
    assert first.choices[0].delta.role == "assistant"
    assert openrouter.open_streams == 1  # the upstream is still writing
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert (first.choices[0].delta.content or "") + rest == "a b c d e"


async def test_fifty_concurrent_streams_complete_in_order(gateway, ollama, openrouter):
    words = " ".join(f"w{i}" for i in range(20))
    ollama.replies["qwen3:8b"] = Reply(text=words)
    openrouter.replies["moonshotai/kimi-k2"] = Reply(text=words)
    sdk = aclient(gateway)

    async def one(i: int) -> str:
        model = "qwen3:8b" if i % 2 else "router"
        stream = await sdk.chat.completions.create(model=model, messages=HI, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    results = await asyncio.gather(*(one(i) for i in range(50)))
    await sdk.close()
    assert results == [words] * 50


def test_sdk_lists_models(gateway):
    ids = [m.id for m in client(gateway).models.list()]
    assert "smart" in ids and "fast" in ids


async def test_async_sdk_non_stream(gateway):
    sdk = aclient(gateway)
    completion = await sdk.chat.completions.create(model="kimi/kimi-for-coding", messages=HI)
    await sdk.close()
    assert completion.choices[0].message.content
