"""Prometheus metrics: what GET /v1/chat/metrics serves.

One process (the default): counts are plain integers, updated for the cost of
an addition, and turned into Prometheus families only when scraped.

Several worker processes: `PROMETHEUS_MULTIPROC_DIR` names a directory every
worker writes its values to (prometheus_client's multiprocess mode), and a
scrape of any worker reads them all. Each update then also goes to a
prometheus_client metric backed by that directory. The variable must be set
before this module is first imported, which `chatd --workers N` and deploy/
take care of.

Either way the metrics live in chatd's own registry, so an embedding gateway's
registry and chatd's never clash.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from functools import cached_property
from typing import Iterator

_DIRECTORY = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
if _DIRECTORY:
    os.makedirs(_DIRECTORY, exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily  # noqa: E402
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
NO_PROVIDER = "none"
"""The provider label of a request answered before any provider was chosen (400, 404, 401…)."""
NO_CLIENT = ""
"""The client label of a request made without a named client's key (anonymous keys, or no auth)."""

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HELP = {
    "chatd_requests": "Client requests answered, by the provider that served, the status sent and the client.",
    "chatd_upstream_errors": "Upstream calls that failed, by kind of failure.",
    "chatd_retries": "Upstream calls made again to the same provider after a failure.",
    "chatd_fallbacks": "Requests passed on to the next provider of their chain.",
    "chatd_request_duration_seconds": "Time from request to the last byte of the answer.",
    "chatd_time_to_first_token_seconds": "Time from request to the first content of a stream.",
    "chatd_tokens": "Tokens the upstreams reported, in (prompt) and out (completion), by client.",
    "chatd_in_flight": "Upstream calls under way.",
    "chatd_rate_limited": "Attempts refused by a limit of chatd's own, by scope, client or provider name, and limit.",
    "chatd_state_errors": "Calls to the shared state (Redis) that failed or ran out of time.",
}
REGISTRY = CollectorRegistry(auto_describe=True)


class Timings:
    """A histogram kept as plain counts: one per bucket, plus +Inf, and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        total, out = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts):
            total += count
            out.append((bound, total))
        return out


class ProviderMetrics:
    """One provider's counts in this process."""

    __slots__ = ("name", "statuses", "errors", "retries", "duration", "first_token", "tokens", "in_flight")

    def __init__(self, name: str) -> None:
        self.name = name
        self.statuses: dict[tuple[int, str], int] = {}
        self.errors: dict[str, int] = {}
        self.retries = 0
        self.duration = Timings()
        self.first_token = Timings()
        self.tokens: dict[str, list[int]] = {NO_CLIENT: [0, 0]}
        """client → [in, out]"""
        self.in_flight = 0

    def answered(self, status: int, seconds: float, first_token: float | None, tokens_in: int,
                 tokens_out: int, client: str = NO_CLIENT) -> None:
        key = (status, client)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.duration.observe(seconds)
        if first_token is not None:
            self.first_token.observe(first_token)
        tokens = self.tokens.get(client)
        if tokens is None:
            tokens = self.tokens[client] = [0, 0]
        tokens[0] += tokens_in
        tokens[1] += tokens_out

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def retried(self) -> None:
        self.retries += 1

    def started(self) -> None:
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight -= 1


class SharedProviderMetrics:
    """Multiprocess mode: the same updates, written to the directory all workers share."""

    __slots__ = ("name", "_children")

    def __init__(self, name: str) -> None:
        self.name = name
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels: str):
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(self.name, *labels)
        return child

    def answered(self, status: int, seconds: float, first_token: float | None, tokens_in: int,
                 tokens_out: int, client: str = NO_CLIENT) -> None:
        self._child(_SHARED.requests, str(status), client).inc()
        self._child(_SHARED.duration).observe(seconds)
        if first_token is not None:
            self._child(_SHARED.first_token).observe(first_token)
        if tokens_in:
            self._child(_SHARED.tokens, "in", client).inc(tokens_in)
        if tokens_out:
            self._child(_SHARED.tokens, "out", client).inc(tokens_out)

    def failed(self, kind: str) -> None:
        self._child(_SHARED.errors, kind).inc()

    def retried(self) -> None:
        self._child(_SHARED.retries).inc()

    def started(self) -> None:
        self._child(_SHARED.in_flight).inc()

    def ended(self) -> None:
        self._child(_SHARED.in_flight).dec()


class _SharedMetrics:
    """The prometheus_client metrics of multiprocess mode, made only in that mode."""

    def __init__(self) -> None:
        def counter(name: str, labels: list[str]) -> Counter:
            return Counter(name, HELP[name], labels, registry=REGISTRY)

        def histogram(name: str) -> Histogram:
            return Histogram(name, HELP[name], ["provider"], buckets=BUCKETS, registry=REGISTRY)

        self.requests = counter("chatd_requests", ["provider", "status", "client"])
        self.errors = counter("chatd_upstream_errors", ["provider", "kind"])
        self.retries = counter("chatd_retries", ["provider"])
        self.fallbacks = counter("chatd_fallbacks", ["from_provider", "to_provider"])
        self.duration = histogram("chatd_request_duration_seconds")
        self.first_token = histogram("chatd_time_to_first_token_seconds")
        self.tokens = counter("chatd_tokens", ["provider", "direction", "client"])
        self.in_flight = Gauge("chatd_in_flight", HELP["chatd_in_flight"], ["provider"], registry=REGISTRY,
                               multiprocess_mode="livesum")
        self.rate_limited = counter("chatd_rate_limited", ["scope", "name", "limit"])

    @cached_property
    def state_errors(self) -> Counter:
        """Made on the first error: a counter without labels would write its file at start-up."""
        return Counter("chatd_state_errors", HELP["chatd_state_errors"], registry=REGISTRY)


