"""chatd against upstreams and clients that behave as the real ones do (PROTOCOLS.md), end to end.

Deadlines that follow when real servers send their head, earlier turns' reasoning carried across
APIs, honest status codes that the openai SDK does not multiply, and the identity headers of gated
providers — each through chatd under hypercorn, the fakes on real sockets and the official clients.
"""

from __future__ import annotations

import logging
import time

import httpx
import ollama
import openai
import orjson
import pytest

from tests.conftest import KEYS
from tests.fakes import Reply
from tests.fakes.openai_compat import KIMI_GATE
from tests.test_e2e_errors import assert_openai_error
from tests.test_observability import access_lines, wait_for

HI = [{"role": "user", "content": "Hi"}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{\"path\": \".\"}"}}
FAST = "first_byte_timeout_s = 0.3\ntimeout_s = 3"
"""The default deadlines (60 s to the first byte, 180 s in all), scaled down a hundredfold."""


def sdk(server, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1/chat", api_key="unused", **kwargs)


def post(server, model: str, headers: dict | None = None, **fields) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json={"model": model, "messages": HI, **fields},
                      headers=headers, timeout=10)


# ----- deadlines


@pytest.mark.parametrize("model, fake, upstream_model", [
    ("qwen3:8b", "ollama", "qwen3:8b"), ("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2")])
def test_a_non_streamed_answer_longer_than_the_first_byte_deadline_succeeds(
        make_chatd, upstreams, model, fake, upstream_model):
    """The head of a non-streamed answer comes only with the whole answer: 1.2 s here, 4× first_byte."""
    chatd = make_chatd(extra=FAST)
    upstreams[fake].replies[upstream_model] = Reply(text="a b c d e f g", delay_headers=0.6, delay_chunks=0.1)
    completion = sdk(chatd, max_retries=0).chat.completions.create(model=model, messages=HI)
    assert completion.choices[0].message.content == "a b c d e f g"


def test_the_first_byte_deadline_still_cuts_a_streamed_call(make_chatd, ollama):
    chatd = make_chatd(extra=FAST)
    ollama.replies["qwen3:8b"] = Reply(delay_headers=1.5)
    error = assert_openai_error(post(chatd, "qwen3:8b", stream=True), 504)
    assert "sent nothing within 0.3s" in error["message"]


def test_a_non_streamed_answer_past_the_total_deadline_is_a_504_on_time(make_chatd, ollama):
    chatd = make_chatd(extra="first_byte_timeout_s = 0.3\ntimeout_s = 0.8")
    ollama.replies["qwen3:8b"] = Reply(text="a b c d e f g", delay_chunks=0.5)  # complete after 3 s
    started = time.monotonic()
    error = assert_openai_error(post(chatd, "qwen3:8b"), 504)
    assert "did not finish within 0.8s" in error["message"]
    assert 0.8 <= time.monotonic() - started < 2.0
    assert ollama.wait_open_requests(0)  # the upstream call was closed, not left to finish


# ----- reasoning and tool calls across translations


def test_ollama_thinking_of_an_earlier_turn_reaches_kimi_as_reasoning_content(gateway, kimi):
    history = [{"role": "user", "content": "list files"},
               {"role": "assistant", "content": "", "thinking": "I should run ls",
                "tool_calls": [{"function": {"name": "ls", "arguments": {"path": "."}}}]},
               {"role": "tool", "content": "a.txt", "tool_name": "ls"}]
    with ollama.Client(host=gateway.url + "/v1/chat", timeout=10) as client:
        reply = client.chat(model="kimi/kimi-for-coding", messages=history, stream=False)
        assert reply.message.content
        sent = kimi.requests[-1].json["messages"][1]
        assert sent["reasoning_content"] == "I should run ls" and sent["tool_calls"][0]["id"]
        history[1].pop("thinking")  # Kimi, thinking, refuses a tool-call turn without it
        with pytest.raises(ollama.ResponseError) as refused:
            client.chat(model="kimi/kimi-for-coding", messages=history, stream=False)
        assert refused.value.status_code == 400 and "reasoning_content is missing" in refused.value.error


def test_reasoning_content_of_an_earlier_turn_reaches_ollama_as_thinking(gateway, ollama):
    history = [{"role": "user", "content": "list files"},
               {"role": "assistant", "content": None, "reasoning_content": "I should run ls", "tool_calls": [CALL]},
               {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}]
    sdk(gateway, max_retries=0).chat.completions.create(model="qwen3:8b", messages=history)
    sent = ollama.requests[-1].json["messages"][1]
    assert sent["thinking"] == "I should run ls"
    assert sent["tool_calls"] == [{"id": "call_1", "function": {"index": 0, "name": "ls", "arguments": {"path": "."}}}]


