"""The providers chatd knows without any configuration, and their default prefixes.

A provider block in lakehouse.toml overrides any of these values; a provider not
listed here needs `transform` and `base_url` in its block (config, not code).
"""

from __future__ import annotations

BUILTIN_PROVIDERS: dict[str, dict] = {
    "ollama": {
        "transform": "ollama_chat",
        "base_url": "http://127.0.0.1:11434",
        "think": False,
    },
    "ollama_cloud": {
        "transform": "ollama_generate",
        "base_url": "https://ollama.com",
        "key_env": "OLLAMA_CLOUD_KEY",
        "think": False,
        "min_output_tokens": 400,
        "default_temperature": 0.3,
    },
    "openrouter": {
        "transform": "openai",
        "base_url": "https://openrouter.ai/api/v1",
        "key_env": "OPENROUTER_API_KEY",
    },
    "opencode": {
        "transform": "openai",
        "base_url": "https://opencode.ai/zen/v1",
        "key_env": "OPENCODE_API_KEY",
    },
    "kimi": {
        "transform": "openai",
        "base_url": "https://api.kimi.com/coding/v1",
        "key_env": "KIMI_API_KEY",
        "forward_headers": ["user-agent"],  # Kimi admits coding agents only, told apart by User-Agent
    },
    "anthropic": {
        "transform": "anthropic",
        "base_url": "https://api.anthropic.com",
        "key_env": "ANTHROPIC_API_KEY",
    },
}

DEFAULT_ROUTES: dict[str, str] = {
    "ollama/": "ollama",
    "ollama_cloud/": "ollama_cloud",
    "cloud/": "ollama_cloud",
    "openrouter/": "openrouter",
    "opencode/": "opencode",
    "kimi/": "kimi",
    "anthropic/": "anthropic",
}

CLOUD_PROVIDER = "ollama_cloud"
"""Where `name:cloud` and `name:tag-cloud` models go (DESIGN §2, rule 3)."""
