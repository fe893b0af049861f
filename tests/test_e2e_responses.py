"""The OpenAI Responses surface end to end: the official openai SDK's `client.responses` against chatd
under hypercorn, routed to every kind of upstream — translated for Chat Completions and Ollama
upstreams, passed through byte for byte to one that speaks Responses itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import openai
import orjson
import pytest

from tests.conftest import KEYS
from tests.fakes import Reply
from tests.test_e2e_streaming import ROUTES as CHAT_ROUTES
from tests.test_observability import access_lines, wait_for

ROUTES = [*CHAT_ROUTES, ("openai/gpt-5", "openai", "gpt-5")]  # (model asked, fake, model the fake sees)
SHELL = [{"type": "function", "name": "exec_command", "description": "Run a shell command", "strict": False,
          "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}]


@pytest.fixture
def client(closing) -> Callable[..., openai.OpenAI]:
    """`client(server)`: the openai SDK with chatd's /v1/chat as its base URL, closed after the test."""
    return lambda server: closing(openai.OpenAI(base_url=server.url + "/v1/chat", api_key="unused", max_retries=0))


def post(server, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/responses", json=body, timeout=10, **kwargs)


def events(response: httpx.Response) -> list[dict]:
    return [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_create_for_every_transform(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="The sky is blue.", prompt_tokens=9, completion_tokens=4)
    response = client(gateway).responses.create(model=model, input="Why is the sky blue?",
                                                instructions="Be brief.")
    assert response.output_text == "The sky is blue." and response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 4)
    assert response.id.startswith("resp_")
    assert response.model == (upstream_model if fake == "openai" else model)  # passthrough: the upstream's own
    sent = upstreams[fake].requests[-1]
    if fake == "openai":  # the client's own bytes, only the model rewritten
        assert sent.path == "/v1/responses" and sent.json["instructions"] == "Be brief."
    elif fake.startswith("ollama"):
        assert sent.path.startswith("/api/")
    else:
        assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_stream_for_every_transform(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three", thinking="hmm")
    with client(gateway).responses.stream(model=model, input="Count", reasoning={"summary": "auto"}) as stream:
        seen = [event for event in stream]
        final = stream.get_final_response()
    numbers = [event.sequence_number for event in seen]
    assert numbers == list(range(len(numbers)))
    assert seen[0].type == "response.created" and seen[-1].type == "response.completed"
    assert final.output_text == "one two three"
    deltas = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert deltas == "one two three"


def test_passthrough_is_byte_for_byte_both_ways(gateway, openai_api):
    body = (b'{"model": "openai/gpt-5", "input": [{"role": "user", "content": "hi", "x-unknown": 1}],\n'
            b' "store": false, "stream": true}')
    response = httpx.post(gateway.url + "/v1/chat/responses", content=body, timeout=10)
    assert response.status_code == 200 and response.headers["x-chatd-provider"] == "openai"
    assert openai_api.requests[-1].body == body.replace(b'"openai/gpt-5"', b'"gpt-5"')
    kinds = [event["type"] for event in events(response)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"' in response.text


def test_previous_response_id_passes_through_to_a_provider_that_stores_responses(gateway, openai_api, client):
    first = client(gateway).responses.create(model="openai/gpt-5", input="Remember 7")
    upstream_id = openai_api.requests[-1]
    assert upstream_id.json["input"] == "Remember 7"
    stored = next(iter(openai_api.stored))
    again = client(gateway).responses.create(model="openai/gpt-5", input="What was it?",
                                             previous_response_id=stored)
    assert again.status == "completed" and first.status == "completed"
    assert openai_api.requests[-1].json["previous_response_id"] == stored


@pytest.mark.parametrize("model", ["qwen3:8b", "openrouter/moonshotai/kimi-k2"])
def test_previous_response_id_elsewhere_says_to_send_the_whole_conversation(gateway, upstreams, model, client):
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).responses.create(model=model, input="again", previous_response_id="resp_1")
    assert refused.value.code == "previous_response_id_unsupported"
    assert "send the whole conversation" in refused.value.message
    assert not any(fake.requests for fake in upstreams.values())


def test_nothing_is_stored_to_retrieve(gateway, client):
    with pytest.raises(openai.NotFoundError) as missing:
        client(gateway).responses.retrieve("resp_123")
    assert "stores no responses" in missing.value.message


@pytest.mark.parametrize("model, fake, upstream_model", [ROUTES[0], ROUTES[2]])
def test_a_function_call_round_trip(gateway, upstreams, model, fake, upstream_model, client):
    upstreams[fake].replies[upstream_model] = Reply(text="", tool_calls=[{"name": "exec_command",
                                                                          "arguments": {"cmd": "ls"}}])
    sdk = client(gateway)
    first = sdk.responses.create(model=model, input="List the files", tools=SHELL)
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, orjson.loads(call.arguments)) == ("exec_command", {"cmd": "ls"}) and call.call_id
    upstreams[fake].replies[upstream_model] = Reply(text="There is a.txt")
    second = sdk.responses.create(model=model, tools=SHELL, input=[
        {"role": "user", "content": "List the files"}, call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "a.txt\n"}])
    assert second.output_text == "There is a.txt"
    messages = upstreams[fake].requests[-1].json["messages"]
    tool = next(m for m in messages if m["role"] == "tool")
    assert tool["content"] == "a.txt\n"
    if fake == "openrouter":
        assert tool["tool_call_id"] == call.call_id