@pytest.mark.parametrize("effort, think", [("none", False), ("minimal", "low"), ("low", "low"),
                                           ("medium", "medium"), ("high", "high"), ("xhigh", "max"),
                                           ("max", "max")])
def test_every_reasoning_effort_of_the_sdk_maps_as_ollama_maps_it(gateway, ollama, effort, think):
    sdk(gateway, max_retries=0).chat.completions.create(model="qwen3:8b", messages=HI, reasoning_effort=effort)
    assert ollama.requests[-1].json["think"] == think


def test_a_model_that_cannot_think_says_so(gateway):
    error = assert_openai_error(post(gateway, "llama3.2", reasoning_effort="high"), 400)
    assert '"llama3.2" does not support thinking' in error["message"]


def test_tool_calls_in_the_done_line_reach_every_client(gateway, ollama):
    """gpt-oss models go through Ollama's harmony parser, which sends tool calls with `done: true`."""
    ollama.replies["gpt-oss:20b"] = Reply(text="", tool_calls=[{"name": "ls", "arguments": {"path": "."}}])
    stream = sdk(gateway, max_retries=0).chat.completions.create(model="gpt-oss:20b", messages=HI, stream=True)
    chunks = list(stream)
    calls = [c for chunk in chunks for c in chunk.choices[0].delta.tool_calls or []]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("ls", '{"path":"."}')]
    assert calls[0].id.startswith("call_") and chunks[-1].choices[0].finish_reason == "tool_calls"
    with ollama_client(gateway) as client:
        lines = list(client.chat(model="gpt-oss:20b", messages=HI, stream=True))
    called = [line for line in lines if line.message.tool_calls]
    assert [c.function.name for c in called[0].message.tool_calls] == ["ls"]


def ollama_client(server) -> ollama.Client:
    return ollama.Client(host=server.url + "/v1/chat", timeout=10)


# ----- honest statuses and retries


def test_a_deterministic_failure_reaches_the_upstream_only_as_often_as_chatd_tried(make_chatd, openrouter):
    """chatd retries a 502 twice itself; the SDK, at its default max_retries=2, must not triple that."""
    chatd = make_chatd(base="retries = 2\nretry_backoff_s = 0.01\nretry_backoff_max_s = 0.02\ncooldown_s = 0")
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=502, error="model down")
    with pytest.raises(openai.InternalServerError) as failed:
        sdk(chatd).chat.completions.create(model="openrouter/moonshotai/kimi-k2", messages=HI)
    assert failed.value.status_code == 502 and failed.value.response.headers["x-should-retry"] == "false"
    assert failed.value.response.headers["x-chatd-attempts"] == "3"
    assert len(openrouter.requests) == 3


def test_a_rejected_request_reaches_the_upstream_once(gateway, openrouter):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=400, error="bad parameter")
    with pytest.raises(openai.BadRequestError):
        sdk(gateway).chat.completions.create(model="openrouter/moonshotai/kimi-k2", messages=HI)
    assert len(openrouter.requests) == 1


@pytest.mark.parametrize("reply, retry", [(Reply(status=429, error="slow", retry_after=30), "true"),
                                          (Reply(status=429, error="slow"), "false"),
                                          (Reply(status=500), "false"), (Reply(hang=True), "false")])
def test_only_an_answer_with_a_retry_after_is_worth_repeating(make_chatd, openrouter, reply, retry):
    chatd = make_chatd(extra="first_byte_timeout_s = 0.3\ntimeout_s = 0.3")
    openrouter.replies["moonshotai/kimi-k2"] = reply
    response = post(chatd, "openrouter/moonshotai/kimi-k2")
    assert response.status_code >= 429 and response.headers["x-should-retry"] == retry


def test_chatds_own_refusals_are_not_worth_repeating(gateway):
    for response in (post(gateway, ""), post(gateway, "kimi-k2.6:cloud", messages="nope"),
                     httpx.get(gateway.url + "/v1/chat/nope", timeout=10)):
        assert response.status_code in (400, 404) and response.headers["x-should-retry"] == "false"


