"""No configured key ever leaves chatd: not in a body, a header or a log line (DESIGN §4, issue 5 item 9)."""

from __future__ import annotations

import logging
import os

import httpx
import pytest

from chat_middleware import load_config

from tests.conftest import KEYS
from tests.fakes import Reply

HI = [{"role": "user", "content": "Hi"}]
CLIENT_KEY = "ck-client-secret-0006"
NAMED_KEY = "ck-named-secret-0007"
REDIS_PASSWORD = "redis-secret-0008"
SECRETS = (*KEYS.values(), CLIENT_KEY, NAMED_KEY, REDIS_PASSWORD)
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
CLIENTS = f"""api_keys_env = "CHATD_CLIENT_KEYS"
[chatd.state]
redis_url = "redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"  # nothing listens: every call fails, and is logged
retry_s = 0.01
[chatd.clients.team-x]
key_env = "TEAM_X_KEYS"
models = ["fast", "ollama/*"]
rpm = 3
"""
# provider → (the model a client names, the model its fake upstream knows, the key it is sent)
MODELS = {
    "ollama": ("qwen3:8b", "qwen3:8b", " ".join(SECRETS)),  # needs no key: echo every one
    "ollama_cloud": ("kimi-k2.6:cloud", "kimi-k2.6", KEYS["OLLAMA_CLOUD_KEY"]),
    "openrouter": ("openrouter/moonshotai/kimi-k2", "moonshotai/kimi-k2", KEYS["OPENROUTER_API_KEY"]),
    "opencode": ("opencode/big-pickle", "big-pickle", KEYS["OPENCODE_API_KEY"]),
    "kimi": ("kimi/kimi-for-coding", "kimi-for-coding", KEYS["KIMI_API_KEY"]),
    "groq": ("groq/llama-3.3-70b", "llama-3.3-70b", KEYS["GROQ_API_KEY"]),
}


