"""Every error row of DESIGN §4 end to end, always in the OpenAI shape, never with a key."""

from __future__ import annotations

import logging

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from chat_middleware.errors import UpstreamError, UpstreamTimeout
from chat_middleware.upstream import transport_error

from tests.conftest import KEYS
from tests.fakes import Reply

HI = [{"role": "user", "content": "Hi"}]


def post(server, path: str = "/v1/chat/completions", **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, timeout=10, **kwargs)


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"]
    assert not any(key in response.text for key in KEYS.values())
    assert not any(key in str(response.headers) for key in KEYS.values())
    return error


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions", "/v1/chat/chat/completions"])
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"\xff\xfe\xfa",
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "", "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": 42, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "qwen3:8b"}',
        b'{"model": "qwen3:8b", "messages": "hi"}',
        b'{"model": "qwen3:8b", "messages": [42]}',
        b'{"model": "qwen3:8b", "messages": [{"content": "hi"}]}',
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": 5}]}',
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}',
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "temperature": true}',
    ],
)
def test_malformed_requests_are_400(gateway, ollama, path, content):
    error = assert_openai_error(post(gateway, path, content=content), 400)
    assert error["type"] == "invalid_request_error"
    assert not ollama.requests


def test_body_over_the_limit_is_413(make_chatd):
    chatd = make_chatd(extra="max_body_bytes = 1000")
    big = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert_openai_error(post(chatd, json=big), 413)
    assert post(chatd, json={"model": "qwen3:8b", "messages": HI}).status_code == 200


def test_unregistered_provider_is_404(make_chatd):
    chatd = make_chatd(environ={})
    error = assert_openai_error(post(chatd, json={"model": "kimi/kimi-for-coding", "messages": HI}), 404)
    assert "kimi" in error["message"]


@pytest.mark.parametrize("provider, model", [("openrouter", "openrouter/moonshotai/kimi-k2"),
                                             ("ollama", "qwen3:8b")])
def test_upstream_429_passes_retry_after(gateway, upstreams, provider, model):
    upstreams[provider].replies[model.split("/", 1)[-1]] = Reply(status=429, error="slow down", retry_after="7")
    response = post(gateway, json={"model": model, "messages": HI})
    assert assert_openai_error(response, 429)["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("status", [400, 422])
def test_upstream_invalid_request_keeps_status_and_message(gateway, openrouter, status):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=status, error="max_tokens is too large")
    response = post(gateway, json={"model": "openrouter/moonshotai/kimi-k2", "messages": HI})
    assert "max_tokens is too large" in assert_openai_error(response, status)["message"]


def test_upstream_404_is_502_with_the_upstream_message(gateway):
    response = post(gateway, json={"model": "ollama/no-such-model", "messages": HI})
    assert "model 'no-such-model' not found" in assert_openai_error(response, 502)["message"]


def test_upstream_auth_failure_is_502_and_never_echoes(gateway, kimi):
    kimi.replies["kimi-for-coding"] = Reply(status=401, error=f"bad key {KEYS['KIMI_API_KEY']}")
    response = post(gateway, json={"model": "kimi/kimi-for-coding", "messages": HI})
    assert assert_openai_error(response, 502)["code"] == "upstream_auth"
    assert KEYS["KIMI_API_KEY"] not in response.text


def test_a_wrong_key_is_upstream_auth(make_chatd):
    chatd = make_chatd(environ={**KEYS, "OPENROUTER_API_KEY": "sk-or-wrong-key-9999"})
    response = post(chatd, json={"model": "router", "messages": HI})
    assert assert_openai_error(response, 502)["code"] == "upstream_auth"
    assert "sk-or-wrong-key-9999" not in response.text


def test_an_echoed_key_in_an_upstream_message_is_redacted(gateway, openrouter):
    openrouter.replies["moonshotai/kimi-k2"] = Reply(status=400, error=f"key {KEYS['OPENROUTER_API_KEY']} lacks scope")
    response = post(gateway, json={"model": "router", "messages": HI})
    assert "[redacted]" in assert_openai_error(response, 400)["message"]


@pytest.mark.parametrize("provider, model", [("ollama", "qwen3:8b"), ("opencode", "opencode/big-pickle")])
@pytest.mark.parametrize("status", [500, 502, 503])
def test_upstream_5xx_is_502(gateway, upstreams, provider, model, status):
    upstreams[provider].replies[model.split("/", 1)[-1]] = Reply(status=status, error="boom")
    assert_openai_error(post(gateway, json={"model": model, "messages": HI}), 502)


def test_zero_choices_is_502(gateway, opencode):
    opencode.replies["big-pickle"] = Reply(zero_choices=True)
    error = assert_openai_error(post(gateway, json={"model": "opencode/big-pickle", "messages": HI}), 502)
    assert "zero choices" in error["message"]


def test_connection_refused_is_502(make_chatd, tmp_path):
    chatd = make_chatd(extra="[chatd.providers.dead]\ntransform = 'openai'\nbase_url = 'http://127.0.0.1:9/v1'\n"
                             "[[chatd.routes]]\nprefix = 'dead/'\nprovider = 'dead'")
    error = assert_openai_error(post(chatd, json={"model": "dead/m", "messages": HI}), 502)
    assert "cannot connect" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_that_sends_nothing_in_time_is_504(make_chatd, ollama, stream):
    """A stream's first token is due within first_byte_timeout_s; a non-streamed answer only within timeout_s."""
    chatd = make_chatd(extra="first_byte_timeout_s = 0.3\ntimeout_s = 0.6")
    ollama.replies["qwen3:8b"] = Reply(hang=True)
    error = assert_openai_error(post(chatd, json={"model": "qwen3:8b", "messages": HI, "stream": stream}), 504)
    assert ("sent nothing within 0.3s" if stream else "did not finish within 0.6s") in error["message"]
    assert ollama.wait_open_requests(0, timeout=5)


@pytest.mark.parametrize("raised, expected", [
    (aiohttp.ServerTimeoutError("connect"), UpstreamTimeout),
    (aiohttp.ClientConnectorError(ConnectionKey("h", 1, False, False, None, None, None),
                                  ConnectionRefusedError(111, "Connection refused")), UpstreamError),
    (aiohttp.ServerDisconnectedError(), UpstreamError),
    (aiohttp.ClientPayloadError("cut"), UpstreamError),
])
def test_transport_errors_are_translated_in_one_place(raised, expected):
    error = transport_error("kimi", raised)
    assert isinstance(error, expected) and error.message.startswith("kimi")


def test_unknown_paths_and_methods(gateway):
    assert_openai_error(httpx.get(gateway.url + "/v1/chat/nope"), 404)
    assert_openai_error(httpx.get(gateway.url + "/v1/chat/completions"), 405)
    assert_openai_error(httpx.delete(gateway.url + "/v1/chat"), 405)


def test_no_key_in_any_log_line(make_chatd, kimi, caplog):
    caplog.set_level(logging.DEBUG)
    chatd = make_chatd()
    kimi.replies["kimi-for-coding"] = Reply(status=401, error=f"invalid {KEYS['KIMI_API_KEY']}")
    post(chatd, json={"model": "kimi/kimi-for-coding", "messages": HI})
    post(chatd, json={"model": "router", "messages": HI})
    assert caplog.records
    assert not any(key in record.getMessage() for record in caplog.records for key in KEYS.values())
