"""Fallback chains, retries, cooldown and in-flight limits, end to end over real sockets."""

from __future__ import annotations

import asyncio

import httpx
import openai
import orjson
import pytest

from tests.conftest import KEYS
from tests.fakes import Reply

HI = [{"role": "user", "content": "Hi"}]
FAST_RETRIES = "retries = 2\nretry_backoff_s = 0.01\nretry_backoff_max_s = 0.02\ncooldown_s = 0"


def post(server, model: str, **fields) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json={"model": model, "messages": HI, **fields},
                      timeout=10)


def sse_events(response: httpx.Response) -> list[dict | str]:
    return [line[6:] if line == "data: [DONE]" else orjson.loads(line[6:])
            for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("failure", [
    Reply(status=500, error="boom"), Reply(status=429, error="slow"), Reply(status=401, error="bad key"),
    Reply(drop_after=0), Reply(zero_choices=True),
])
def test_tier_falls_back_to_the_next_entry(gateway, kimi, ollama_cloud, failure):
    kimi.replies["kimi-for-coding"] = failure
    ollama_cloud.replies["kimi-k2.6"] = Reply(text="from the cloud")
    response = post(gateway, "smart")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "from the cloud"
    assert response.headers["x-chatd-provider"] == "ollama_cloud"
    assert response.headers["x-chatd-model"] == "kimi-k2.6"
    assert response.headers["x-chatd-attempts"] == "2"
    assert len(kimi.requests) == 1 and len(ollama_cloud.requests) == 1


def test_a_stream_that_fails_before_content_still_falls_back(gateway, kimi, ollama_cloud):
    kimi.replies["kimi-for-coding"] = Reply(text="never seen", fail_after=0)
    ollama_cloud.replies["kimi-k2.6"] = Reply(text="second try works")
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                      json={"model": "smart", "messages": HI, "stream": True}) as response:
        assert response.headers["x-chatd-provider"] == "ollama_cloud"
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert text == "second try works"
    assert len({e["id"] for e in events[:-1]}) == 1  # one upstream's stream, not two spliced


def test_after_content_reached_the_client_there_is_no_fallback(gateway, kimi, ollama_cloud):
    kimi.replies["kimi-for-coding"] = Reply(text="one two three", fail_after=2)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                      json={"model": "smart", "messages": HI, "stream": True}) as response:
        events = sse_events(response)
    assert "error" in events[-1]
    assert ollama_cloud.requests == []


def test_unregistered_entries_are_skipped(make_chatd, ollama_cloud):
    chatd = make_chatd(environ={k: v for k, v in KEYS.items() if k != "KIMI_API_KEY"})
    response = post(chatd, "smart")
    assert response.status_code == 200
    assert (response.headers["x-chatd-provider"], response.headers["x-chatd-attempts"]) == ("ollama_cloud", "1")


def test_a_rejected_request_does_not_fall_back(gateway, kimi, ollama_cloud):
    kimi.replies["kimi-for-coding"] = Reply(status=400, error="messages too long")
    response = post(gateway, "smart")
    assert response.status_code == 400 and "messages too long" in response.json()["error"]["message"]
    assert ollama_cloud.requests == []


def test_every_entry_failing_reports_the_last_failure(gateway, kimi, ollama_cloud):
    kimi.replies["kimi-for-coding"] = Reply(status=500, error="kimi down")
    ollama_cloud.replies["kimi-k2.6"] = Reply(status=503, error="cloud down")
    response = post(gateway, "smart")
    assert response.status_code == 502 and "cloud down" in response.json()["error"]["message"]
    assert response.headers["x-chatd-attempts"] == "2"


def test_resolve_shows_the_chain(gateway):
    chain = httpx.get(gateway.url + "/v1/chat/resolve", params={"model": "smart"}).json()["chain"]
    assert [c["provider"] for c in chain] == ["kimi", "ollama_cloud"]


@pytest.mark.parametrize("failure", [Reply(status=503, error="busy"), Reply(status=429, error="slow"),
                                     Reply(drop_after=0)])
def test_retries_recover_before_the_first_byte(make_chatd, openrouter, failure):
    chatd = make_chatd(base=FAST_RETRIES)
    openrouter.replies["moonshotai/kimi-k2"] = [failure, failure, Reply(text="third time lucky")]
    response = post(chatd, "router")
    assert response.status_code == 200 and response.headers["x-chatd-attempts"] == "3"
    assert response.json()["choices"][0]["message"]["content"] == "third time lucky"
    stats = chatd.app.telemetry.snapshot()["openrouter"]
    assert stats["retries"] == 2 and stats["requests"] == 3


