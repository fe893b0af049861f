"""The resolved routing table of a Config, as `chatd --check` prints it.

    >>> print(routing_table(load_config("lakehouse.toml")))
    config lakehouse.toml

    tiers
      fast     ollama/qwen3:4b        → ollama  qwen3:4b  prefix  registered
      ...

Plain aligned text for an operator: where every tier goes, which prefix names
which provider, for each provider whether it is registered and why and its
limits, where limits are counted ([chatd.state]), and each client's models and
limits. Keys never appear — only where they came from.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

from .settings import ClientConfig, Config, ProviderConfig, StateConfig
from .routing import Router
from .state_redis import where

_INDENT = "  "


def routing_table(
    config: Config, *, router: Router | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Tiers, route prefixes, providers and the default provider of `config`, as text.

    `router` is built from `config` when not given; `environ` (default
    os.environ) only tells a key taken from the environment from one read
    from an env_file.
    """
    router = Router(config) if router is None else router
    environ = os.environ if environ is None else environ
    lines = [f"config {config.path}", ""]

    lines.append("tiers")
    rows = []
    for tier, chain in config.models.items():
        for i, (model, target) in enumerate(zip(chain, router.resolve(tier).chain)):
            rows.append([tier if i == 0 else "", model, "→", target.provider, target.upstream_model,
                         target.rule, _registered(target.registered)])
    lines += _aligned(rows) if rows else [_INDENT + "(none)"]

    lines += ["", "route prefixes"]
    lines += _aligned([prefix, "→", provider] for prefix, provider in sorted(config.routes.items()))

    lines += ["", "providers"]
    lines += _aligned(
        [p.name, p.transform, p.base_url, _registered(p.registered), key_status(p, environ), _forwards(p),
         _limits(p.resilience.max_in_flight, p.resilience.rpm, p.resilience.tpm)]
        for p in sorted(config.providers.values(), key=lambda p: p.name)
    )

    default = config.providers[config.default_provider]
    lines += ["", f"default provider {default.name} ({_registered(default.registered)})"]

    lines += ["", "shared state", _INDENT + _state(config.state)]

    lines += ["", "clients"]
    rows = [[c.name, _client_keys(c, environ), _models(c), _limits(c.max_in_flight, c.rpm, c.tpm)]
            for c in config.clients.values()]
    if config.api_keys_env:
        rows.append(["(anonymous)", f"{len(config.client_keys)} key(s) from env {config.api_keys_env}",
                     "models: every model", ""])
    lines += _aligned(rows) if rows else [_INDENT + "(none: no client key needed)"]
    return "\n".join(lines) + "\n"


def _state(state: StateConfig) -> str:
    """Where limits, leases and cooldowns are counted — never a Redis password."""
    if not state.redis_url:
        return "per process (no [chatd.state] redis_url)"
    return (f"redis {where(state.redis_url)}  key_prefix {state.key_prefix}  on_error {state.on_error}  "
            f"lease_s {state.lease_s:g}  timeout_s {state.timeout_s:g}  retry_s {state.retry_s:g}")


def _client_keys(client: ClientConfig, environ: Mapping[str, str]) -> str:
    """How many keys a client has and where they came from — never the keys."""
    source = f"env {client.key_env}" if environ.get(client.key_env) else f"env_file {client.env_file}"
    return f"{len(client.keys)} key(s) from {source}"


def _models(client: ClientConfig) -> str:
    if client.models is None:
        return "models: every model"
    return f"models: {', '.join(client.models) or 'none'}"


def _limits(max_in_flight: int, rpm: int, tpm: int) -> str:
    """The limits that are set (0 is unlimited, and not shown)."""
    limits = [f"{name} {value}" for name, value in (("max_in_flight", max_in_flight), ("rpm", rpm), ("tpm", tpm))
              if value]
    return "limits " + ", ".join(limits) if limits else ""


def key_status(provider: ProviderConfig, environ: Mapping[str, str]) -> str:
    """Why a provider is registered or not — never the key itself."""
    if not provider.key_env:
        return "needs no key"
    if not provider.api_key:
        where = f" (or put it in {provider.env_file})" if provider.env_file else ""
        return f"no key: set {provider.key_env}{where}"
    if environ.get(provider.key_env) == provider.api_key:
        return f"key from env {provider.key_env}"
    return f"key from env_file {provider.env_file}"


def _forwards(provider: ProviderConfig) -> str:
    """Which client headers go upstream as they came (forward_headers)."""
    return f"forwards {', '.join(provider.forward_headers)}" if provider.forward_headers else ""


def _registered(registered: bool) -> str:
    return "registered" if registered else "not registered"


def _aligned(rows: Iterable[Sequence[str]]) -> list[str]:
    rows = [list(row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return [
        (_INDENT + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip()
        for row in rows
    ]
