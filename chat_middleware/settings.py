"""chatd's configuration as typed data: frozen dataclasses with their defaults.

`config.load_config` reads lakehouse.toml into these; everything else only reads
them. Nothing here imports the rest of chatd, so transforms, the guard and the
relay can depend on it without an import circle.

    Timeouts(connect=5, first_byte=60, idle=30, total=180)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Mapping
from urllib.parse import urlsplit

SECONDS = 1.0
MIB = 1024 * 1024
DEFAULT_PATH = "lakehouse.toml"
OLLAMA_API_VERSION = "0.13.0"
"""What /api/version tells Ollama clients: a current release, since clients refuse old ones."""
THINK_LEVELS = ("low", "medium", "high", "max")
"""The levels of Ollama's `think`, as the provider option `think` and Ollama clients give them."""


@dataclass(frozen=True)
class Timeouts:
    """Deadlines for one upstream call, in seconds.

    Timeouts(connect=5, first_byte=60, idle=30, total=180)
    """

    connect: float = 5 * SECONDS
    first_byte: float = 60 * SECONDS
    idle: float = 30 * SECONDS
    total: float = 180 * SECONDS


@dataclass(frozen=True)
class Resilience:
    """How hard chatd tries one provider before giving up on it.

    Resilience(retries=2, backoff=0.25, backoff_max=4, retry_after_max=10,
               cooldown_failures=5, cooldown=30, max_in_flight=0, rpm=0, tpm=0)
    """

    retries: int = 2
    backoff: float = 0.25 * SECONDS
    backoff_max: float = 4 * SECONDS
    retry_after_max: float = 10 * SECONDS
    cooldown_failures: int = 5
    cooldown: float = 30 * SECONDS
    max_in_flight: int = 0
    rpm: int = 0
    """Attempts sent to the provider per minute; 0 = unlimited."""
    tpm: int = 0
    """Tokens (in + out, as the provider reported them) per minute; 0 = unlimited."""


@dataclass(frozen=True)
class ProviderConfig:
    """One upstream: where it is, how to talk to it, and the key that unlocks it."""

    name: str
    transform: str
    base_url: str
    key_env: str = ""
    env_file: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    resilience: Resilience = Resilience()
    max_connections: int = 256
    think: bool | str | None = None
    min_output_tokens: int = 0
    default_temperature: float | None = None
    keep_cloud_suffix: bool = False
    forward_headers: tuple[str, ...] = ()
    """Client request headers passed upstream unchanged (lowercase names), e.g. Kimi's user-agent."""
    responses: bool = False
    """An `openai` provider that also speaks the Responses API: Responses clients pass through."""
    default_max_tokens: int = 4096
    """`max_tokens` sent to an `anthropic` provider when the request sets none (its API requires one)."""
    capabilities: tuple[str, ...] = ("completion", "tools")
    """What /api/show tells Ollama clients a model of this provider can do (Ollama providers answer
    for themselves)."""
    api_key: str | None = field(default=None, repr=False)

    @property
    def registered(self) -> bool:
        """A provider is served when it needs no key or has one."""
        return not self.key_env or bool(self.api_key)


@dataclass(frozen=True)
class StateConfig:
    """[chatd.state]: where the limits, leases and cooldowns of every process are kept.

    StateConfig(redis_url="redis://10.0.0.5:6379/0", key_prefix="chatd:", on_error="open", lease_s=30)
    """

    redis_url: str = field(default="", repr=False)
    """Empty: each process counts for itself."""
    key_prefix: str = "chatd:"
    on_error: str = "open"
    """Redis unreachable: "open" counts in process and serves, "closed" answers 503."""
    lease_s: float = 30 * SECONDS
    timeout_s: float = 0.25 * SECONDS
    """Each Redis call's own deadline, never a request's."""
    retry_s: float = 5 * SECONDS
    """After a failed call, how long chatd counts in process before it asks Redis again."""

    @property
    def password(self) -> str | None:
        """The password in `redis_url`, a secret to keep out of every output."""
        return urlsplit(self.redis_url).password or None


@dataclass(frozen=True)
class ClientConfig:
    """[chatd.clients.NAME]: a team's keys, the models it may name, and its own limits (0 = unlimited).

    ClientConfig(name="team-a", key_env="TEAM_A_KEYS", models=("fast", "ollama/*"), rpm=600)
    """

    name: str
    key_env: str
    env_file: str = ""
    models: tuple[str, ...] | None = None
    """Tiers, exact model ids and globs (`ollama/*`), matched against the name the client sends;
    None: every model."""
    max_in_flight: int = 0
    rpm: int = 0
    """Requests per minute (a request's retries and fallbacks count once)."""
    tpm: int = 0
    keys: frozenset[str] = field(default=frozenset(), repr=False)
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _globs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = self.models or ()
        globs = [p for p in patterns if any(c in p for c in "*?[")]
        object.__setattr__(self, "_exact", frozenset(p for p in patterns if p not in globs))
        object.__setattr__(self, "_globs", re.compile("|".join(map(translate, globs))) if globs else None)

    def allows(self, model: str) -> bool:
        """Whether the client may name `model` (as it named it: a tier is judged as the tier)."""
        if self.models is None or model in self._exact:
            return True
        return self._globs is not None and self._globs.match(model) is not None


@dataclass(frozen=True)
class Config:
    """Everything chatd needs to route and serve; built once, never mutated."""

    path: str
    models: Mapping[str, tuple[str, ...]]
    providers: Mapping[str, ProviderConfig]
    routes: Mapping[str, str]
    default_provider: str = "ollama"
    bind: str = "127.0.0.1:3220"
    max_body_bytes: int = 10 * MIB
    api_keys_env: str = ""
    client_keys: frozenset[str] = field(default=frozenset(), repr=False)
    chatd_url: str = ""
    log_bodies: bool = False
    ollama_api_version: str = OLLAMA_API_VERSION
    clients: Mapping[str, ClientConfig] = field(default_factory=dict)
    state: StateConfig = StateConfig()

    @property
    def registered(self) -> list[ProviderConfig]:
        return [p for p in self.providers.values() if p.registered]

    @property
    def keys(self) -> list[str]:
        """Every configured secret, so that output can be checked against them."""
        keys = [p.api_key for p in self.providers.values() if p.api_key] + sorted(self.client_keys)
        for client in self.clients.values():
            keys += sorted(client.keys)
        return keys + ([self.state.password] if self.state.password else [])
