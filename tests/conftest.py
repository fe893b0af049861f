"""Fixtures: fake upstreams for all five providers, and chatd under hypercorn in front of them."""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

import pytest

from tests.fakes import FakeAnthropic, FakeOllama, FakeOpenAI, FakeResponses
from tests.harness import ChatdServer, write_config

KEYS = {
    "OLLAMA_CLOUD_KEY": "oc-secret-cloud-0001",
    "OPENROUTER_API_KEY": "sk-or-secret-0002",
    "OPENCODE_API_KEY": "sk-zen-secret-0003",
    "KIMI_API_KEY": "sk-kimi-secret-0004",
    "GROQ_API_KEY": "gsk-secret-0005",
    "OPENAI_API_KEY": "sk-openai-secret-0006",
    "ANTHROPIC_API_KEY": "sk-ant-secret-0007",
}
MODELS = ("qwen3:8b", "qwen3:4b", "llama3.2", "gpt-oss:20b")


@pytest.fixture(scope="session")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=MODELS) as fake:
        yield fake


@pytest.fixture(scope="session")
def ollama_cloud() -> Iterator[FakeOllama]:
    with FakeOllama(models=("gpt-oss:120b", "kimi-k2.6"), api_key=KEYS["OLLAMA_CLOUD_KEY"]) as fake:
        yield fake


def _openai(flavor: str, key: str, models: tuple[str, ...]) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=key, base_path="/v1", models=models, flavor=flavor) as fake:
        yield fake


@pytest.fixture(scope="session")
def openrouter() -> Iterator[FakeOpenAI]:
    yield from _openai("openrouter", KEYS["OPENROUTER_API_KEY"], ("moonshotai/kimi-k2", "openai/gpt-4o-mini"))


@pytest.fixture(scope="session")
def opencode() -> Iterator[FakeOpenAI]:
    yield from _openai("opencode", KEYS["OPENCODE_API_KEY"], ("big-pickle", "glm-5.1"))


@pytest.fixture(scope="session")
def kimi() -> Iterator[FakeOpenAI]:
    yield from _openai("kimi", KEYS["KIMI_API_KEY"], ("kimi-for-coding",))


@pytest.fixture(scope="session")
def groq() -> Iterator[FakeOpenAI]:
    yield from _openai("openai", KEYS["GROQ_API_KEY"], ("llama-3.3-70b",))


@pytest.fixture(scope="session")
def anthropic_api() -> Iterator[FakeAnthropic]:
    """Anthropic's Messages API (not named `anthropic`: a test taking it would shadow the SDK module)."""
    with FakeAnthropic(api_key=KEYS["ANTHROPIC_API_KEY"]) as fake:
        yield fake


@pytest.fixture(scope="session")
def openai_api() -> Iterator[FakeResponses]:
    """OpenAI itself: Chat Completions and the Responses API (`responses = true`)."""
    with FakeResponses(api_key=KEYS["OPENAI_API_KEY"], base_path="/v1", models=("gpt-5", "gpt-4.1")) as fake:
        yield fake


NO_RETRIES = "retries = 0\ncooldown_s = 0"
"""Error-row tests want one attempt per request and no provider sitting out."""


