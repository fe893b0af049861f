"""lakehouse.toml → immutable, validated configuration.

Every error names the file and the key, because the person reading it is an
operator with an editor open on that file:

    >>> load_config("lakehouse.toml")
    ConfigError: lakehouse.toml: [chatd.providers.kimi] timeout_s: expected a number, got 'slow'

Only [models] and [chatd] belong to chatd; other top-level tables (such as
[gateway]) belong to the host gateway and are left alone.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from dotenv import dotenv_values

from .errors import ConfigError
from .providers import BUILTIN_PROVIDERS, DEFAULT_ROUTES
from .transforms import TRANSFORMS
from .transforms.ollama import THINK_LEVELS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("chatd")

SECONDS = 1.0
MIB = 1024 * 1024
DEFAULT_PATH = "lakehouse.toml"


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
class ProviderConfig:
    """One upstream: where it is, how to talk to it, and the key that unlocks it."""

    name: str
    transform: str
    base_url: str
    key_env: str = ""
    env_file: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = 256
    think: bool | str | None = None
    min_output_tokens: int = 0
    default_temperature: float | None = None
    keep_cloud_suffix: bool = False
    api_key: str | None = field(default=None, repr=False)

    @property
    def registered(self) -> bool:
        """A provider is served when it needs no key or has one."""
        return not self.key_env or bool(self.api_key)


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

    @property
    def registered(self) -> list[ProviderConfig]:
        return [p for p in self.providers.values() if p.registered]

    @property
    def keys(self) -> list[str]:
        """Every configured secret, so that output can be checked against them."""
        return [p.api_key for p in self.providers.values() if p.api_key]


# ----- schema: key → (accepted types, what the error calls it)

_NUMBER = ((int, float), "a number")
_INT = ((int,), "an integer")
_STR = ((str,), "a string")
_BOOL = ((bool,), "true or false")
_TABLE = ((dict,), "a table")

_TIMEOUT_KEYS = {
    "timeout_s": _NUMBER,
    "connect_timeout_s": _NUMBER,
    "first_byte_timeout_s": _NUMBER,
    "idle_timeout_s": _NUMBER,
    "max_connections": _INT,
}
CHATD_KEYS = {
    "bind": _STR,
    "ollama_url": _STR,
    "default_provider": _STR,
    "max_body_bytes": _INT,
    "providers": _TABLE,
    "routes": ((list,), "an array of tables"),
    **_TIMEOUT_KEYS,
}
PROVIDER_KEYS = {
    "transform": _STR,
    "base_url": _STR,
    "key_env": _STR,
    "env_file": _STR,
    "headers": _TABLE,
    "think": ((bool, str), "true, false or a level"),
    "min_output_tokens": _INT,
    "default_temperature": _NUMBER,
    "keep_cloud_suffix": _BOOL,
    **_TIMEOUT_KEYS,
}
ROUTE_KEYS = {"prefix": _STR, "provider": _STR}
_POSITIVE = {*_TIMEOUT_KEYS, "max_body_bytes"}


class _Reader:
    """Validates tables of one file, naming that file in every error."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {message}")

    def table(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.error(where, f"must be a table, got {_shown(value)}")
        return value

    def check(self, table: dict, schema: dict, where: str) -> dict:
        for key, value in table.items():
            if key not in schema:
                known = ", ".join(sorted(schema))
                raise self.error(f"{where} {key}", f"unknown key (known: {known})")
            types, name = schema[key]
            wrong_bool = isinstance(value, bool) and bool not in types
            if wrong_bool or not isinstance(value, types):
                raise self.error(f"{where} {key}", f"expected {name}, got {_shown(value)}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise self.error(f"{where} {key}", f"must not be negative, got {value}")
            if key in _POSITIVE and value <= 0:
                raise self.error(f"{where} {key}", f"must be greater than 0, got {value}")
            if key == "think" and isinstance(value, str) and value not in THINK_LEVELS:
                raise self.error(f"{where} {key}", f"expected true, false or one of {', '.join(THINK_LEVELS)}")
        return table


def _shown(value: Any) -> str:
    kind = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"[:80]


def _timeouts(table: dict, base: Timeouts) -> Timeouts:
    return Timeouts(
        connect=table.get("connect_timeout_s", base.connect),
        first_byte=table.get("first_byte_timeout_s", base.first_byte),
        idle=table.get("idle_timeout_s", base.idle),
        total=table.get("timeout_s", base.total),
    )


def _api_key(name: str, key_env: str, env_file: str, environ: Mapping[str, str]) -> str | None:
    """The env var first, then the same name in the provider's env_file."""
    if not key_env:
        return None
    if environ.get(key_env):
        return environ[key_env]
    if env_file and os.path.isfile(env_file):
        value = dotenv_values(env_file).get(key_env)
        if value:
            return value
    return None


def _provider(
    reader: _Reader, name: str, block: dict, chatd: dict, environ: Mapping[str, str], base_dir: Path
) -> ProviderConfig:
    where = f"[chatd.providers.{name}]"
    values = {**BUILTIN_PROVIDERS.get(name, {}), **reader.check(block, PROVIDER_KEYS, where)}
    for required in ("transform", "base_url"):
        if required not in values:
            raise reader.error(f"{where} {required}", "is required for a provider chatd does not know")
    if values["transform"] not in TRANSFORMS:
        known = ", ".join(sorted(TRANSFORMS))
        raise reader.error(f"{where} transform", f"unknown transform {values['transform']!r} (known: {known})")
    for header, value in values.get("headers", {}).items():
        if not isinstance(value, str):
            raise reader.error(f"{where} headers.{header}", f"expected a string, got {_shown(value)}")
    env_file = values.get("env_file", "")
    if env_file:
        env_file = str(base_dir / os.path.expanduser(env_file))
    key_env = values.get("key_env", "")
    return ProviderConfig(
        name=name,
        transform=values["transform"],
        base_url=values["base_url"].rstrip("/"),
        key_env=key_env,
        env_file=env_file,
        headers=MappingProxyType(dict(values.get("headers", {}))),
        timeouts=_timeouts(values, _timeouts(chatd, Timeouts())),
        max_connections=values.get("max_connections", chatd.get("max_connections", 256)),
        think=values.get("think"),
        min_output_tokens=values.get("min_output_tokens", 0),
        default_temperature=values.get("default_temperature"),
        keep_cloud_suffix=values.get("keep_cloud_suffix", False),
        api_key=_api_key(name, key_env, env_file, environ),
    )


def parse_config(
    data: dict, path: str = DEFAULT_PATH, environ: Mapping[str, str] | None = None
) -> Config:
    """Build a Config from already-parsed TOML (the testable half of load_config)."""
    environ = os.environ if environ is None else environ
    reader = _Reader(path)
    base_dir = Path(path).resolve().parent
    chatd = reader.check(reader.table(data.get("chatd", {}), "[chatd]"), CHATD_KEYS, "[chatd]")

    blocks = {name: {} for name in BUILTIN_PROVIDERS}
    for name, block in chatd.get("providers", {}).items():
        blocks[name] = reader.table(block, f"[chatd.providers.{name}]")
    if "ollama_url" in chatd:
        blocks["ollama"] = {"base_url": chatd["ollama_url"], **blocks["ollama"]}
    providers = {
        name: _provider(reader, name, block, chatd, environ, base_dir) for name, block in blocks.items()
    }

    routes = dict(DEFAULT_ROUTES)
    for i, route in enumerate(chatd.get("routes", [])):
        where = f"[[chatd.routes]] #{i + 1}"
        route = reader.check(reader.table(route, where), ROUTE_KEYS, where)
        for key in ("prefix", "provider"):
            if not route.get(key):
                raise reader.error(f"{where} {key}", "is required")
        if not route["prefix"].endswith("/") or route["prefix"] == "/":
            raise reader.error(f"{where} prefix", f"must look like 'name/', got {route['prefix']!r}")
        if route["provider"] not in providers:
            raise reader.error(f"{where} provider", f"{route['provider']!r} is not a configured provider")
        routes[route["prefix"]] = route["provider"]

    default_provider = chatd.get("default_provider", "ollama")
    if default_provider not in providers:
        raise reader.error("[chatd] default_provider", f"{default_provider!r} is not a configured provider")

    models = {}
    for tier, value in reader.table(data.get("models", {}), "[models]").items():
        chain = [value] if isinstance(value, str) else value
        if not isinstance(chain, list) or not chain or not all(isinstance(m, str) and m for m in chain):
            raise reader.error(f"[models] {tier}", f"expected a model id or a list of them, got {_shown(value)}")
        models[tier] = tuple(chain)

    return Config(
        path=path,
        models=MappingProxyType(models),
        providers=MappingProxyType(providers),
        routes=MappingProxyType(routes),
        default_provider=default_provider,
        bind=chatd.get("bind", "127.0.0.1:3220"),
        max_body_bytes=chatd.get("max_body_bytes", 10 * MIB),
    )


def config_path(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> str:
    """--config, else $LAKEHOUSE_CONFIG, else ./lakehouse.toml."""
    environ = os.environ if environ is None else environ
    return os.fspath(path) if path else environ.get("LAKEHOUSE_CONFIG") or DEFAULT_PATH


def load_config(
    path: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate lakehouse.toml; keys come from `environ` (default os.environ).

    With no path given and no ./lakehouse.toml, chatd runs on built-in defaults:
    local Ollama only ("dev mode").
    """
    explicit = bool(path) or bool((os.environ if environ is None else environ).get("LAKEHOUSE_CONFIG"))
    path = config_path(path, environ)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such file") from None
        log.warning("no %s found; running on built-in defaults (local Ollama only)", path)
        data = {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    return parse_config(data, path, environ)
