"""Model name → provider and upstream model: a pure function over tables built once.

Rules, first match wins (DESIGN §2):

1. tier    — a `[models]` key becomes its model id (or chain), then rules 2–4
2. prefix  — `openrouter/moonshotai/kimi-k2` → openrouter, `moonshotai/kimi-k2`
3. cloud   — `kimi-k2.6:cloud` / `gpt-oss:120b-cloud` → ollama_cloud, base name
4. default — anything else → the default provider, name unchanged
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from .settings import Config
from .errors import BadRequest, ConfigError, ProviderNotRegistered
from .providers import CLOUD_PROVIDER

log = logging.getLogger("chatd")

MAX_MODEL_LENGTH = 512
_KNOWN_LIMIT = 4096
_CLOUD_TAG = re.compile(r"^(?P<name>[^:]+):(?P<tag>.+)-cloud$")


@dataclass(frozen=True, slots=True)
class Target:
    """One place a model can be served: a provider and the model name it is sent."""

    provider: str
    upstream_model: str
    rule: str
    registered: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving a model name; `chain` has more than one entry for a tier list."""

    model: str
    rule: str
    chain: tuple[Target, ...]

    def served(self) -> Target:
        """The first entry that can be asked, or 404 when no provider of the chain has a key."""
        for target in self.chain:
            if target.registered:
                return target
        names = ", ".join(repr(t.provider) for t in self.chain)
        raise ProviderNotRegistered(
            f"model {self.model!r} routes to provider {names}, which is not registered (no API key configured)"
        )

    def as_dict(self) -> dict:
        first = self.chain[0]
        return {
            "model": self.model,
            "provider": first.provider,
            "upstream_model": first.upstream_model,
            "rule": self.rule,
            "registered": first.registered,
            "chain": [
                {"provider": t.provider, "upstream_model": t.upstream_model, "rule": t.rule,
                 "registered": t.registered}
                for t in self.chain
            ],
        }


class Router:
    """Resolves model names with the prefix table compiled once at start-up."""

    def __init__(self, config: Config) -> None:
        self._registered = {name: p.registered for name, p in config.providers.items()}
        self._keep_cloud_suffix = config.providers[CLOUD_PROVIDER].keep_cloud_suffix
        self._routes = dict(config.routes)
        self._default = config.default_provider
        prefixes = sorted(self._routes, key=len, reverse=True)  # longest prefix wins
        self._prefix = re.compile("|".join(re.escape(p) for p in prefixes)) if prefixes else None
        self._tier_resolutions = {}
        for tier, chain in config.models.items():
            try:
                resolution = Resolution(tier, "tier", tuple(map(self._target, chain)))
            except BadRequest as exc:
                raise ConfigError(f"{config.path}: [models] {tier}: {exc.message}") from None
            for target in resolution.chain:
                if not target.registered:
                    log.warning("tier %r: provider %r has no key; requests to it get 404",
                                tier, target.provider)
            self._tier_resolutions[tier] = resolution
        self._known: dict[str, Resolution] = dict(self._tier_resolutions)

    def resolve(self, model: object) -> Resolution:
        """Resolve without I/O; BadRequest for a missing or malformed name."""
        known = self._known.get(model) if isinstance(model, str) else None
        if known is not None:
            return known
        if not isinstance(model, str) or not model.strip():
            raise BadRequest("'model' is required and must be a non-empty string")
        if len(model) > MAX_MODEL_LENGTH:
            raise BadRequest(f"'model' is longer than {MAX_MODEL_LENGTH} characters")
        target = self._target(model)
        resolution = Resolution(model, target.rule, (target,))
        if len(self._known) >= _KNOWN_LIMIT:  # clients choose names: keep the memo bounded
            self._known = dict(self._tier_resolutions)
        self._known[model] = resolution
        return resolution

    def _target(self, model: str) -> Target:
        match = self._prefix.match(model) if self._prefix else None
        if match:
            rest = model[match.end():]
            if not rest:
                raise BadRequest(f"model {model!r} names a provider prefix but no model after it")
            return self._make(self._routes[match.group()], rest, "prefix")
        if model.endswith(":cloud") or model.endswith("-cloud"):
            base = self._cloud_base(model)
            if base:
                return self._make(CLOUD_PROVIDER, model if self._keep_cloud_suffix else base, "cloud_suffix")
        return self._make(self._default, model, "default")

    @staticmethod
    def _cloud_base(model: str) -> str | None:
        if model.endswith(":cloud"):
            return model[: -len(":cloud")] or None
        tagged = _CLOUD_TAG.match(model)
        return f"{tagged['name']}:{tagged['tag']}" if tagged else None

    def _make(self, provider: str, upstream_model: str, rule: str) -> Target:
        return Target(provider, upstream_model, rule, self._registered.get(provider, False))