class Transcript:
    """Every status, header and body a client saw in one session."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.seen: list[str] = []

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        kwargs["headers"] = {**AUTH, **kwargs.get("headers", {})}
        response = self.client.request(method, path, **kwargs)
        self.seen.append(f"{method} {path} → {response.status_code}\n{response.headers.multi_items()}\n"
                         f"{response.content.decode('utf-8', 'replace')}")
        return response

    def chat(self, model: str, path: str = "/v1/chat/completions", **fields) -> httpx.Response:
        return self.request("POST", path, json={"model": model, "messages": HI, **fields})


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


# ----- a world-readable env_file is called out at start-up


@pytest.mark.parametrize("mode, who", [(0o644, "others"), (0o604, "others"), (0o640, "its group")])
def test_a_readable_env_file_gets_a_startup_warning(tmp_path, caplog, mode, who):
    env_file = tmp_path / "cloud.env"
    env_file.write_text(f"OLLAMA_CLOUD_KEY={KEYS['OLLAMA_CLOUD_KEY']}\n")
    os.chmod(env_file, mode)
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd.providers.ollama_cloud]\nenv_file = "{env_file}"\n')
    with caplog.at_level(logging.DEBUG):
        config = load_config(path, environ={})
    assert config.providers["ollama_cloud"].registered  # still read: a warning, not a refusal
    [record] = [r for r in caplog.records if "env_file" in r.getMessage()]
    assert record.name == "chatd" and record.levelno == logging.WARNING
    message = record.getMessage()
    assert str(env_file) in message and f"chmod 600 {env_file}" in message and who in message
    assert not leaked(caplog.text)


def test_a_private_env_file_gets_no_warning(tmp_path, caplog):
    env_file = tmp_path / "cloud.env"
    env_file.write_text(f"OLLAMA_CLOUD_KEY={KEYS['OLLAMA_CLOUD_KEY']}\n")
    os.chmod(env_file, 0o600)
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd.providers.ollama_cloud]\nenv_file = "{env_file}"\n')
    with caplog.at_level(logging.DEBUG):
        assert load_config(path, environ={}).providers["ollama_cloud"].api_key == KEYS["OLLAMA_CLOUD_KEY"]
    assert not [r for r in caplog.records if "env_file" in r.getMessage()]


def test_a_missing_env_file_gets_no_warning(tmp_path, caplog):
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd.providers.ollama_cloud]\nenv_file = "{tmp_path / "absent.env"}"\n')
    with caplog.at_level(logging.DEBUG):
        assert not load_config(path, environ={}).providers["ollama_cloud"].registered
    assert not [r for r in caplog.records if "env_file" in r.getMessage()]


# ----- a whole session, end to end


def test_no_key_in_any_body_header_or_log_line(make_chatd, upstreams, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="chatd")
    environ = {**KEYS, "CHATD_CLIENT_KEYS": CLIENT_KEY, "TEAM_X_KEYS": NAMED_KEY}
    chatd = make_chatd(extra=CLIENTS, environ=environ)
    no_kimi = make_chatd(extra='api_keys_env = "CHATD_CLIENT_KEYS"',
                         environ={k: v for k, v in environ.items() if k != "KIMI_API_KEY"})

    with httpx.Client(base_url=chatd.url, timeout=30) as client:
        session = Transcript(client)
        for provider, (model, upstream_model, echoed) in MODELS.items():
            fake = upstreams[provider]
            assert session.chat(model).status_code == 200
            assert session.chat(model, stream=True, stream_options={"include_usage": True}).status_code == 200
            assert session.chat(model, path="/v1/chat").status_code == 200
            assert session.chat(model, path="/v1/chat/chat/completions", stream=True).status_code == 200
            for status, answered in ((401, 502), (403, 403)):
                fake.replies[upstream_model] = Reply(status=status, error=f"invalid key {echoed} {' '.join(SECRETS)}")
                assert session.chat(model).status_code == answered
            fake.replies[upstream_model] = Reply(status=429, error=f"slow down {echoed}", retry_after="0")
            assert session.chat(model).status_code == 429
            fake.replies[upstream_model] = Reply(status=500, error=f"boom {echoed}")
            assert session.chat(model, path="/v1/chat").status_code >= 500
            fake.replies[upstream_model] = Reply(status=400, error=f"key {echoed} lacks scope")
            assert session.chat(model).status_code == 400
            fake.replies[upstream_model] = Reply(fail_after=1, error=f"stream died holding {echoed}")
            session.chat(model, stream=True)
            fake.replies.clear()

        session.request("POST", "/v1/chat/completions", content=b"{not json")
        session.request("POST", "/v1/chat", json={"model": "", "messages": HI})
        session.request("POST", "/v1/chat/completions", json={"model": "qwen3:8b", "messages": "hi"})
        session.request("POST", "/v1/chat/completions", json={"model": "unknown/m", "messages": HI})
        session.request("POST", "/v1/chat/completions", json={"model": "router", "messages": HI},
                        headers={"authorization": "Bearer wrong"})
        session.request("POST", "/v1/chat/completions", json={"model": "router", "messages": HI},
                        headers={"authorization": ""})
        for path in ("/v1/chat/providers", "/v1/chat/models", "/v1/models", "/v1/chat/health",
                     "/v1/chat/metrics", "/v1/chat/nope"):
            session.request("GET", path)
        for model in ("smart", "router", "groq/llama-3.3-70b", "kimi-k2.6:cloud", "kimi/"):
            session.request("GET", "/v1/chat/resolve", params={"model": model})

    with httpx.Client(base_url=chatd.url, timeout=30) as client:  # a named client's key, at its limits
        named = Transcript(client)
        bearer = {"authorization": f"Bearer {NAMED_KEY}"}
        for _ in range(4):  # the fourth is over its rpm
            named.request("POST", "/v1/chat/completions", json={"model": "fast", "messages": HI}, headers=bearer)
        named.request("POST", "/v1/chat/completions", json={"model": "router", "messages": HI}, headers=bearer)
        for sent in ({"x-api-key": NAMED_KEY}, {"x-api-key": NAMED_KEY[:-1]}, {"x-api-key": CLIENT_KEY}):
            named.request("POST", "/v1/chat/v1/messages", json={"model": "fast", "messages": HI,
                                                                "max_tokens": 5}, headers=sent)
        named.request("GET", "/v1/chat/models", headers=bearer)
        named.request("GET", "/v1/chat/metrics", headers=bearer)
    assert [seen.split(" → ")[1][:3] for seen in named.seen[:5]] == ["200", "200", "200", "429", "403"]

    with httpx.Client(base_url=no_kimi.url, timeout=30) as client:
        unregistered = Transcript(client)
        assert unregistered.chat("kimi/kimi-for-coding").status_code == 404
        assert unregistered.request("GET", "/v1/chat/resolve", params={"model": "kimi/x"}).status_code == 404
        unregistered.chat("smart")
        unregistered.request("GET", "/v1/chat/providers")

    seen = "\n".join(session.seen + named.seen + unregistered.seen)
    assert "[redacted]" in seen or "upstream_auth" in seen  # the echoing replies were really exercised
    assert not leaked(seen), leaked(seen)

    assert caplog.records, "the session logged nothing: the log check would prove nothing"
    assert "shared state at 127.0.0.1:1/0 failed" in caplog.text  # the Redis URL was logged, without its password
    logged = caplog.text + "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records)
    assert not leaked(logged), leaked(logged)

    out, err = capfd.readouterr()
    assert not leaked(out + err)