def test_an_answer_cut_by_max_tokens_is_incomplete(gateway, ollama, client):
    ollama.replies["qwen3:8b"] = Reply(text="a b c", done_reason="length")
    response = client(gateway).responses.create(model="qwen3:8b", input="Go on", max_output_tokens=3)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert ollama.requests[-1].json["options"]["num_predict"] == 3
    streamed = events(post(gateway, {"model": "qwen3:8b", "input": "Go on", "stream": True}))
    assert streamed[-1]["type"] == "response.incomplete"


def test_an_error_before_the_stream_is_an_openai_error(gateway, openrouter, client):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=500, error="boom")
    with pytest.raises(openai.InternalServerError) as failed:
        client(gateway).responses.create(model="openrouter/moonshotai/kimi-k2", input="Hi")
    assert failed.value.status_code == 502 and failed.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("model, fake, upstream_model", ROUTES)
def test_a_failure_after_the_stream_began_is_response_failed(gateway, upstreams, model, fake, upstream_model):
    upstreams[fake].replies[upstream_model] = Reply(text="one two three four", fail_after=2, error="it broke")
    streamed = events(post(gateway, {"model": model, "input": "Count", "stream": True}))
    assert streamed[-1]["type"] == "response.failed" and streamed[-1]["response"]["status"] == "failed"
    assert streamed[-1]["response"]["error"]["message"]
    numbers = [event["sequence_number"] for event in streamed]
    assert numbers == list(range(len(numbers)))


def test_a_stream_that_fails_before_content_falls_back(make_chatd, kimi, ollama_cloud):
    chatd = make_chatd()
    kimi.replies["kimi-for-coding"] = Reply(fail_after=0)
    ollama_cloud.replies["kimi-k2.6"] = Reply(text="from the cloud")
    response = post(chatd, {"model": "smart", "input": "Hi", "stream": True})
    assert response.headers["x-chatd-provider"] == "ollama_cloud" and response.headers["x-chatd-attempts"] == "2"
    assert events(response)[-1]["response"]["output"][0]["content"][0]["text"] == "from the cloud"


def test_an_in_band_failure_of_a_passthrough_stream_still_falls_back(gateway, openai_api, ollama):
    """`response.failed` before any content: held back from the client, and the next entry asked."""
    openai_api.replies["gpt-5"] = Reply(fail_after=0, error="upstream overloaded")
    ollama.replies["qwen3:8b"] = Reply(text="from ollama")
    response = post(gateway, {"model": "coder", "input": "Hi", "stream": True})  # coder = openai/gpt-5, qwen3:8b
    assert response.headers["x-chatd-provider"] == "ollama" and response.headers["x-chatd-attempts"] == "2"
    streamed = events(response)
    assert [e["type"] for e in streamed].count("response.failed") == 0
    assert streamed[-1]["type"] == "response.completed"
    assert streamed[-1]["response"]["output"][-1]["content"][0]["text"] == "from ollama"


def test_codex_shaped_request_is_accepted(gateway, ollama):
    body = {"model": "qwen3:8b", "stream": True, "store": False, "parallel_tool_calls": True,
            "tool_choice": "auto", "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "s1", "client_metadata": {"turn_id": "t1"},
            "input": [{"type": "message", "role": "developer", "id": "msg_1",
                       "content": [{"type": "input_text", "text": "You are Codex."}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "tools": [*SHELL, {"type": "web_search", "external_web_access": False},
                      {"type": "namespace", "name": "multi_agent_v1", "description": "agents",
                       "tools": [{"type": "function", "name": "spawn_agent", "strict": False,
                                  "parameters": {"type": "object", "properties": {}}}]}]}
    streamed = events(post(gateway, body))
    assert streamed[-1]["type"] == "response.completed" and streamed[-1]["response"]["id"].startswith("resp_")
    done = [e for e in streamed if e["type"] == "response.output_item.done" and e["item"]["type"] == "message"]
    assert done and done[0]["item"]["content"][0]["text"]
    sent = ollama.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "You are Codex."}
    assert {tool["function"]["name"] for tool in sent["tools"]} == {"exec_command", "multi_agent_v1__spawn_agent"}


def test_responses_requests_are_logged_and_counted(gateway, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    response = post(gateway, {"model": "qwen3:8b", "input": "Hi"}, headers={"x-request-id": "resp-log-1"})
    assert response.headers["x-request-id"] == "resp-log-1"
    assert wait_for(lambda: any(line["request_id"] == "resp-log-1" for line in access_lines(caplog)))
    line = next(line for line in access_lines(caplog) if line["request_id"] == "resp-log-1")
    assert line["path"] == "/v1/chat/responses" and line["provider"] == "ollama" and line["tokens_out"] > 0
    metrics = httpx.get(gateway.url + "/v1/chat/metrics", timeout=10).text
    assert 'chatd_requests_total{client="",provider="ollama",status="200"}' in metrics


def test_a_client_that_leaves_mid_stream_closes_the_upstream(gateway, openai_api):
    openai_api.replies["gpt-5"] = Reply(text="a b c d e f g h", delay_chunks=0.3)
    with httpx.stream("POST", gateway.url + "/v1/chat/responses", timeout=10,
                      json={"model": "openai/gpt-5", "input": "Go", "stream": True}) as response:
        for line in response.iter_lines():
            if "output_text.delta" in line:
                break
    assert openai_api.wait_open_streams(0)


def test_a_body_over_the_limit_is_413(make_chatd):
    response = post(make_chatd(extra="max_body_bytes = 200"), {"model": "qwen3:8b", "input": "x" * 400})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_no_key_in_any_responses_answer(gateway, openai_api):
    openai_api.replies["gpt-5"] = Reply(status=400, error=f"bad request from {KEYS['OPENAI_API_KEY']}")
    response = post(gateway, {"model": "openai/gpt-5", "input": "Hi"})
    assert response.status_code == 400 and KEYS["OPENAI_API_KEY"] not in response.text
