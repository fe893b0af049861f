"""resolve(model): tiers, prefixes, cloud suffixes, default, and unregistered providers."""

from __future__ import annotations

import pytest

from chat_middleware import Router
from chat_middleware.config import parse_config
from chat_middleware.errors import BadRequest, ConfigError, ProviderNotRegistered

ALL_KEYS = {"OLLAMA_CLOUD_KEY": "k1", "OPENROUTER_API_KEY": "k2", "OPENCODE_API_KEY": "k3",
            "KIMI_API_KEY": "k4", "GROQ_API_KEY": "k5"}
CONFIG = {
    "models": {"fast": "ollama/qwen3:4b", "smart": ["kimi/kimi-for-coding", "kimi-k2.6:cloud"],
               "default": "qwen3:8b", "loop": "fast"},
    "chatd": {
        "providers": {"groq": {"transform": "openai", "base_url": "http://g/v1", "key_env": "GROQ_API_KEY"},
                      "team": {"transform": "openai", "base_url": "http://t/v1"}},
        "routes": [{"prefix": "groq/", "provider": "groq"}, {"prefix": "ollama/team/", "provider": "team"}],
    },
}


def router(environ=ALL_KEYS, data=CONFIG, **provider_overrides) -> Router:
    return Router(parse_config(data, "test.toml", environ))


@pytest.mark.parametrize(
    "model, provider, upstream, rule",
    [
        ("qwen3:8b", "ollama", "qwen3:8b", "default"),
        ("unknown/m", "ollama", "unknown/m", "default"),
        ("ollama/qwen3:8b", "ollama", "qwen3:8b", "prefix"),
        ("ollama_cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b", "prefix"),
        ("cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b", "prefix"),
        ("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2", "prefix"),
        ("opencode/big-pickle", "opencode", "big-pickle", "prefix"),
        ("kimi/kimi-for-coding", "kimi", "kimi-for-coding", "prefix"),
        ("groq/llama-3.3-70b", "groq", "llama-3.3-70b", "prefix"),
        ("ollama/team/m", "team", "m", "prefix"),            # the longest prefix wins
        ("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6", "cloud_suffix"),
        ("gpt-oss:120b-cloud", "ollama_cloud", "gpt-oss:120b", "cloud_suffix"),
        ("ollama/kimi-k2.6:cloud", "ollama", "kimi-k2.6:cloud", "prefix"),  # prefix before suffix
        ("my-cloud", "ollama", "my-cloud", "default"),
        (":cloud", "ollama", ":cloud", "default"),
    ],
)
def test_rules(model, provider, upstream, rule):
    target = router().resolve(model).served()
    assert (target.provider, target.upstream_model, target.rule) == (provider, upstream, rule)


def test_tier_alias_resolves_its_value_and_keeps_the_chain():
    resolution = router().resolve("smart")
    assert resolution.rule == "tier"
    assert [(t.provider, t.upstream_model) for t in resolution.chain] == [
        ("kimi", "kimi-for-coding"), ("ollama_cloud", "kimi-k2.6")]
    assert resolution.served().provider == "kimi"


def test_aliases_do_not_chain():
    target = router().resolve("loop").served()
    assert (target.provider, target.upstream_model) == ("ollama", "fast")


def test_keep_cloud_suffix_sends_the_name_unchanged():
    data = {"chatd": {"providers": {"ollama_cloud": {"keep_cloud_suffix": True}}}}
    target = router(data=data).resolve("gpt-oss:120b-cloud").served()
    assert target.upstream_model == "gpt-oss:120b-cloud"


def test_known_but_unregistered_provider_is_404_never_a_fall_through():
    dev = router(environ={})
    for model in ("kimi-k2.6:cloud", "openrouter/x/y", "smart", "groq/m"):
        with pytest.raises(ProviderNotRegistered) as info:
            dev.resolve(model).served()
        assert info.value.status == 404
    assert dev.resolve("qwen3:8b").served().provider == "ollama"


@pytest.mark.parametrize("model", [None, "", "   ", 3, ["a"], {"a": 1}])
def test_missing_or_malformed_model_is_400(model):
    with pytest.raises(BadRequest):
        router().resolve(model)


def test_prefix_without_a_model_is_400():
    with pytest.raises(BadRequest, match="no model after it"):
        router().resolve("openrouter/")


def test_a_tier_with_an_empty_model_after_its_prefix_fails_at_start_up():
    with pytest.raises(ConfigError, match=r"test.toml: \[models\] bad"):
        router(data={"models": {"bad": "kimi/"}})


def test_resolution_dry_run_shape():
    shown = router(environ={}).resolve("smart").as_dict()
    assert shown["provider"] == "kimi" and shown["rule"] == "tier" and shown["registered"] is False
    assert [c["provider"] for c in shown["chain"]] == ["kimi", "ollama_cloud"]
