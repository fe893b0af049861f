"""`chatd --check`: validate a config and print its resolved routing table, never a key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_middleware import load_config
from chat_middleware.table import routing_table

from tests.conftest import KEYS
from tests.harness import this_checkout

EXAMPLE = Path(__file__).resolve().parent.parent / "lakehouse.toml"
CHATD = Path(sys.executable).parent / "chatd"


def run_check(config: Path, keys: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed console script, in an environment holding exactly `keys`."""
    env = {k: v for k, v in os.environ.items() if k not in KEYS and k != "LAKEHOUSE_CONFIG"}
    return subprocess.run([str(CHATD), "--check", "--config", str(config)],
                          env=this_checkout({**env, **(keys or {})}),
                          capture_output=True, text=True, timeout=30)


def section(table: str, title: str) -> list[str]:
    """The rows under one heading of the table."""
    lines = table.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def row(table: str, title: str, first: str) -> str:
    [line] = [line for line in section(table, title) if line.split()[0] == first]
    return line


def test_example_config_in_dev_mode():
    result = run_check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    ollama = row(table, "providers", "ollama")
    assert "ollama_chat" in ollama and " registered" in ollama and "not registered" not in ollama
    assert "needs no key" in ollama
    kimi = row(table, "providers", "kimi")
    assert "not registered" in kimi and "no key: set KIMI_API_KEY" in kimi
    assert "https://api.kimi.com/coding/v1" in kimi
    assert kimi.endswith("forwards user-agent")  # what each provider passes on of the client's headers
    assert "\ndefault provider ollama (registered)\n" in table
    assert section(table, "shared state") == ["  per process (no [chatd.state] redis_url)"]
    assert section(table, "clients") == ["  (none: no client key needed)"]
    # the fallback chain of a tier, each entry with where it goes and whether it can be served
    smart = section(table, "tiers")[2:5]
    assert smart[0].split()[:7] == ["smart", "kimi/kimi-for-coding", "→", "kimi", "kimi-for-coding", "prefix",
                                    "not"]
    assert smart[1].split()[:5] == ["kimi-k2.6:cloud", "→", "ollama_cloud", "kimi-k2.6", "cloud_suffix"]
    assert smart[2].split() == ["ollama/qwen3:8b", "→", "ollama", "qwen3:8b", "prefix", "registered"]
    assert row(table, "route prefixes", "groq/").split() == ["groq/", "→", "groq"]
    assert "provider 'kimi' has no key" in result.stderr  # the start-up warning, on stderr


def test_keys_in_the_environment_register_and_are_never_printed():
    result = run_check(EXAMPLE, KEYS)
    assert result.returncode == 0, result.stderr
    for name, key_env in [("kimi", "KIMI_API_KEY"), ("groq", "GROQ_API_KEY"), ("ollama_cloud", "OLLAMA_CLOUD_KEY")]:
        line = row(result.stdout, "providers", name)
        assert " registered" in line and "not registered" not in line
        assert f"key from env {key_env}" in line
    assert "not registered" not in result.stdout
    for key in KEYS.values():
        assert key not in result.stdout and key not in result.stderr


