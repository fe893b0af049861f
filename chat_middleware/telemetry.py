"""Per-provider counters kept in process: requests, errors by kind, tokens, latency.

Cooldowns and the in-flight slots that limits count are the shared state's
(state.py); `in_flight` here is this process's upstream calls, for its metrics.

Plain integers and floats updated in place — no locks (one event loop per
process) and nothing allocated per request but the error-kind key. Upstream
calls in flight and failures also go to the provider's Prometheus metrics.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from .metrics import ProviderMetrics, SharedProviderMetrics, for_provider

NOT_UPSTREAM_FAILURES = frozenset({"client_gone", "cancelled"})


class ProviderStats:
    """What one provider has done since start-up."""

    __slots__ = ("requests", "statuses", "errors", "tokens_in", "tokens_out", "latency_s", "in_flight",
                 "retries", "fallbacks", "metrics")

    def __init__(self, name: str) -> None:
        self.metrics: ProviderMetrics | SharedProviderMetrics = for_provider(name)
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.tokens_in = 0
        self.tokens_out = 0
        self.latency_s = 0.0
        self.in_flight = 0
        self.retries = 0
        self.fallbacks = 0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_ms_avg": round(1000 * self.latency_s / self.requests, 3) if self.requests else 0.0,
            "in_flight": self.in_flight,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
        }


class Telemetry:
    """Counters for every configured provider, readable at any time."""

    def __init__(self, providers: Iterable[str]) -> None:
        self.providers: dict[str, ProviderStats] = {}
        self.ensure(providers)

    def ensure(self, providers: Iterable[str]) -> None:
        """Counters for providers a reloaded config added; existing ones carry on."""
        for name in providers:
            if name not in self.providers:
                self.providers[name] = ProviderStats(name)

    @staticmethod
    def started(stats: ProviderStats) -> None:
        stats.in_flight += 1
        stats.metrics.started()

    @staticmethod
    def finished(
        stats: ProviderStats, status: int, latency_s: float, tokens_in: int, tokens_out: int,
        error: str | None = None,
    ) -> None:
        stats.in_flight -= 1
        stats.metrics.ended()
        stats.requests += 1
        stats.statuses[status] += 1
        stats.latency_s += latency_s
        stats.tokens_in += tokens_in
        stats.tokens_out += tokens_out
        if error is not None:
            stats.errors[error] += 1
            if error not in NOT_UPSTREAM_FAILURES:
                stats.metrics.failed(error)

    @staticmethod
    def retried(stats: ProviderStats) -> None:
        stats.retries += 1
        stats.metrics.retried()

    def snapshot(self) -> dict[str, dict]:
        return {name: stats.as_dict() for name, stats in self.providers.items()}
