"""lakehouse.toml loading: defaults, key resolution, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_middleware import ConfigError, load_config
from chat_middleware.config import Timeouts, config_path

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lakehouse.toml"
    path.write_text(text)
    return path


def test_example_file_starts_in_dev_mode_with_one_provider():
    config = load_config(ROOT / "lakehouse.toml", environ={})
    assert [p.name for p in config.registered] == ["ollama"]
    assert set(config.providers) >= {"ollama", "ollama_cloud", "openrouter", "opencode", "kimi", "groq"}
    assert config.models["smart"] == ("kimi/kimi-for-coding", "kimi-k2.6:cloud", "ollama/qwen3:8b")
    assert config.routes["groq/"] == "groq"


def test_seed_defaults_are_kept_as_provider_options(tmp_path):
    config = load_config(write(tmp_path, ""), environ={})
    cloud, local = config.providers["ollama_cloud"], config.providers["ollama"]
    assert (cloud.transform, cloud.think, cloud.min_output_tokens, cloud.default_temperature) == (
        "ollama_generate", False, 400, 0.3)
    assert (local.transform, local.think, local.base_url) == ("ollama_chat", False, "http://127.0.0.1:11434")
    assert config.providers["kimi"].base_url == "https://api.kimi.com/coding/v1"
    assert local.timeouts == Timeouts(connect=5, first_byte=60, idle=30, total=180)


def test_ollama_url_shorthand_and_timeout_overrides(tmp_path):
    config = load_config(write(tmp_path, """
[chatd]
ollama_url = "http://10.1.2.3:11434/"
timeout_s = 90
idle_timeout_s = 7
[chatd.providers.kimi]
idle_timeout_s = 3
"""), environ={})
    assert config.providers["ollama"].base_url == "http://10.1.2.3:11434"
    assert config.providers["ollama"].timeouts == Timeouts(connect=5, first_byte=60, idle=7, total=90)
    assert config.providers["kimi"].timeouts.idle == 3


def test_key_comes_from_env_var_first_then_env_file(tmp_path):
    env_file = tmp_path / "cloud.env"
    env_file.write_text("OLLAMA_CLOUD_KEY=from-file\n")
    path = write(tmp_path, '[chatd.providers.ollama_cloud]\nenv_file = "cloud.env"\n')
    from_file = load_config(path, environ={})
    assert from_file.providers["ollama_cloud"].api_key == "from-file"
    assert from_file.providers["ollama_cloud"].registered
    from_env = load_config(path, environ={"OLLAMA_CLOUD_KEY": "from-env"})
    assert from_env.providers["ollama_cloud"].api_key == "from-env"


def test_key_never_shows_in_repr(tmp_path):
    config = load_config(write(tmp_path, ""), environ={"KIMI_API_KEY": "sk-kimi-secret"})
    assert "sk-kimi-secret" not in repr(config)
    assert config.keys == ["sk-kimi-secret"]


def test_new_openai_compatible_provider_is_config_only(tmp_path):
    config = load_config(write(tmp_path, """