@pytest.mark.parametrize("text, names", [
    ("[chatd]\ntimeout_s = 'slow'\n", "[chatd] timeout_s"),
    ("[chatd.providers.kimi]\ntransform = 'nope'\n", "[chatd.providers.kimi] transform"),
    ("[models]\nbroken = 'kimi/'\n", "[models] broken"),  # raised by the Router, not the loader
    ("[chatd\n", "not valid TOML"),
])
def test_a_bad_file_exits_2_naming_the_file_and_the_key(tmp_path, text, names):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run_check(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr and names in result.stderr


def test_a_missing_file_exits_2(tmp_path):
    result = run_check(tmp_path / "absent.toml")
    assert result.returncode == 2 and "absent.toml: no such file" in result.stderr


def test_routing_table_names_where_each_key_came_from(tmp_path):
    env_file = tmp_path / "cloud.env"
    env_file.write_text(f"OLLAMA_CLOUD_KEY={KEYS['OLLAMA_CLOUD_KEY']}\n")
    env_file.chmod(0o600)
    path = tmp_path / "lakehouse.toml"
    path.write_text(f'[chatd.providers.ollama_cloud]\nenv_file = "{env_file}"\n')
    environ = {"KIMI_API_KEY": KEYS["KIMI_API_KEY"]}
    table = routing_table(load_config(path, environ=environ), environ=environ)
    assert f"key from env_file {env_file}" in row(table, "providers", "ollama_cloud")
    assert "key from env KIMI_API_KEY" in row(table, "providers", "kimi")
    assert "no key: set OPENROUTER_API_KEY" in row(table, "providers", "openrouter")
    assert "needs no key" in row(table, "providers", "ollama")
    assert not any(key in table for key in KEYS.values())


def test_routing_table_of_a_config_with_custom_routes_and_default(tmp_path):
    path = tmp_path / "lakehouse.toml"
    path.write_text("""
[models]
local = "llama3.2"

[chatd]
default_provider = "vllm"

[chatd.providers.vllm]
transform = "openai"
base_url = "http://10.0.0.5:8000/v1/"

[[chatd.routes]]
prefix = "vllm/"
provider = "vllm"
""")
    table = routing_table(load_config(path, environ={}))
    assert table.startswith(f"config {path}\n")
    assert section(table, "tiers")[0].split() == ["local", "llama3.2", "→", "vllm", "llama3.2", "default",
                                                  "registered"]
    assert row(table, "route prefixes", "vllm/").split() == ["vllm/", "→", "vllm"]
    assert row(table, "providers", "vllm").split() == ["vllm", "openai", "http://10.0.0.5:8000/v1", "registered",
                                                        "needs", "no", "key"]
    assert "\ndefault provider vllm (registered)\n" in table


def test_routing_table_columns_are_aligned():
    table = routing_table(load_config(EXAMPLE, environ={}), environ={})
    for title in ("tiers", "route prefixes", "providers"):
        rows = section(table, title)
        arrows = {line.index("→") for line in rows if "→" in line}
        assert len(arrows) <= 1, title
        assert all(line.startswith("  ") and line == line.rstrip() for line in rows)


def test_check_shows_shared_state_and_each_clients_models_and_limits_never_a_key(tmp_path):
    path = tmp_path / "lakehouse.toml"
    path.write_text("""
[chatd]
api_keys_env = "ANON_KEYS"
[chatd.providers.kimi]
max_in_flight = 4
rpm = 60
[chatd.state]
redis_url = "redis://:pw-secret-77@10.0.0.5:6380/2"
on_error = "closed"
[chatd.clients.team-a]
key_env = "A_KEYS"
models = ["fast", "ollama/*"]
rpm = 600
tpm = 2000000
[chatd.clients.ci]
key_env = "CI_KEYS"
""")
    keys = {"A_KEYS": "ka-secret-1,ka-secret-2", "CI_KEYS": "ci-secret-3", "ANON_KEYS": "anon-secret-4",
            "KIMI_API_KEY": KEYS["KIMI_API_KEY"]}
    result = run_check(path, keys)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert section(table, "shared state") == [
        "  redis 10.0.0.5:6380/2  key_prefix chatd:  on_error closed  lease_s 30  timeout_s 0.25  retry_s 5"]
    assert row(table, "clients", "team-a").split() == [
        "team-a", "2", "key(s)", "from", "env", "A_KEYS", "models:", "fast,", "ollama/*",
        "limits", "rpm", "600,", "tpm", "2000000"]
    assert row(table, "clients", "ci").split() == ["ci", "1", "key(s)", "from", "env", "CI_KEYS", "models:",
                                                   "every", "model"]
    assert "1 key(s) from env ANON_KEYS" in row(table, "clients", "(anonymous)")
    assert row(table, "providers", "kimi").endswith("limits max_in_flight 4, rpm 60")
    for secret in (*keys.values(), "pw-secret-77"):
        assert secret not in result.stdout and secret not in result.stderr
