"""lakehouse.toml → immutable, validated configuration.

Every error names the file and the key, because the person reading it is an
operator with an editor open on that file:

    >>> load_config("lakehouse.toml")
    ConfigError: lakehouse.toml: [chatd.providers.kimi] timeout_s: expected a number, got 'slow'

Only [models], [chatd] and [gateway] chatd_url belong to chatd; other tables
and keys belong to the host gateway and are left alone.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .asgi import HOP_BY_HOP
from .config_clients import env_secret, read_clients, read_state, split_keys
from .errors import ConfigError
from .providers import BUILTIN_PROVIDERS, DEFAULT_ROUTES
from .settings import (  # noqa: F401  (the dataclasses are re-exported: chatd's config API)
    DEFAULT_PATH, MIB, OLLAMA_API_VERSION, THINK_LEVELS, ClientConfig, Config, ProviderConfig, Resilience,
    StateConfig, Timeouts,
)
from .transforms import TRANSFORMS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("chatd")

NEVER_FORWARDED = frozenset(name.decode() for name in HOP_BY_HOP) | {
    "authorization", "x-api-key", "cookie", "host", "content-length"}
"""Client headers `forward_headers` may not name: credentials, and what belongs to one connection."""


# ----- schema: key → (accepted types, what the error calls it)

_NUMBER = ((int, float), "a number")
_INT = ((int,), "an integer")
_STR = ((str,), "a string")
_BOOL = ((bool,), "true or false")
_TABLE = ((dict,), "a table")
_STRINGS = ((list,), "an array of strings")

_TIMEOUT_KEYS = {
    "timeout_s": _NUMBER,
    "connect_timeout_s": _NUMBER,
    "first_byte_timeout_s": _NUMBER,
    "idle_timeout_s": _NUMBER,
    "max_connections": _INT,
}
_RESILIENCE_KEYS = {  # key → Resilience field; [chatd] sets the default, a provider block overrides
    "retries": "retries",
    "retry_backoff_s": "backoff",
    "retry_backoff_max_s": "backoff_max",
    "retry_after_max_s": "retry_after_max",
    "cooldown_failures": "cooldown_failures",
    "cooldown_s": "cooldown",
    "max_in_flight": "max_in_flight",
    "rpm": "rpm",
    "tpm": "tpm",
}
_RESILIENCE_TYPES = {"retries": _INT, "cooldown_failures": _INT, "max_in_flight": _INT, "rpm": _INT, "tpm": _INT}
CHATD_KEYS = {
    "bind": _STR,
    "ollama_url": _STR,
    "default_provider": _STR,
    "max_body_bytes": _INT,
    "providers": _TABLE,
    "routes": ((list,), "an array of tables"),
    "api_keys_env": _STR,
    "log_bodies": _BOOL,
    "ollama_api_version": _STR,
    "state": _TABLE,
    "clients": _TABLE,
    **_TIMEOUT_KEYS,
    **{key: _RESILIENCE_TYPES.get(key, _NUMBER) for key in _RESILIENCE_KEYS},
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
    "forward_headers": _STRINGS,
    "capabilities": _STRINGS,
    "responses": _BOOL,
    "default_max_tokens": _INT,
    **_TIMEOUT_KEYS,
    **{key: _RESILIENCE_TYPES.get(key, _NUMBER) for key in _RESILIENCE_KEYS},
}
GATEWAY_KEYS = {"chatd_url": _STR}
ROUTE_KEYS = {"prefix": _STR, "provider": _STR}
STATE_KEYS = {"redis_url": _STR, "key_prefix": _STR, "on_error": _STR, "lease_s": _NUMBER, "timeout_s": _NUMBER,
              "retry_s": _NUMBER}
CLIENT_KEYS = {"key_env": _STR, "env_file": _STR, "models": _STRINGS, "max_in_flight": _INT, "rpm": _INT,
               "tpm": _INT}
_POSITIVE = {*_TIMEOUT_KEYS, "max_body_bytes", "cooldown_failures", "default_max_tokens", "lease_s", "retry_s"}


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
            if types is _STRINGS[0] and not all(isinstance(item, str) and item for item in value):
                raise self.error(f"{where} {key}", f"expected {name}, got {_shown(value)}")
        return table

    def forwarded(self, names: list[str], where: str) -> tuple[str, ...]:
        """`forward_headers`, lowercased; naming a credential or a hop-by-hop header is an error."""
        lowered = tuple(dict.fromkeys(name.lower() for name in names))
        refused = [name for name in lowered if name in NEVER_FORWARDED]
        if refused:
            raise self.error(f"{where} forward_headers", f"{', '.join(refused)} is never passed upstream "
                             "(credentials and hop-by-hop headers stay with chatd)")
        return lowered


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


def _resilience(table: dict, base: Resilience) -> Resilience:
    return Resilience(**{
        name: table.get(key, getattr(base, name)) for key, name in _RESILIENCE_KEYS.items()
    })


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
    if values.get("responses") and values["transform"] != "openai":
        raise reader.error(f"{where} responses", "only an `openai` provider can also speak the Responses API")
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
        resilience=_resilience(values, _resilience(chatd, Resilience())),
        max_connections=values.get("max_connections", chatd.get("max_connections", 256)),
        think=values.get("think"),
        min_output_tokens=values.get("min_output_tokens", 0),
        default_temperature=values.get("default_temperature"),
        keep_cloud_suffix=values.get("keep_cloud_suffix", False),
        forward_headers=reader.forwarded(values.get("forward_headers", []), where),
        capabilities=tuple(values.get("capabilities", ProviderConfig.capabilities)),
        responses=values.get("responses", False),
        default_max_tokens=values.get("default_max_tokens", ProviderConfig.default_max_tokens),
        api_key=env_secret(f"provider {name!r}", key_env, env_file, environ),
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

    api_keys_env = chatd.get("api_keys_env", "")
    client_keys = split_keys(environ.get(api_keys_env)) if api_keys_env else frozenset()
    if api_keys_env and not client_keys:
        raise reader.error("[chatd] api_keys_env", f"names {api_keys_env}, which is unset or empty")
    state = read_state(reader, reader.check(reader.table(chatd.get("state", {}), "[chatd.state]"), STATE_KEYS,
                                            "[chatd.state]"))
    clients = read_clients(reader, {
        name: reader.check(reader.table(table, f"[chatd.clients.{name}]"), CLIENT_KEYS, f"[chatd.clients.{name}]")
        for name, table in chatd.get("clients", {}).items()
    }, environ, base_dir, client_keys)

    gateway = data.get("gateway", {})
    chatd_url = gateway.get("chatd_url", "") if isinstance(gateway, dict) else ""
    if not isinstance(chatd_url, str):
        raise reader.error("[gateway] chatd_url", f"expected a string, got {_shown(chatd_url)}")

    return Config(
        path=path,
        models=MappingProxyType(models),
        providers=MappingProxyType(providers),
        routes=MappingProxyType(routes),
        default_provider=default_provider,
        bind=chatd.get("bind", "127.0.0.1:3220"),
        max_body_bytes=chatd.get("max_body_bytes", 10 * MIB),
        api_keys_env=api_keys_env,
        client_keys=client_keys,
        chatd_url=chatd_url.rstrip("/"),
        log_bodies=chatd.get("log_bodies", False),
        ollama_api_version=chatd.get("ollama_api_version", OLLAMA_API_VERSION),
        clients=clients,
        state=state,
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