[chatd.providers.vllm]
transform = "openai"
base_url = "http://127.0.0.1:8000/v1"
headers = { "X-Title" = "lakehouse" }
[[chatd.routes]]
prefix = "vllm/"
provider = "vllm"
"""), environ={})
    vllm = config.providers["vllm"]
    assert vllm.registered and vllm.headers == {"X-Title": "lakehouse"}
    assert config.routes["vllm/"] == "vllm"


def test_forward_headers_default_to_the_agent_identity_for_kimi_only(tmp_path):
    config = load_config(write(tmp_path, "[chatd.providers.openrouter]\nforward_headers = ['X-OpenCode-Session']\n"))
    assert config.providers["kimi"].forward_headers == ("user-agent",)
    assert config.providers["openrouter"].forward_headers == ("x-opencode-session",)
    assert config.providers["ollama"].forward_headers == ()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[chatd\n", "not valid TOML"),
        ("[chatd]\nbogus = 1\n", "[chatd] bogus: unknown key"),
        ("[chatd]\ntimeout_s = 'slow'\n", "[chatd] timeout_s: expected a number"),
        ("[chatd]\ntimeout_s = -1\n", "[chatd] timeout_s: must not be negative"),
        ("[chatd]\nmax_body_bytes = true\n", "[chatd] max_body_bytes: expected an integer"),
        ("[chatd.providers.kimi]\nretrys = 2\n", "[chatd.providers.kimi] retrys: unknown key"),
        ("[chatd]\ncooldown_failures = 0\n", "[chatd] cooldown_failures: must be greater than 0"),
        ("[chatd]\napi_keys_env = \"CHATD_CLIENT_KEYS\"\n", "[chatd] api_keys_env: names CHATD_CLIENT_KEYS, which is unset"),
        ("[chatd.providers.x]\ntransform = 'grpc'\nbase_url = 'http://h'\n",
         "[chatd.providers.x] transform: unknown transform 'grpc'"),
        ("[chatd.providers.x]\nbase_url = 'http://h'\n", "[chatd.providers.x] transform: is required"),
        ("[chatd.providers.kimi]\nheaders = { A = 1 }\n", "[chatd.providers.kimi] headers.A: expected a string"),
        ("[[chatd.routes]]\nprefix = 'g/'\nprovider = 'groq'\n",
         "[[chatd.routes]] #1 provider: 'groq' is not a configured provider"),
        ("[[chatd.routes]]\nprefix = 'g'\nprovider = 'kimi'\n", "[[chatd.routes]] #1 prefix: must look like"),
        ("[chatd]\ndefault_provider = 'nope'\n", "[chatd] default_provider: 'nope' is not a configured provider"),
        ("[models]\nfast = 3\n", "[models] fast: expected a model id or a list"),
        ("[models]\nfast = []\n", "[models] fast: expected a model id or a list"),
        ("[chatd.providers.kimi]\nforward_headers = ['User-Agent', 'Authorization']\n",
         "[chatd.providers.kimi] forward_headers: authorization is never passed upstream"),
        ("[chatd.providers.kimi]\nforward_headers = ['x-api-key', 'cookie', 'host', 'connection']\n",
         "forward_headers: x-api-key, cookie, host, connection is never passed upstream"),
        ("[chatd.providers.kimi]\nforward_headers = 'user-agent'\n",
         "[chatd.providers.kimi] forward_headers: expected an array of strings"),
        ("[chatd.providers.kimi]\ncapabilities = [1]\n", "[chatd.providers.kimi] capabilities: expected an array"),
        ("[chatd]\nrpm = 1.5\n", "[chatd] rpm: expected an integer"),
        ("[chatd.providers.kimi]\ntpm = -1\n", "[chatd.providers.kimi] tpm: must not be negative"),
        ("[chatd.state]\non_error = 'ignore'\n", '[chatd.state] on_error: expected "open" or "closed"'),
        ("[chatd.state]\nredis_url = 'http://h:6379'\n", "[chatd.state] redis_url: expected redis://"),
        ("[chatd.state]\nlease_s = 0\n", "[chatd.state] lease_s: must be greater than 0"),
        ("[chatd.state]\nredis = 'x'\n", "[chatd.state] redis: unknown key"),
        ("[chatd]\nstate = 1\n", "[chatd] state: expected a table"),
        ("[chatd.clients.a]\nmodels = ['fast']\n", "[chatd.clients.a] key_env: is required"),
        ("[chatd.clients.a]\nkey_env = 'A_KEYS'\n", "[chatd.clients.a] key_env: names A_KEYS, which is unset"),
        ("[chatd.clients.a]\nkey_env = 'A'\nmodels = 'fast'\n", "[chatd.clients.a] models: expected an array"),
        ("[chatd.clients.a]\nkey_env = 'A'\nrpm = '60'\n", "[chatd.clients.a] rpm: expected an integer"),
        ("[chatd.clients.a]\nkey_env = 'A'\nkeys = ['k']\n", "[chatd.clients.a] keys: unknown key"),
        ("[chatd.clients.'a b']\nkey_env = 'A'\n", "[chatd.clients.a b]: a client's name is letters"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_other_top_level_tables_belong_to_the_host_gateway(tmp_path):
    config = load_config(write(tmp_path, '[gateway]\nchatd_url = "http://x"\n[other]\na = 1\n'), environ={})
    assert [p.name for p in config.registered] == ["ollama"]


def test_path_comes_from_argument_then_env_then_default(tmp_path):
    assert config_path("a.toml", {"LAKEHOUSE_CONFIG": "b.toml"}) == "a.toml"
    assert config_path(None, {"LAKEHOUSE_CONFIG": "b.toml"}) == "b.toml"
    assert config_path(None, {}) == "lakehouse.toml"
    with pytest.raises(ConfigError, match="no such file"):
        load_config(environ={"LAKEHOUSE_CONFIG": str(tmp_path / "missing.toml")})


CLIENT_ENV = {"A_KEYS": "ka-1, ka-2 ,", "B_KEYS": "kb-1", "ANON_KEYS": "anon-1"}


def test_client_keys_state_and_limits_are_read(tmp_path):
    config = load_config(write(tmp_path, """
