"""The fakes speak their protocols: raw httpx, the official openai and ollama clients, and the CLIs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import orjson
import pytest
from aiohttp import web

from tests.fakes import BackgroundServer, FakeOllama, FakeOpenAI, Reply
from tests.fakes.ollama import BUSY

KEY = "sk-test-secret-123"
ROOT = Path(__file__).resolve().parents[2]
HELLO = "Hello! How can I help you today?"


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


def oai(flavor: str = "openai") -> FakeOpenAI:
    return FakeOpenAI(api_key=KEY, flavor=flavor)


def sdk(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)


def sse_events(text: str) -> list[str]:
    """Every non-blank SSE line, comments included."""
    return [line for line in text.split("\n") if line]


def data_of(events: list[str]) -> list[object]:
    return [e[6:] if e == "data: [DONE]" else orjson.loads(e[6:]) for e in events if e.startswith("data: ")]


AGENT = {"User-Agent": "KimiCLI/1.2.0"}


def chat(fake: FakeOpenAI, model: str, headers: dict[str, str] | None = None, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi"}], **extra}
    return httpx.post(f"{fake.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}", **(headers or {})})


# -- BackgroundServer ---------------------------------------------------------


def test_background_server_binds_port_zero_and_joins_its_thread() -> None:
    before = threading.active_count()
    app = web.Application()
    with BackgroundServer(app) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url + "/nothing").status_code == 404
    assert threading.active_count() == before
    with pytest.raises(RuntimeError):
        server.url


# -- Ollama ---------------------------------------------------------------------


def test_ollama_streams_ndjson_when_stream_is_omitted(fake_ollama: FakeOllama) -> None:
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(fake_ollama.url + "/api/chat", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    assert len(lines) > 2 and all(not x["done"] for x in lines[:-1])
    assert "".join(x["message"]["content"] for x in lines) == HELLO
    final = lines[-1]
    assert final["done"] and final["message"]["content"] == "" and final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 1 and final["eval_count"] == 7
    assert {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"} <= set(final)


def test_ollama_official_client_chat_generate_tags(fake_ollama: FakeOllama) -> None:
    fake_ollama.replies["qwen3:8b"] = Reply(text="Three", thinking="Count r's",
                                            tool_calls=[{"name": "get_weather", "arguments": {"city": "Tokyo"}}])
    with ollama.Client(host=fake_ollama.url) as client:
        parts = list(client.chat("qwen3:8b", messages=[{"role": "user", "content": "r in strawberry?"}], stream=True))
        assert parts[0].message.thinking == "Count" and "".join(p.message.content or "" for p in parts) == "Three"
        calls = [c for p in parts for c in p.message.tool_calls or []]
        assert calls[0].function.name == "get_weather" and calls[0].function.arguments == {"city": "Tokyo"}
        assert parts[-1].done and parts[-1].done_reason == "stop"
        whole = client.generate("llama3.2", "Why is the sky blue?", stream=False, format="json")
        assert orjson.loads(whole.response) == {"answer": HELLO} and whole.context and whole.eval_count
        assert [m.model for m in client.list().models] == ["qwen3:8b", "llama3.2:latest", "gpt-oss:120b"]
    assert fake_ollama.requests[0].json["stream"] is True and fake_ollama.requests[0].path == "/api/chat"


def test_ollama_errors_before_and_after_streaming(fake_ollama: FakeOllama) -> None:
    url = fake_ollama.url
    r = httpx.post(url + "/api/chat", json={"model": "nope"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'nope' not found"})
    assert httpx.post(url + "/api/chat", content=b"{oops").status_code == 400
    assert httpx.post(url + "/api/chat", json={"messages": []}).json() == {"error": "model is required"}
    fake_ollama.replies["llama3.2"] = Reply(status=429, error="slow down", retry_after=3)
    r = httpx.post(url + "/api/chat", json={"model": "llama3.2"})
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (429, {"error": "slow down"}, "3")

    fake_ollama.replies["llama3.2"] = Reply(fail_after=2, error="boom")
    r = httpx.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "Why?"})
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    assert r.status_code == 200 and [x.get("response") for x in lines[:2]] == ["Hello!", " How"]
    assert lines[2:] == [{"error": "boom"}]
    with pytest.raises(ollama.ResponseError, match="boom"):
        with ollama.Client(host=url) as client:
            list(client.generate("llama3.2", "Why?", stream=True))


def test_ollama_show_and_capability_errors(fake_ollama: FakeOllama) -> None:
    with ollama.Client(host=fake_ollama.url) as client:
        shown = client.show("qwen3:8b")  # ollama-python's ShowResponse needs model_info
        assert "thinking" in shown.capabilities and shown.modelinfo["qwen3.context_length"] == 40960
        assert "thinking" not in client.show("llama3.2").capabilities
        with pytest.raises(ollama.ResponseError) as missing:
            client.show("nope")
        assert missing.value.status_code == 404
        with pytest.raises(ollama.ResponseError, match='"llama3.2" does not support thinking'):
            client.chat("llama3.2", messages=[{"role": "user", "content": "Hi"}], think=True)
        assert client.chat("llama3.2", messages=[{"role": "user", "content": "Hi"}], think=False).message.content
    with FakeOllama(["gemma:2b"], capabilities={"gemma:2b": ["completion"]}) as fake:
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        r = httpx.post(fake.url + "/api/chat", json={"model": "gemma:2b", "messages": [], "tools": [tool]})
        assert (r.status_code, r.json()) == (400, {"error": '"gemma:2b" does not support tools'})


def test_ollama_tool_call_ids_harmony_done_line_busy_and_omitted_metrics() -> None:
    call = {"name": "get_weather", "arguments": {"city": "Tokyo"}}
    with FakeOllama(["qwen3:8b", "gpt-oss:20b"]) as fake:
        fake.replies["qwen3:8b"] = fake.replies["gpt-oss:20b"] = Reply(text="", tool_calls=[call],
                                                                        prompt_tokens=0)
        for model, in_final in (("qwen3:8b", False), ("gpt-oss:20b", True)):
            lines = [orjson.loads(x) for x in httpx.post(fake.url + "/api/chat", json={
                "model": model, "messages": []}).text.splitlines()]
            carrying = [x for x in lines if x["message"].get("tool_calls")]
            assert len(carrying) == 1 and carrying[0]["done"] is in_final
            assert carrying[0]["message"]["tool_calls"][0]["id"].startswith("call_")
            assert "prompt_eval_count" not in lines[-1] and lines[-1]["eval_count"] > 0
        fake.replies["qwen3:8b"] = Reply(status=503)
        busy = httpx.post(fake.url + "/api/chat", json={"model": "qwen3:8b", "messages": []})
        assert (busy.status_code, busy.json()["error"]) == (503, BUSY)


def test_a_non_streamed_answer_sends_no_head_until_it_is_complete(fake_ollama: FakeOllama) -> None:
    fake_ollama.replies["llama3.2"] = Reply(text="one two three four five", delay_chunks=0.1)
    started = threading.Event()
    with httpx.Client(base_url=fake_ollama.url) as client:
        def head_arrives() -> None:
            with client.stream("POST", "/api/chat", json={"model": "llama3.2", "stream": False}) as r:
                started.set()
                r.read()

        worker = threading.Thread(target=head_arrives)
        worker.start()
        assert fake_ollama.wait_open_requests(1)
        assert not started.wait(0.3)  # five pieces at 0.1 s: nothing for ~0.5 s, not even the status
        assert started.wait(5)
        worker.join()


def test_ollama_drop_tags_version_and_cloud_key() -> None:
    with FakeOllama(["gpt-oss:120b"], api_key=KEY) as fake:
        assert httpx.get(fake.url + "/api/tags").json() == {"error": "unauthorized"}
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.head(fake.url + "/api/version", headers=auth).status_code == 200
        assert httpx.get(fake.url + "/api/version", headers=auth).json() == {"version": "0.13.0"}
        fake.replies["gpt-oss:120b"] = Reply(drop_after=1)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(fake.url + "/api/chat", json={"model": "gpt-oss:120b"}, headers=auth)
        assert fake.wait_open_streams(0)


def test_ollama_stream_closed_when_client_leaves(fake_ollama: FakeOllama) -> None:
    fake_ollama.replies["qwen3:8b"] = Reply(delay_chunks=30)
    with httpx.Client() as client:
        with client.stream("POST", fake_ollama.url + "/api/chat", json={"model": "qwen3:8b"}) as r:
            lines = r.iter_lines()  # keep a reference: a discarded iterator closes the connection
            assert orjson.loads(next(lines))["message"]["content"] == "Hello!"
            assert fake_ollama.open_streams == 1
    assert fake_ollama.wait_open_streams(0, timeout=2)
    assert fake_ollama.wait_open_requests(0, timeout=2)


# -- OpenAI-compatible --------------------------------------------------------


def test_openai_sdk_non_stream_tool_calls_and_zero_choices() -> None:
    with oai() as fake, sdk(fake) as client:
        done = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "Hi"}])
        assert done.choices[0].message.content == HELLO and done.choices[0].finish_reason == "stop"
        assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (1, 7, 8)
        fake.replies["gpt-4.1"] = Reply(text="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Tokyo"}}])
        call = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "Hi"}])
        assert call.choices[0].finish_reason == "tool_calls" and call.choices[0].message.content is None
        assert call.choices[0].message.tool_calls[0].function.arguments == '{"city":"Tokyo"}'
        fake.replies["gpt-4.1"] = Reply(zero_choices=True)
        assert client.chat.completions.create(model="gpt-4.1", messages=[]).choices == []
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=[])
        fake.replies["gpt-4o-mini"] = Reply(status=429, retry_after=7)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=[])
        assert info.value.response.headers["retry-after"] == "7"
        assert [m.id for m in client.models.list()] == ["gpt-4.1", "gpt-4o-mini"]
        assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_openai_stream_include_usage_and_tool_deltas() -> None:
    with oai() as fake, sdk(fake) as client:
        fake.replies["gpt-4.1"] = Reply(text="Hi", tool_calls=[{"name": "f", "arguments": {"city": "Tokyo"}}])
        r = chat(fake, "gpt-4.1", stream=True, stream_options={"include_usage": True})
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = data_of(sse_events(r.text))
        assert chunks[-1] == "[DONE]" and len({c["id"] for c in chunks[:-1]}) == 1
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert all(c["usage"] is None for c in chunks[:-2])
        assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["total_tokens"] > 0
        assert chunks[-3]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]
        calls = [d for c in chunks[1:-3] for d in c["choices"][0]["delta"].get("tool_calls", [])]
        assert calls[0]["id"] and calls[0]["function"] == {"name": "f", "arguments": ""}
        assert "".join(d["function"]["arguments"] for d in calls[1:]) == '{"city":"Tokyo"}'
        assert "usage" not in data_of(sse_events(chat(fake, "gpt-4.1", stream=True).text))[0]
        fake.replies["gpt-4.1"] = Reply(fail_after=1, error="went wrong")
        with pytest.raises(openai.APIError, match="went wrong"):
            list(client.chat.completions.create(model="gpt-4.1", messages=[], stream=True))


def test_openrouter_comments_and_error_chunk() -> None:
    with oai("openrouter") as fake, sdk(fake) as client:
        fake.replies["openai/gpt-4o-mini"] = Reply(fail_after=2, thinking="hmm")
        events = sse_events(chat(fake, "openai/gpt-4o-mini", stream=True).text)
        assert events[0] == ": OPENROUTER PROCESSING" and events.count(": OPENROUTER PROCESSING") > 2
        chunks = data_of(events)
        assert chunks[1]["choices"][0]["delta"] == {"reasoning": "hmm"}
        assert chunks[-1]["error"]["message"] and chunks[-1]["choices"][0]["finish_reason"] == "error"
        assert "[DONE]" not in chunks
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=[], stream=True))


def test_opencode_cost_after_done_and_error_shape() -> None:
    with oai("opencode") as fake, sdk(fake) as client:
        chunks = data_of(sse_events(chat(fake, "big-pickle", stream=True).text))
        assert chunks[-2] == "[DONE]" and chunks[-1]["cost"] == "0.00042" and chunks[-1]["choices"] == []
        assert chunks[-3]["choices"] == [] and chunks[-3]["usage"]["completion_tokens"] == 7
        text = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model="big-pickle", messages=[], stream=True) if c.choices)
        assert text == HELLO
        r = chat(fake, "gpt-5")
        assert (r.status_code, r.json()["type"], r.json()["error"]["type"]) == (401, "error", "ModelError")


def test_kimi_reasoning_content_and_usage_in_choice() -> None:
    with oai("kimi") as fake:
        fake.replies["kimi-for-coding"] = Reply(thinking="Let me think")
        chunks = data_of(sse_events(chat(fake, "kimi-for-coding", AGENT, stream=True).text))
        assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks[:-1]) == "Let me think"
        assert chunks[-2]["choices"][0]["usage"]["prompt_tokens"] == 2 and "usage" not in chunks[-2]
        message = chat(fake, "kimi-for-coding", AGENT).json()["choices"][0]["message"]
        assert message["reasoning_content"] == "Let me think"


def test_kimi_admits_coding_agents_only() -> None:
    with oai("kimi") as fake:
        refused = chat(fake, "kimi-for-coding", {"User-Agent": "python-httpx/0.28"})
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "access_terminated_error"
        assert "only available for Coding Agents" in refused.json()["error"]["message"]
        assert chat(fake, "kimi-for-coding", {"User-Agent": "claude-cli/2.1.332 (external, sdk-cli)"}).status_code == 200


def test_kimi_refuses_a_tool_call_turn_without_its_reasoning_while_thinking() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
    history = [{"role": "user", "content": "list"}, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}]
    with oai("kimi") as fake:
        refused = chat(fake, "kimi-for-coding", AGENT, messages=history)
        assert refused.status_code == 400
        assert "reasoning_content is missing in assistant tool call message at index 1" in refused.text
        history[1] = {**history[1], "reasoning_content": "I should list the files"}
        assert chat(fake, "kimi-for-coding", AGENT, messages=history).status_code == 200
        history[1] = {"role": "assistant", "content": None, "tool_calls": [call]}
        assert chat(fake, "kimi-for-coding", AGENT, messages=history,
                    thinking={"type": "disabled"}).status_code == 200


def test_openrouter_moderation_is_a_403_with_its_reasons() -> None:
    with oai("openrouter") as fake:
        fake.replies["openai/gpt-4o-mini"] = Reply(status=403, error="Your input was flagged")
        refused = chat(fake, "openai/gpt-4o-mini")
        error = refused.json()["error"]
        assert refused.status_code == 403 and error["code"] == 403 and error["metadata"]["reasons"]


def test_401_does_not_echo_any_key() -> None:
    with oai() as fake:
        for headers in ({}, {"Authorization": "Bearer sk-wrong-key-456"}):
            body = {"model": "gpt-4.1", "messages": []}
            r = httpx.post(f"{fake.base_url}/chat/completions", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert KEY not in r.text and "sk-wrong" not in r.text


def test_openai_stream_closed_when_client_leaves_and_hang() -> None:
    with oai() as fake:
        fake.replies["gpt-4.1"] = Reply(delay_chunks=30)
        body = {"model": "gpt-4.1", "messages": [], "stream": True}
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
            with client.stream("POST", f"{fake.base_url}/chat/completions", json=body) as r:
                lines = r.iter_lines()  # keep a reference: a discarded iterator closes the connection
                assert next(lines).startswith("data: ")
                assert fake.wait_open_streams(1, timeout=2)
            assert fake.wait_open_streams(0, timeout=2)
            fake.replies["gpt-4.1"] = Reply(hang=True)
            with pytest.raises(httpx.ReadTimeout):
                client.post(f"{fake.base_url}/chat/completions", json=body, timeout=0.2)
            assert fake.wait_open_requests(0, timeout=2) and fake.open_streams == 0


# -- standalone entry points ---------------------------------------------------


@pytest.mark.parametrize("argv, path", [
    (["tests.fakes.ollama", "--port", "0", "--models", "qwen3:8b,llama3.2"], "/api/tags"),
    (["tests.fakes.openai_compat", "--port", "0", "--api-key", "K"], "/v1/models"),
    (["tests.fakes.anthropic", "--port", "0", "--api-key", "K"], "/v1/models"),
    (["tests.fakes.responses", "--port", "0", "--api-key", "K", "--models", "gpt-5"], "/v1/models"),
])
def test_cli_prints_url_and_exits_on_sigterm(argv: list[str], path: str) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer K", "anthropic-version": "2023-06-01"}  # the others ignore the version
        assert httpx.get(url + path, headers=headers).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0 and proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
