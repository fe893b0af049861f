"""Named client keys ([chatd.clients.NAME]): who is calling, which models it may name, its own limits.

One chatd process, counting in process (no [chatd.state] redis_url); the same
limits across processes sharing Redis are in test_shared_limits.py.
"""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from tests.conftest import KEYS
from tests.fakes import Reply
from tests.harness import ChatdServer
from tests.limits import HI, Held, chat, headers, limit_error
from tests.test_observability import access_lines, delta, scrape, wait_for

TEAM_A, TEAM_A_2, TEAM_B, ANON = "ka-team-a-1111", "ka-team-a-2222", "kb-team-b-3333", "anon-4444"
ENVIRON = {**KEYS, "TEAM_A_KEYS": f"{TEAM_A}, {TEAM_A_2}", "TEAM_B_KEYS": TEAM_B, "CHATD_CLIENT_KEYS": ANON}
CLIENTS = """
api_keys_env = "CHATD_CLIENT_KEYS"

[chatd.clients.team-a]
key_env = "TEAM_A_KEYS"
models = ["fast", "smart", "ollama/*"]

[chatd.clients.team-b]
key_env = "TEAM_B_KEYS"
"""


def limited(extra: str) -> str:
    """CLIENTS with limit lines added to team-b's block."""
    return CLIENTS + extra


@pytest.fixture
def chatd(make_chatd):
    return make_chatd(extra=CLIENTS, environ=ENVIRON)


def models(url: str, key: str, path: str = "/v1/chat/models") -> list[str]:
    body = httpx.get(url + path, headers=headers(key), timeout=10).json()
    return [m["id"] for m in body["data"]] if "data" in body else [m["name"] for m in body["models"]]


# ----- who is calling


