"""Every route end to end: chatd under hypercorn, fake providers on loopback, real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import KEYS
from tests.fakes import Reply

HI = [{"role": "user", "content": "Hi there"}]


def chat(gateway, model: str, **fields) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat", json={"model": model, "messages": HI, **fields}, timeout=10)


@pytest.mark.parametrize(
    "model, provider, upstream_model, path",
    [
        ("qwen3:8b", "ollama", "qwen3:8b", "/api/chat"),
        ("default", "ollama", "qwen3:8b", "/api/chat"),
        ("ollama/qwen3:4b", "ollama", "qwen3:4b", "/api/chat"),
        ("fast", "ollama", "qwen3:4b", "/api/chat"),
        ("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6", "/api/generate"),
        ("gpt-oss:120b-cloud", "ollama_cloud", "gpt-oss:120b", "/api/generate"),
        ("cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b", "/api/generate"),
        ("ollama_cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b", "/api/generate"),
        ("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2", "/v1/chat/completions"),
        ("router", "openrouter", "moonshotai/kimi-k2", "/v1/chat/completions"),
        ("opencode/big-pickle", "opencode", "big-pickle", "/v1/chat/completions"),
        ("kimi/kimi-for-coding", "kimi", "kimi-for-coding", "/v1/chat/completions"),
        ("smart", "kimi", "kimi-for-coding", "/v1/chat/completions"),
        ("groq/llama-3.3-70b", "groq", "llama-3.3-70b", "/v1/chat/completions"),
    ],
)
def test_native_chat_lands_on_the_right_provider(gateway, upstreams, model, provider, upstream_model, path):
    response = chat(gateway, model)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == provider and body["model"] == upstream_model
    assert body["content"] and body["input_tokens"] > 0 and body["output_tokens"] > 0
    assert body["finish_reason"] == "stop" and body["latency_ms"] > 0
    assert response.headers["x-chatd-provider"] == provider
    assert response.headers["x-chatd-model"] == upstream_model
    sent = upstreams[provider].requests[-1]
    assert sent.path == path and sent.json["model"] == upstream_model
    if path.startswith("/api/"):
        assert sent.json["stream"] is False  # Ollama streams unless told not to
    else:
        assert not sent.json.get("stream")
    others = [name for name, fake in upstreams.items() if fake.requests and name != provider]
    assert others == []


def test_ollama_chat_request_carries_the_seed_defaults(gateway, ollama):
    chat(gateway, "qwen3:8b", max_tokens=64, temperature=0.2).raise_for_status()
    sent = ollama.requests[-1].json
    assert sent["stream"] is False and sent["think"] is False
    assert sent["options"] == {"num_predict": 64, "temperature": 0.2}
    assert sent["messages"] == HI


def test_ollama_generate_flattens_and_applies_cloud_defaults(gateway, ollama_cloud):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Why?"}]
    response = httpx.post(gateway.url + "/v1/chat", json={"model": "kimi-k2.6:cloud", "messages": messages,
                                                           "max_tokens": 50}, timeout=10)
    assert response.status_code == 200, response.text
    sent = ollama_cloud.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEYS['OLLAMA_CLOUD_KEY']}"
    assert sent.json["system"] == "Be brief."
    assert sent.json["prompt"] == "User: Hi\n\nAssistant: Hello!\n\nUser: Why?"
    assert sent.json["options"]["num_predict"] == 400 and sent.json["options"]["temperature"] == 0.3
    assert sent.json["think"] is False and sent.json["stream"] is False


def test_openai_upstream_gets_key_headers_and_the_body_untouched(gateway, openrouter, kimi):
    body = (b'{"messages": [{"role": "user", "content": "caf\\u00e9"}],\n "model": "openrouter/moonshotai/kimi-k2",'
            b' "provider": {"order": ["groq"]}, "top_k": 3.0}')
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body, timeout=10)
    assert response.status_code == 200, response.text
    sent = openrouter.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEYS['OPENROUTER_API_KEY']}"
    assert sent.headers["x-title"] == "lakehouse"
    assert sent.body == body.replace(b'"openrouter/moonshotai/kimi-k2"', b'"moonshotai/kimi-k2"')  # byte for byte
    chat(gateway, "kimi/kimi-for-coding").raise_for_status()
    assert kimi.requests[-1].headers["user-agent"] == "KimiCLI/1.0"  # the provider's `headers`


def test_format_json_maps_per_transform(gateway, ollama, openrouter):
    response = chat(gateway, "qwen3:8b", format="json")
    assert response.status_code == 200
    assert ollama.requests[-1].json["format"] == "json"
    assert response.json()["content"].startswith("{")
    chat(gateway, "openrouter/moonshotai/kimi-k2", format="json").raise_for_status()
    assert openrouter.requests[-1].json["response_format"] == {"type": "json_object"}


def test_unknown_prefix_falls_through_to_default_unchanged_and_gets_502(gateway, ollama):
    response = chat(gateway, "unknown/m")
    assert response.status_code == 502
    assert "not found" in response.json()["error"]["message"]
    assert ollama.requests[-1].json["model"] == "unknown/m"


def test_providers_lists_exactly_the_registered_ones_without_keys(gateway, upstreams):
    response = httpx.get(gateway.url + "/v1/chat/providers")
    providers = response.json()["providers"]
    assert sorted(p["name"] for p in providers) == sorted(upstreams)
    assert all(set(p) == {"name", "transform", "base_url", "available", "cooldown_s", "in_flight"} for p in providers)
    assert not any(key in response.text for key in KEYS.values())


def test_dev_mode_registers_only_local_ollama(make_chatd):
    chatd = make_chatd(environ={})
    providers = httpx.get(chatd.url + "/v1/chat/providers").json()["providers"]
    assert [p["name"] for p in providers] == ["ollama"]
    for model in ("kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2", "smart", "groq/x"):
        response = chat(chatd, model)
        assert response.status_code == 404, model
        assert response.json()["error"]["code"] == "provider_not_registered"


def test_resolve_is_a_dry_run(gateway, upstreams):
    response = httpx.get(gateway.url + "/v1/chat/resolve", params={"model": "smart"})
    assert response.json() == {
        "model": "smart", "provider": "kimi", "upstream_model": "kimi-for-coding", "rule": "tier",
        "registered": True,
        "chain": [{"provider": "kimi", "upstream_model": "kimi-for-coding", "rule": "prefix", "registered": True},
                  {"provider": "ollama_cloud", "upstream_model": "kimi-k2.6", "rule": "cloud_suffix",
                   "registered": True}],
    }
    assert not any(fake.requests for fake in upstreams.values())
    assert httpx.get(gateway.url + "/v1/chat/resolve").status_code == 400


def test_resolve_gives_the_same_404_as_a_real_call(make_chatd):
    chatd = make_chatd(environ={})
    response = httpx.get(chatd.url + "/v1/chat/resolve", params={"model": "kimi-k2.6:cloud"})
    assert response.status_code == 404


def test_health_and_models(gateway):
    assert httpx.get(gateway.url + "/v1/chat/health").json()["status"] == "ok"
    ids = [m["id"] for m in httpx.get(gateway.url + "/v1/chat/models").json()["data"]]
    assert ids[:4] == ["fast", "default", "smart", "router"]
    assert "kimi/kimi-for-coding" in ids
    assert httpx.get(gateway.url + "/v1/models").json()["data"] == httpx.get(
        gateway.url + "/v1/chat/models").json()["data"]


def test_telemetry_counts_requests_tokens_and_errors(make_chatd):
    chatd = make_chatd()
    chat(chatd, "qwen3:8b").raise_for_status()
    chat(chatd, "unknown/m")
    stats = chatd.app.telemetry.snapshot()["ollama"]
    assert stats["requests"] == 2 and stats["statuses"] == {200: 1, 502: 1}
    assert stats["errors"] == {"upstream": 1}
    assert stats["tokens_in"] > 0 and stats["tokens_out"] > 0 and stats["in_flight"] == 0
    assert chatd.app.telemetry.snapshot()["kimi"]["requests"] == 0


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/chat/chat/completions", {"model": "router", "messages": HI}),   # passthrough
    ("POST", "/v1/chat/chat/completions", {"model": "qwen3:8b", "messages": HI}),  # translated
    ("POST", "/v1/chat", {"model": "qwen3:8b", "messages": HI}),                   # native shape
    ("POST", "/v1/chat/chat/completions", {"model": "qwen3:8b"}),                  # a 400
    ("GET", "/v1/chat/nowhere", None),                                             # a 404
    ("GET", "/v1/chat/models", None),
])
def test_whole_answers_say_their_length(gateway, upstreams, method, path, body):
    response = httpx.request(method, gateway.url + path, json=body, timeout=10)
    assert int(response.headers["content-length"]) == len(response.content) > 0
    assert "transfer-encoding" not in response.headers


def test_a_stream_that_arrives_over_time_is_sent_as_it_comes(gateway, ollama):
    ollama.replies["qwen3:8b"] = Reply(delay_chunks=0.02)  # an upstream taking its time between tokens
    streamed = httpx.post(gateway.url + "/v1/chat/chat/completions", timeout=10,
                          json={"model": "qwen3:8b", "messages": HI, "stream": True})
    assert streamed.headers["transfer-encoding"] == "chunked" and "content-length" not in streamed.headers
    assert streamed.text.endswith("data: [DONE]\n\n")
