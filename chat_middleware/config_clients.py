"""[chatd.clients.NAME] and [chatd.state] of lakehouse.toml: who may call chatd, and where limits are counted.

config.py checks each table's keys and types; this module gives them meaning
— client keys read from the environment or an env_file, no key shared by two
clients, an `on_error` chatd knows, a Redis URL chatd can use — and raises
through the same reader, so every error names the file and the key. No error
ever shows a key.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Protocol

from dotenv import dotenv_values

from .errors import ConfigError
from .settings import ClientConfig, StateConfig

log = logging.getLogger("chatd")

ON_ERROR = ("open", "closed")
REDIS_SCHEMES = ("redis", "rediss", "unix")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Client names go into metric labels, log lines and Redis keys: plain words only."""


class Reader(Protocol):
    def error(self, where: str, message: str) -> ConfigError: ...


def warn_if_readable(owner: str, env_file: str) -> None:
    """An env_file holds a secret: say so when users other than its owner can read it."""
    try:
        mode = os.stat(env_file).st_mode
    except OSError:
        return
    if mode & 0o044:
        log.warning("%s: env_file %s is readable by %s (mode %03o); run: chmod 600 %s",
                    owner, env_file, "others" if mode & 0o004 else "its group", mode & 0o777, env_file)


def env_secret(owner: str, key_env: str, env_file: str, environ: Mapping[str, str]) -> str | None:
    """The env var first, then the same name in `env_file`; `owner` ("provider 'kimi'") is for the warning."""
    if env_file:
        warn_if_readable(owner, env_file)
    if not key_env:
        return None
    if environ.get(key_env):
        return environ[key_env]
    if env_file and os.path.isfile(env_file):
        value = dotenv_values(env_file).get(key_env)
        if value:
            return value
    return None


def split_keys(value: str | None) -> frozenset[str]:
    """Comma-separated keys, blanks dropped."""
    return frozenset(key.strip() for key in (value or "").split(",") if key.strip())


def read_state(reader: Reader, table: dict) -> StateConfig:
    """[chatd.state], its types already checked."""
    state = StateConfig(**table)
    if state.on_error not in ON_ERROR:
        raise reader.error("[chatd.state] on_error", f'expected "open" or "closed", got {state.on_error!r}')
    if state.redis_url:
        scheme = state.redis_url.partition("://")[0]
        if "://" not in state.redis_url or scheme not in REDIS_SCHEMES:
            raise reader.error("[chatd.state] redis_url", "expected redis://HOST:PORT/DB, rediss://… or "
                               f"unix:///path/to/redis.sock, got a URL of scheme {scheme!r}")
        if importlib.util.find_spec("redis") is None:
            raise reader.error("[chatd.state] redis_url", "needs the redis package: pip install 'chatd[redis]'")
    return state


def read_clients(
    reader: Reader, tables: dict[str, dict], environ: Mapping[str, str], base_dir: Path,
    anonymous: frozenset[str],
) -> Mapping[str, ClientConfig]:
    """Every [chatd.clients.NAME], its types already checked; `anonymous` are [chatd] api_keys_env's keys."""
    clients: dict[str, ClientConfig] = {}
    owners = dict.fromkeys(anonymous, "[chatd] api_keys_env")
    for name, table in tables.items():
        where = f"[chatd.clients.{name}]"
        if not _CLIENT_NAME.fullmatch(name):
            raise reader.error(where, "a client's name is letters, digits, '-', '_' and '.' (at most 64)")
        key_env = table.get("key_env", "")
        if not key_env:
            raise reader.error(f"{where} key_env", "is required: the environment variable of the client's keys")
        env_file = table.get("env_file", "")
        if env_file:
            env_file = str(base_dir / os.path.expanduser(env_file))
        keys = split_keys(env_secret(f"client {name!r}", key_env, env_file, environ))
        if not keys:
            also = f" and not in {env_file}" if env_file else ""
            raise reader.error(f"{where} key_env", f"names {key_env}, which is unset or empty{also}")
        for key in keys:
            other = owners.setdefault(key, where)
            if other != where:
                raise reader.error(f"{where} key_env", f"a key of {key_env} is also a key of {other}: "
                                   "each key identifies one client")
        models = table.get("models")
        clients[name] = ClientConfig(
            name=name, key_env=key_env, env_file=env_file,
            models=None if models is None else tuple(dict.fromkeys(models)),
            max_in_flight=table.get("max_in_flight", 0), rpm=table.get("rpm", 0), tpm=table.get("tpm", 0),
            keys=keys,
        )
    return MappingProxyType(clients)