def gateway_toml(ollama, ollama_cloud, openrouter, opencode, kimi, groq, openai, anthropic, extra: str = "",
                 base: str = NO_RETRIES, blocks: dict[str, str] | None = None) -> str:
    """A lakehouse.toml with every provider pointed at its loopback fake; `blocks` adds lines to a
    provider's block: blocks={"kimi": 'forward_headers = ["user-agent"]'}."""
    blocks = {"kimi": "forward_headers = []  # the suite's clients are not agents; test_identity covers it",
              **(blocks or {})}
    more = {name: blocks.get(name, "") for name in ("ollama_cloud", "openrouter", "opencode", "kimi", "groq",
                                                    "openai", "anthropic")}
    return f"""
[models]
fast = "ollama/qwen3:4b"
default = "qwen3:8b"
smart = ["kimi/kimi-for-coding", "kimi-k2.6:cloud"]
router = "openrouter/moonshotai/kimi-k2"
coder = ["openai/gpt-5", "qwen3:8b"]
claude = ["anthropic/claude-sonnet-4-5", "qwen3:8b"]

[chatd]
ollama_url = "{ollama.url}"
{base}
{extra}

[chatd.providers.ollama_cloud]
base_url = "{ollama_cloud.url}"
{more["ollama_cloud"]}

[chatd.providers.openrouter]
base_url = "{openrouter.url}/v1"
headers = {{ "X-Title" = "lakehouse" }}
{more["openrouter"]}

[chatd.providers.opencode]
base_url = "{opencode.url}/v1"
{more["opencode"]}

[chatd.providers.kimi]
base_url = "{kimi.url}/v1"
headers = {{ "User-Agent" = "KimiCLI/1.0" }}
{more["kimi"]}

[chatd.providers.groq]
transform = "openai"
base_url = "{groq.url}/v1"
key_env = "GROQ_API_KEY"
{more["groq"]}

[chatd.providers.openai]
transform = "openai"
base_url = "{openai.url}/v1"
key_env = "OPENAI_API_KEY"
responses = true
{more["openai"]}

[chatd.providers.anthropic]
base_url = "{anthropic.url}"
{more["anthropic"]}

[[chatd.routes]]
prefix = "groq/"
provider = "groq"

[[chatd.routes]]
prefix = "openai/"
provider = "openai"
"""


@pytest.fixture(scope="session")
def upstreams(ollama, ollama_cloud, openrouter, opencode, kimi, groq, openai_api, anthropic_api) -> dict:
    return {"ollama": ollama, "ollama_cloud": ollama_cloud, "openrouter": openrouter,
            "opencode": opencode, "kimi": kimi, "groq": groq, "openai": openai_api, "anthropic": anthropic_api}


@pytest.fixture(scope="session")
def gateway(upstreams, tmp_path_factory) -> Iterator[ChatdServer]:
    """chatd with all providers registered; shared by tests that only read."""
    config = write_config(tmp_path_factory.mktemp("gateway"), gateway_toml(**upstreams), KEYS)
    with ChatdServer(config) as server:
        yield server


@pytest.fixture
def make_chatd(upstreams, tmp_path) -> Iterator[Callable[..., ChatdServer]]:
    """A chatd of the test's own, e.g. with short timeouts: make_chatd(extra='idle_timeout_s = 0.2'),
    or a provider option: make_chatd(blocks={"opencode": 'capabilities = ["completion"]'})."""
    servers: list[ChatdServer] = []

    def make(extra: str = "", environ: dict | None = None, base: str = NO_RETRIES,
             blocks: dict[str, str] | None = None) -> ChatdServer:
        config = write_config(tmp_path, gateway_toml(**upstreams, extra=extra, base=base, blocks=blocks),
                              KEYS if environ is None else environ)
        server = ChatdServer(config).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


T = TypeVar("T")


@pytest.fixture
def closing() -> Iterator[Callable[[T], T]]:
    """`closing(sdk_client)`: the client, closed when the test ends (an SDK client left open leaks sockets)."""
    made: list = []

    def close_later(client: T) -> T:
        made.append(client)
        return client

    yield close_later
    for client in made:
        client.close()


_FAKES = frozenset({"upstreams", "gateway", "make_chatd", "ollama", "ollama_cloud", "openrouter", "opencode",
                    "openai_api", "anthropic_api",
                    "kimi", "groq"})


@pytest.fixture(autouse=True)
def _reset_fakes(request) -> Iterator[None]:
    """Each test that uses a fake starts with them idle, and leaves them with default replies and an empty log."""
    used = not _FAKES.isdisjoint(request.fixturenames)
    fakes = request.getfixturevalue("upstreams").values() if used else ()
    for fake in fakes:  # a stream an earlier test cut off may take a moment to close at the fake
        fake.wait_open_requests(0)
        fake.wait_open_streams(0)
    yield
    for fake in fakes:
        fake.replies.clear()
        fake.requests.clear()
        getattr(fake, "stored", {}).clear()
