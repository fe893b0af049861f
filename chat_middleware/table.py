"""The resolved routing table of a Config, as `chatd --check` prints it.

    >>> print(routing_table(load_config("lakehouse.toml")))
    config lakehouse.toml

    tiers
      fast     ollama/qwen3:4b        → ollama  qwen3:4b  prefix  registered
      ...

Plain aligned text for an operator: where every tier goes, which prefix names
which provider, and for each provider whether it is registered and why. Keys
never appear — only where they came from.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

from .settings import Config, ProviderConfig
from .routing import Router

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
        [p.name, p.transform, p.base_url, _registered(p.registered), key_status(p, environ), _forwards(p)]
        for p in sorted(config.providers.values(), key=lambda p: p.name)
    )

    default = config.providers[config.default_provider]
    lines += ["", f"default provider {default.name} ({_registered(default.registered)})"]
    return "\n".join(lines) + "\n"


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