def test_retries_are_bounded_and_not_made_for_other_errors(make_chatd, openrouter):
    chatd = make_chatd(base=FAST_RETRIES)
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=503, error="busy")
    assert post(chatd, "router").headers["x-chatd-attempts"] == "3"  # 1 + retries
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=500, error="bug")
    assert post(chatd, "router").headers["x-chatd-attempts"] == "1"


def test_retry_after_is_honoured_up_to_the_cap(make_chatd, openrouter):
    chatd = make_chatd(base=FAST_RETRIES + "\nretry_after_max_s = 0.5")
    openrouter.replies["moonshotai/kimi-k2"] = [Reply(status=429, error="slow", retry_after="0.2"), Reply(text="ok")]
    response = post(chatd, "router")
    assert response.status_code == 200 and response.headers["x-chatd-attempts"] == "2"
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=429, error="slow", retry_after="60")
    response = post(chatd, "router")
    assert response.status_code == 429 and response.headers["retry-after"] == "60"
    assert response.headers["x-chatd-attempts"] == "1"  # not worth holding the client for a minute


def test_cooldown_skips_a_failing_provider_in_chains(make_chatd, kimi, ollama_cloud):
    chatd = make_chatd(base="retries = 0\ncooldown_failures = 2\ncooldown_s = 30")
    kimi.replies["kimi-for-coding"] = Reply(status=500, error="down")
    for _ in range(2):
        assert post(chatd, "smart").headers["x-chatd-provider"] == "ollama_cloud"
    assert len(kimi.requests) == 2
    response = post(chatd, "smart")
    assert response.headers["x-chatd-provider"] == "ollama_cloud" and response.headers["x-chatd-attempts"] == "1"
    assert len(kimi.requests) == 2  # skipped while cooling
    providers = {p["name"]: p for p in httpx.get(chatd.url + "/v1/chat/providers").json()["providers"]}
    assert providers["kimi"]["available"] is False and 0 < providers["kimi"]["cooldown_s"] <= 30
    assert providers["ollama_cloud"]["available"] is True
    assert post(chatd, "kimi/kimi-for-coding").status_code == 502  # a direct request still asks it


def test_requests_an_upstream_rejects_do_not_put_it_in_cooldown(make_chatd, kimi):
    chatd = make_chatd(base="retries = 0\ncooldown_failures = 2\ncooldown_s = 30")
    kimi.replies["kimi-for-coding"] = Reply(status=400, error="bad request")
    for _ in range(3):
        assert post(chatd, "smart").status_code == 400  # the request's fault: no fallback either
    assert len(kimi.requests) == 3
    providers = {p["name"]: p for p in httpx.get(chatd.url + "/v1/chat/providers").json()["providers"]}
    assert providers["kimi"]["available"] is True


def test_in_flight_limit_answers_429_instead_of_queueing(make_chatd, openrouter):
    chatd = make_chatd(base="retries = 0\ncooldown_s = 0\nmax_in_flight = 2")
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as http:
            def ask():
                return asyncio.ensure_future(http.post(chatd.url + "/v1/chat/completions",
                                                       json={"model": "router", "messages": HI}))
            hung = [ask(), ask()]
            assert await asyncio.to_thread(openrouter.wait_open_requests, 2, 5)
            third = await ask()
            for task in hung:
                task.cancel()
            await asyncio.gather(*hung, return_exceptions=True)
            error = third.json()["error"]
            return [third.status_code, third.headers.get("retry-after"), error["type"], error["code"]]

    assert asyncio.run(scenario()) == [429, "1", "rate_limited", "provider_max_in_flight"]
    assert openrouter.wait_open_requests(0, timeout=5)


def test_sdk_sees_one_clean_stream_through_a_fallback(gateway, kimi, ollama_cloud):
    kimi.replies["kimi-for-coding"] = Reply(status=503, error="down")
    ollama_cloud.replies["kimi-k2.6"] = Reply(text="fallback answer")
    sdk = openai.OpenAI(base_url=gateway.url + "/v1/chat", api_key="x", max_retries=0)
    chunks = list(sdk.chat.completions.create(model="smart", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fallback answer"