_SHARED = _SharedMetrics() if _DIRECTORY else None
_PROVIDERS: dict[str, ProviderMetrics | SharedProviderMetrics] = {}
_FALLBACKS: dict[tuple[str, str], int] = {}
_RATE_LIMITED: dict[tuple[str, str, str], int] = {}
_STATE_ERRORS = [0]


def for_provider(name: str) -> ProviderMetrics | SharedProviderMetrics:
    """The provider's metrics, made on first use (names come from config, so they stay few)."""
    metrics = _PROVIDERS.get(name)
    if metrics is None:
        metrics = _PROVIDERS[name] = SharedProviderMetrics(name) if _SHARED else ProviderMetrics(name)
    return metrics


def fell_back(from_provider: str, to_provider: str) -> None:
    if _SHARED:
        _SHARED.fallbacks.labels(from_provider, to_provider).inc()
    else:
        _FALLBACKS[from_provider, to_provider] = _FALLBACKS.get((from_provider, to_provider), 0) + 1


def rate_limited(scope: str, name: str, limit: str) -> None:
    """A limit of chatd's own refused an attempt: scope "client" or "provider", limit rpm, tpm…"""
    if _SHARED:
        _SHARED.rate_limited.labels(scope, name, limit).inc()
    else:
        _RATE_LIMITED[scope, name, limit] = _RATE_LIMITED.get((scope, name, limit), 0) + 1


def state_error() -> None:
    """A call to the shared state failed (RedisState's on_state_error)."""
    if _SHARED:
        _SHARED.state_errors.inc()
    else:
        _STATE_ERRORS[0] += 1


class _InProcess:
    """A collector that turns this process's counts into Prometheus families at scrape time."""

    def collect(self) -> Iterator[object]:
        providers = sorted(_PROVIDERS.values(), key=lambda m: m.name)
        requests = CounterMetricFamily("chatd_requests", HELP["chatd_requests"],
                                       labels=["provider", "status", "client"])
        errors = CounterMetricFamily("chatd_upstream_errors", HELP["chatd_upstream_errors"],
                                     labels=["provider", "kind"])
        retries = CounterMetricFamily("chatd_retries", HELP["chatd_retries"], labels=["provider"])
        duration = HistogramMetricFamily("chatd_request_duration_seconds", HELP["chatd_request_duration_seconds"],
                                         labels=["provider"])
        first_token = HistogramMetricFamily("chatd_time_to_first_token_seconds",
                                            HELP["chatd_time_to_first_token_seconds"], labels=["provider"])
        tokens = CounterMetricFamily("chatd_tokens", HELP["chatd_tokens"], labels=["provider", "direction", "client"])
        in_flight = GaugeMetricFamily("chatd_in_flight", HELP["chatd_in_flight"], labels=["provider"])
        for m in providers:
            for (status, client), count in sorted(m.statuses.items()):
                requests.add_metric([m.name, str(status), client], count)
            for kind, count in sorted(m.errors.items()):
                errors.add_metric([m.name, kind], count)
            retries.add_metric([m.name], m.retries)
            duration.add_metric([m.name], m.duration.cumulative(), m.duration.sum)
            first_token.add_metric([m.name], m.first_token.cumulative(), m.first_token.sum)
            for client, (tokens_in, tokens_out) in sorted(m.tokens.items()):
                tokens.add_metric([m.name, "in", client], tokens_in)
                tokens.add_metric([m.name, "out", client], tokens_out)
            in_flight.add_metric([m.name], m.in_flight)
        fallbacks = CounterMetricFamily("chatd_fallbacks", HELP["chatd_fallbacks"],
                                        labels=["from_provider", "to_provider"])
        for (source, target), count in sorted(_FALLBACKS.items()):
            fallbacks.add_metric([source, target], count)
        limited = CounterMetricFamily("chatd_rate_limited", HELP["chatd_rate_limited"],
                                      labels=["scope", "name", "limit"])
        for labels, count in sorted(_RATE_LIMITED.items()):
            limited.add_metric(list(labels), count)
        state_errors = CounterMetricFamily("chatd_state_errors", HELP["chatd_state_errors"], value=_STATE_ERRORS[0])
        yield from (requests, errors, retries, fallbacks, duration, first_token, tokens, in_flight, limited,
                    state_errors)


if not _DIRECTORY:
    REGISTRY.register(_InProcess())


def exposition() -> bytes:
    """The text a scrape receives: this process's counts, or every worker's in multiprocess mode."""
    if not _DIRECTORY:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_DIRECTORY)
    return generate_latest(registry)


def process_exiting() -> None:
    """Drop this worker's live gauges (in flight) from the shared directory."""
    if _DIRECTORY:
        mark_process_dead(os.getpid(), _DIRECTORY)