def test_each_key_identifies_its_client_in_the_access_log(chatd, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    for key, rid in ((TEAM_A, "a-1"), (TEAM_A_2, "a-2"), (TEAM_B, "b-1"), (ANON, "anon-1")):
        response = httpx.post(chatd.url + "/v1/chat/completions", timeout=10,
                              headers={**headers(key), "x-request-id": rid},
                              json={"model": "fast", "messages": HI})
        assert response.status_code == 200, response.text
    assert wait_for(lambda: len([line for line in access_lines(caplog) if line["status"] == 200]) >= 4)
    clients = {line["request_id"]: line["client"] for line in access_lines(caplog)}
    assert {rid: clients[rid] for rid in ("a-1", "a-2", "b-1", "anon-1")} == {
        "a-1": "team-a", "a-2": "team-a", "b-1": "team-b", "anon-1": None}
    assert not any(key in caplog.text for key in (TEAM_A, TEAM_A_2, TEAM_B, ANON))


@pytest.mark.parametrize("sent", [{}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {TEAM_A}"},
                                  {"authorization": "Bearer"}, {"x-api-key": TEAM_A}])
def test_no_key_or_an_unknown_key_is_401(chatd, sent):
    response = httpx.post(chatd.url + "/v1/chat/completions", json={"model": "fast", "messages": HI},
                          headers=sent, timeout=10)
    assert response.status_code == 401, response.text  # x-api-key counts only on the Anthropic surface
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["x-should-retry"] == "false" and TEAM_A not in response.text


MESSAGE = {"max_tokens": 16, "messages": HI}


def test_the_anthropic_surface_also_takes_the_key_as_x_api_key(chatd, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    url = chatd.url + "/v1/chat/v1/messages"
    refused = httpx.post(url, json={"model": "fast", **MESSAGE}, headers={"x-api-key": "nope"}, timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"type": "error", "error": {"type": "authentication_error",
                                                         "message": refused.json()["error"]["message"]}}
    assert httpx.post(url, json={"model": "fast", **MESSAGE}, timeout=10).status_code == 401
    for rid, sent in (("xk-1", {"x-api-key": TEAM_A}), ("xk-2", headers(TEAM_A))):  # Claude Code, the SDK
        response = httpx.post(url, json={"model": "fast", **MESSAGE}, headers={**sent, "x-request-id": rid},
                              timeout=10)
        assert response.status_code == 200 and response.json()["type"] == "message"
    assert wait_for(lambda: {"xk-1", "xk-2"} <= {line["request_id"] for line in access_lines(caplog)})
    assert {line["client"] for line in access_lines(caplog) if line["request_id"] in ("xk-1", "xk-2")} == {"team-a"}
    listed = httpx.get(chatd.url + "/v1/chat/v1/models", headers={"x-api-key": TEAM_A}, timeout=10).json()
    assert [m["id"] for m in listed["data"]] == models(chatd.url, TEAM_A)


def test_the_anthropic_surface_answers_refusals_in_its_own_shape(make_chatd):
    chatd = make_chatd(extra=limited("rpm = 1\n"), environ=ENVIRON)
    url = chatd.url + "/v1/chat/v1/messages"
    denied = httpx.post(url, json={"model": "router", **MESSAGE}, headers={"x-api-key": TEAM_A}, timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    assert "may not use model 'router'" in denied.json()["error"]["message"]
    assert httpx.post(url, json={"model": "fast", **MESSAGE}, headers={"x-api-key": TEAM_B}).status_code == 200
    limited_ = httpx.post(url, json={"model": "fast", **MESSAGE}, headers={"x-api-key": TEAM_B}, timeout=10)
    assert limited_.status_code == 429 and limited_.json()["error"]["type"] == "rate_limit_error"
    assert limited_.headers["x-should-retry"] == "true" and int(limited_.headers["retry-after"]) >= 1
    assert "client 'team-b'" in limited_.json()["error"]["message"] and "(rpm)" in limited_.json()["error"]["message"]


def test_metrics_count_requests_and_tokens_by_client(chatd, ollama):
    ollama.replies["qwen3:4b"] = Reply(prompt_tokens=7, completion_tokens=5)
    before = scrape(chatd.url, TEAM_B)
    for key in (TEAM_A, TEAM_A_2, TEAM_B, ANON):
        assert chat(chatd.url, "fast", key).status_code == 200
    assert chat(chatd.url, "router", TEAM_A).status_code == 403
    after = scrape(chatd.url, TEAM_B)
    counted = {client: delta(before, after, "chatd_requests_total", provider="ollama", status="200", client=client)
               for client in ("team-a", "team-b", "")}
    assert counted == {"team-a": 2, "team-b": 1, "": 1}
    assert delta(before, after, "chatd_requests_total", status="403", client="team-a") == 1
    assert delta(before, after, "chatd_tokens_total", provider="ollama", direction="in", client="team-a") == 14
    assert delta(before, after, "chatd_tokens_total", provider="ollama", direction="out", client="team-b") == 5


# ----- which models


@pytest.mark.parametrize("model", ["fast", "smart", "ollama/qwen3:8b", "ollama/llama3.2"])
def test_a_client_may_name_its_tiers_ids_and_globs(chatd, model):
    response = chat(chatd.url, model, TEAM_A)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("model", [
    "router",                         # a tier not in the list
    "qwen3:8b",                       # goes to ollama, but not as "ollama/…": judged as the client named it
    "default",                        # a tier whose model is "qwen3:8b"
    "kimi/kimi-for-coding",           # the first entry of "smart", named directly
    "openrouter/moonshotai/kimi-k2",
])
def test_any_other_model_is_403_model_not_allowed(chatd, upstreams, model):
    response = chat(chatd.url, model, TEAM_A)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "model_not_allowed")
    assert response.headers["x-should-retry"] == "false"
    assert model in error["message"] and "ollama/*" in error["message"] and TEAM_A not in response.text
    assert not any(fake.requests for fake in upstreams.values())  # no upstream was asked


def test_every_surface_and_the_dry_run_judge_the_model_alike(chatd, ollama):
    native = chat(chatd.url, "router", TEAM_A, path="/v1/chat")
    assert native.status_code == 403 and native.json()["error"]["code"] == "model_not_allowed"
    ollama_api = chat(chatd.url, "qwen3:8b", TEAM_A, path="/v1/chat/api/chat", stream=False)
    assert ollama_api.status_code == 403 and "may not use model 'qwen3:8b'" in ollama_api.json()["error"]
    # (Ollama's own error shape: {"error": "…"})
    shown = httpx.post(chatd.url + "/v1/chat/api/show", json={"model": "qwen3:8b"}, headers=headers(TEAM_A))
    assert shown.status_code == 403
    dry = httpx.get(chatd.url + "/v1/chat/resolve", params={"model": "router"}, headers=headers(TEAM_A))
    assert dry.status_code == 403
    assert httpx.get(chatd.url + "/v1/chat/resolve", params={"model": "smart"},
                     headers=headers(TEAM_A)).status_code == 200


def test_model_lists_show_a_client_only_what_it_may_name(chatd):
    everything = models(chatd.url, TEAM_B)
    assert {"fast", "default", "smart", "router", "ollama/qwen3:4b", "qwen3:8b"} <= set(everything)
    assert models(chatd.url, ANON) == everything
    assert models(chatd.url, TEAM_A) == [m for m in everything if m in ("fast", "smart") or m.startswith("ollama/")]
    assert models(chatd.url, TEAM_A, "/v1/chat/api/tags") == models(chatd.url, TEAM_A)
    assert models(chatd.url, TEAM_A, "/v1/models") == models(chatd.url, TEAM_A)


# ----- a client's own limits, per process


def test_a_clients_rpm_counts_requests_not_attempts(make_chatd, kimi, ollama_cloud):
    chatd = make_chatd(extra=limited("rpm = 2\n"), environ=ENVIRON)
    kimi.replies["kimi-for-coding"] = Reply(status=500, error="down")
    for _ in range(2):  # each a failed attempt at kimi, then the fallback: one request each
        response = chat(chatd.url, "smart", TEAM_B)
        assert response.status_code == 200 and response.headers["x-chatd-attempts"] == "2"
    third = chat(chatd.url, "smart", TEAM_B)
    assert limit_error(third) == (429, "rate_limited", "client_rpm")
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert "team-b" in third.json()["error"]["message"] and "rpm" in third.json()["error"]["message"]
    assert len(kimi.requests) == 2  # refused before any provider was asked
    assert chat(chatd.url, "fast", TEAM_A).status_code == 200  # another client's own count
    assert chat(chatd.url, "fast", ANON).status_code == 200


def test_a_clients_tpm_counts_the_tokens_the_upstream_reported(make_chatd, ollama):
    chatd = make_chatd(extra=limited("tpm = 30\n"), environ=ENVIRON)
    ollama.replies["qwen3:4b"] = Reply(prompt_tokens=12, completion_tokens=8)
    assert chat(chatd.url, "fast", TEAM_B).status_code == 200  # 20 tokens
    assert chat(chatd.url, "fast", TEAM_B, stream=True).status_code == 200  # 40: over the limit now
    response = chat(chatd.url, "fast", TEAM_B)
    assert limit_error(response) == (429, "rate_limited", "client_tpm")
    assert len(ollama.requests) == 2


async def test_a_clients_max_in_flight_holds_whichever_provider_it_asks(make_chatd, ollama, openrouter):
    chatd = make_chatd(extra=limited("max_in_flight = 1\n"), environ=ENVIRON)
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
    async with Held() as held:
        response = await held.beside(openrouter, chatd.url, chatd.url, TEAM_B)
        assert limit_error(response) == (429, "rate_limited", "client_max_in_flight")
        other = await held.ask(chatd.url, "fast", TEAM_A)
        assert other.status_code == 200
    assert await Held.reach(openrouter, 0)
    assert chat(chatd.url, "fast", TEAM_B).status_code == 200  # the slot came back with the answer


def test_refusals_are_counted_by_scope_name_and_limit(make_chatd):
    chatd = make_chatd(extra=limited("rpm = 1\n"), environ=ENVIRON)
    before = scrape(chatd.url, TEAM_A)
    assert chat(chatd.url, "fast", TEAM_B).status_code == 200
    for _ in range(2):
        assert chat(chatd.url, "fast", TEAM_B).status_code == 429
    after = scrape(chatd.url, TEAM_A)
    assert delta(before, after, "chatd_rate_limited_total", scope="client", name="team-b", limit="rpm") == 2
    assert delta(before, after, "chatd_requests_total", status="429", client="team-b") == 2


# ----- a provider's own limits, per process


def test_a_chain_skips_a_provider_at_its_rpm_and_a_direct_request_gets_429(make_chatd, kimi, ollama_cloud):
    chatd = make_chatd(blocks={"kimi": "rpm = 1\nforward_headers = []"})
    assert chat(chatd.url, "smart").headers["x-chatd-provider"] == "kimi"
    second = chat(chatd.url, "smart")
    assert second.status_code == 200 and second.headers["x-chatd-provider"] == "ollama_cloud"
    assert second.headers["x-chatd-attempts"] == "1"  # kimi was not asked
    direct = chat(chatd.url, "kimi/kimi-for-coding")
    assert limit_error(direct) == (429, "rate_limited", "provider_rpm")
    assert len(kimi.requests) == 1


def test_a_provider_tpm_refuses_once_the_reported_tokens_reach_it(make_chatd, openrouter):
    chatd = make_chatd(blocks={"openrouter": "tpm = 25"})
    openrouter.replies["moonshotai/kimi-k2"] = Reply(prompt_tokens=20, completion_tokens=5)
    assert chat(chatd.url, "router").status_code == 200
    refused = chat(chatd.url, "router")
    assert limit_error(refused) == (429, "rate_limited", "provider_tpm")
    assert orjson.loads(refused.content)["error"]["message"].startswith("provider 'openrouter' has used its 25")


# ----- hot reload


def test_a_reload_rotates_keys_changes_models_and_keeps_the_counts(tmp_path, ollama):
    keys = tmp_path / "clients.env"
    keys.write_text("TEAM_A_KEYS=ka-old\n")
    keys.chmod(0o600)
    path = tmp_path / "lakehouse.toml"

    def write(models: str) -> None:
        path.write_text(f'[models]\nfast = "ollama/qwen3:4b"\ndefault = "qwen3:8b"\n'
                        f'[chatd]\nollama_url = "{ollama.url}"\n[chatd.clients.team-a]\nkey_env = "TEAM_A_KEYS"\n'
                        f'env_file = "clients.env"\nrpm = 2\nmodels = {models}\n')

    write('["fast"]')
    with ChatdServer(path) as chatd:
        assert chat(chatd.url, "fast", "ka-old").status_code == 200
        assert chat(chatd.url, "default", "ka-old").status_code == 403
        keys.write_text("TEAM_A_KEYS=ka-old,ka-new\n")  # rotation: both for a while
        write('["fast", "default"]')
        assert chatd.call(chatd.app.reload) is True
        assert chat(chatd.url, "default", "ka-new").status_code == 200  # the new key, the new model
        assert limit_error(chat(chatd.url, "fast", "ka-old")) == (429, "rate_limited", "client_rpm")  # still 2
        keys.write_text("TEAM_A_KEYS=ka-new\n")
        assert chatd.call(chatd.app.reload) is True
        assert chat(chatd.url, "fast", "ka-old").status_code == 401
        assert chat(chatd.url, "fast", "ka-new").status_code == 429  # the same client, the same count


# ----- the SDKs see what they expect


def test_the_sdks_raise_their_own_errors_for_a_clients_refusals(make_chatd):
    import anthropic
    import openai

    chatd = make_chatd(extra=limited("rpm = 2\n"), environ=ENVIRON)
    base = chatd.url + "/v1/chat"
    with openai.OpenAI(base_url=base, api_key=TEAM_A, max_retries=0) as sdk:
        assert sdk.chat.completions.create(model="fast", messages=HI).choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError) as denied:
            sdk.chat.completions.create(model="router", messages=HI)
        assert denied.value.code == "model_not_allowed"
    with anthropic.Anthropic(base_url=base, api_key=TEAM_B, max_retries=0) as sdk:  # sends it as Bearer
        for _ in range(2):
            assert sdk.messages.create(model="fast", max_tokens=16, messages=HI).content
        with pytest.raises(anthropic.RateLimitError) as limited_:
            sdk.messages.create(model="fast", max_tokens=16, messages=HI)
        assert int(limited_.value.response.headers["retry-after"]) >= 1
    with anthropic.Anthropic(base_url=base, api_key="not-a-key", max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError):
            sdk.messages.create(model="fast", max_tokens=16, messages=HI)