def test_an_upstream_403_keeps_its_message_and_redacts_keys(gateway, openrouter):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(
        status=403, error=f"Your input was flagged for harassment (key {KEYS['OPENROUTER_API_KEY']})")
    error = assert_openai_error(post(gateway, "openrouter/moonshotai/kimi-k2"), 403)
    assert error["code"] == "upstream_forbidden" and "flagged for harassment" in error["message"]
    assert "[redacted]" in error["message"]


def test_ollama_busy_is_retried_like_any_503(make_chatd, ollama):
    chatd = make_chatd(base="retries = 1\nretry_backoff_s = 0.01\ncooldown_s = 0")
    ollama.replies["qwen3:8b"] = [Reply(status=503), Reply(text="now I can")]
    response = post(chatd, "qwen3:8b")
    assert response.status_code == 200 and response.headers["x-chatd-attempts"] == "2"


@pytest.mark.parametrize("reply, cools", [(Reply(status=400), False), (Reply(status=403), False),
                                          (Reply(status=413), False), (Reply(status=422), False),
                                          (Reply(status=500), True), (Reply(status=429), True)])
def test_only_provider_faults_put_it_in_cooldown(make_chatd, openrouter, reply, cools):
    chatd = make_chatd(base="retries = 0\ncooldown_failures = 1\ncooldown_s = 30")
    openrouter.replies["moonshotai/kimi-k2"] = reply
    assert post(chatd, "openrouter/moonshotai/kimi-k2").status_code >= 400
    listed = httpx.get(chatd.url + "/v1/chat/providers", timeout=10).json()["providers"]
    assert next(p for p in listed if p["name"] == "openrouter")["available"] is not cools


def test_a_model_the_upstream_does_not_have_does_not_cool_it_down(make_chatd):
    chatd = make_chatd(base="retries = 0\ncooldown_failures = 1\ncooldown_s = 30")
    assert assert_openai_error(post(chatd, "ollama/no-such-model"), 502)["message"]
    listed = httpx.get(chatd.url + "/v1/chat/providers", timeout=10).json()["providers"]
    assert next(p for p in listed if p["name"] == "ollama")["available"] is True


# ----- identity: the agent's own headers reach gated providers


KIMI_DEFAULT = {"kimi": ""}
"""The built-in kimi block: it forwards the client's user-agent."""


def test_kimi_sees_the_agents_own_user_agent(make_chatd, kimi, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    chatd = make_chatd(blocks=KIMI_DEFAULT)
    agent = "claude-cli/2.1.332 (external, sdk-cli)"
    response = post(chatd, "kimi/kimi-for-coding", {"User-Agent": agent, "x-request-id": "agent-1"})
    assert response.status_code == 200, response.text
    assert kimi.requests[-1].headers["user-agent"] == agent
    assert wait_for(lambda: any(line["request_id"] == "agent-1" for line in access_lines(caplog)))
    line = next(line for line in access_lines(caplog) if line["request_id"] == "agent-1")
    assert line["forwarded"] == ["user-agent"] and agent not in caplog.text


def test_a_client_kimi_does_not_admit_gets_kimis_own_403_and_a_chain_moves_on(make_chatd, kimi, ollama_cloud):
    chatd = make_chatd(blocks=KIMI_DEFAULT)
    error = assert_openai_error(post(chatd, "kimi/kimi-for-coding", {"User-Agent": "curl/8.5"}), 403)
    assert error["code"] == "upstream_forbidden" and KIMI_GATE in error["message"]
    ollama_cloud.replies["kimi-k2.6"] = Reply(text="from the cloud")
    fell_back = post(chatd, "smart", {"User-Agent": "curl/8.5"})  # smart = kimi, then kimi-k2.6:cloud
    assert fell_back.status_code == 200 and fell_back.headers["x-chatd-provider"] == "ollama_cloud"


def test_forward_headers_pass_named_headers_only(make_chatd, openrouter):
    chatd = make_chatd(blocks={"openrouter": 'forward_headers = ["X-OpenCode-Session"]'})
    post(chatd, "openrouter/moonshotai/kimi-k2",
         {"x-opencode-session": "ses_42", "x-secret-thing": "no", "authorization": "Bearer client-key"})
    sent = openrouter.requests[-1].headers
    assert sent["x-opencode-session"] == "ses_42" and "x-secret-thing" not in sent
    assert sent["authorization"] == f"Bearer {KEYS['OPENROUTER_API_KEY']}"  # the provider's key, never the client's
    assert sent["user-agent"].startswith("chatd/")
