"""Client auth for standalone chatd, and remote mode: a mounted middleware forwarding to chatd."""

from __future__ import annotations

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from chat_middleware import ChatMiddleware
from tests.conftest import KEYS
from tests.fakes import Reply
from tests.harness import ASGIServer, free_port, write_config

HI = [{"role": "user", "content": "Hi"}]
CLIENT_KEYS = {**KEYS, "CHATD_CLIENT_KEYS": "team-a-key-111, team-b-key-222"}


def test_client_keys_are_required_when_configured(make_chatd):
    chatd = make_chatd(extra='api_keys_env = "CHATD_CLIENT_KEYS"', environ=CLIENT_KEYS)
    url = chatd.url + "/v1/chat/completions"
    body = {"model": "qwen3:8b", "messages": HI}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic team-a-key-111"},
                    {"Authorization": "Bearer"}):
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert "team-a-key-111" not in response.text and "www-authenticate" in response.headers
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer team-b-key-222"}).status_code == 200
    assert httpx.get(chatd.url + "/v1/chat/providers").status_code == 401
    assert httpx.get(chatd.url + "/v1/chat/health").status_code == 200  # liveness stays open
    sdk = openai.OpenAI(base_url=chatd.url + "/v1/chat", api_key="team-a-key-111", max_retries=0)
    assert sdk.chat.completions.create(model="qwen3:8b", messages=HI).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=chatd.url + "/v1/chat", api_key="nope", max_retries=0).models.list()


def host(config) -> ChatMiddleware:
    async def hello(request):
        return PlainTextResponse("host")

    return ChatMiddleware(Starlette(routes=[Route("/hello", hello)]), config=config)


def test_remote_mode_forwards_everything_under_v1_chat(make_chatd, ollama, tmp_path):
    chatd = make_chatd()
    config = write_config(tmp_path, f'[gateway]\nchatd_url = "{chatd.url}"\n')
    with ASGIServer(host(config)) as gateway:
        assert httpx.get(gateway.url + "/hello").text == "host"
        response = httpx.post(gateway.url + "/v1/chat", json={"model": "kimi/kimi-for-coding", "messages": HI})
        assert response.status_code == 200 and response.headers["x-chatd-provider"] == "kimi"
        assert httpx.get(gateway.url + "/v1/chat/resolve", params={"model": "router"}).json()["provider"] == \
            "openrouter"
        ollama.replies["qwen3:8b"] = Reply(text="streamed through two hops", delay_chunks=0.05)
        sdk = openai.OpenAI(base_url=gateway.url + "/v1/chat", api_key="x", max_retries=0)
        chunks = sdk.chat.completions.create(model="qwen3:8b", messages=HI, stream=True)
        first = next(iter(chunks))
        assert ollama.open_streams == 1  # arrived while the upstream was still writing
        text = (first.choices[0].delta.content or "") + "".join(
            c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "streamed through two hops"


def test_remote_mode_disconnect_reaches_the_upstream(make_chatd, ollama, tmp_path):
    chatd = make_chatd()
    config = write_config(tmp_path, f'[gateway]\nchatd_url = "{chatd.url}"\n')
    ollama.replies["qwen3:8b"] = Reply(text="a b c d e f g h", delay_chunks=0.2)
    with ASGIServer(host(config)) as gateway:
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                          json={"model": "qwen3:8b", "messages": HI, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert ollama.open_streams == 1
        assert ollama.wait_open_streams(0, timeout=5)


def test_remote_mode_with_chatd_down_is_502(tmp_path):
    config = write_config(tmp_path, f'[gateway]\nchatd_url = "http://127.0.0.1:{free_port()}"\n')
    with ASGIServer(host(config)) as gateway:
        response = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "m", "messages": HI})
        assert response.status_code == 502 and response.json()["error"]["message"]
        assert httpx.get(gateway.url + "/hello").text == "host"