[chatd]
api_keys_env = "ANON_KEYS"
rpm = 100
[chatd.providers.kimi]
tpm = 5000
[chatd.state]
redis_url = "redis://:s3cret-pw@10.0.0.5:6380/2"
on_error = "closed"
lease_s = 10
[chatd.clients.team-a]
key_env = "A_KEYS"
models = ["fast", "ollama/*"]
rpm = 60
[chatd.clients.team-b]
key_env = "B_KEYS"
"""), environ=CLIENT_ENV)
    a, b = config.clients["team-a"], config.clients["team-b"]
    assert a.keys == {"ka-1", "ka-2"} and a.models == ("fast", "ollama/*") and (a.rpm, a.tpm) == (60, 0)
    assert b.keys == {"kb-1"} and b.models is None and b.allows("anything/at-all")
    assert a.allows("ollama/qwen3:8b") and not a.allows("qwen3:8b") and not a.allows("smart")
    assert config.client_keys == {"anon-1"}
    assert (config.state.on_error, config.state.lease_s, config.state.key_prefix) == ("closed", 10, "chatd:")
    assert config.providers["kimi"].resilience.tpm == 5000 and config.providers["kimi"].resilience.rpm == 100
    assert config.providers["ollama"].resilience.tpm == 0
    assert {"ka-1", "ka-2", "kb-1", "anon-1", "s3cret-pw"} <= set(config.keys)  # all redacted from output
    assert not any(secret in repr(config) for secret in ("ka-1", "kb-1", "anon-1", "s3cret-pw"))


@pytest.mark.parametrize("environ, other", [({"A_KEYS": "k-1, shared", "B_KEYS": "shared"}, "[chatd.clients.a]"),
                                            ({"A_KEYS": "k-1", "B_KEYS": "k-2", "ANON_KEYS": "k-2"},
                                             "[chatd] api_keys_env")])
def test_a_key_of_two_clients_is_refused_without_showing_it(tmp_path, environ, other):
    path = write(tmp_path, '[chatd]\napi_keys_env = "ANON_KEYS"\n[chatd.clients.a]\nkey_env = "A_KEYS"\n'
                           '[chatd.clients.b]\nkey_env = "B_KEYS"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"ANON_KEYS": "anon-9", **environ})
    message = str(info.value)
    assert other in message and "each key identifies one client" in message
    assert "shared" not in message and "k-2" not in message


def test_client_keys_may_come_from_an_env_file(tmp_path):
    env_file = tmp_path / "clients.env"
    env_file.write_text("A_KEYS=ka-from-file\n")
    env_file.chmod(0o600)
    path = write(tmp_path, '[chatd.clients.a]\nkey_env = "A_KEYS"\nenv_file = "clients.env"\n')
    assert load_config(path, environ={}).clients["a"].keys == {"ka-from-file"}
    assert load_config(path, environ={"A_KEYS": "ka-env"}).clients["a"].keys == {"ka-env"}
