"""Prometheus metrics: what GET /v1/chat/metrics serves.

The metric objects live in chatd's own registry (so an embedding gateway's
registry and chatd's never clash) and are made once per process. Under several
worker processes, `PROMETHEUS_MULTIPROC_DIR` names a directory every worker
writes its values to (prometheus_client's multiprocess mode), and a scrape of
any worker reads them all; the variable must be set before this module is
first imported, which `chatd --workers N` and deploy/ take care of.

Labelled children are looked up once and kept, so recording a request costs a
few increments and no label parsing.
"""

from __future__ import annotations

import os

_DIRECTORY = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
if _DIRECTORY:
    os.makedirs(_DIRECTORY, exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
NO_PROVIDER = "none"
"""The provider label of a request answered before any provider was chosen (400, 404, 401…)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("chatd_requests", "Client requests answered, by the provider that served and the status sent.",
                   ["provider", "status"], registry=REGISTRY)
UPSTREAM_ERRORS = Counter("chatd_upstream_errors", "Upstream calls that failed, by kind of failure.",
                          ["provider", "kind"], registry=REGISTRY)
RETRIES = Counter("chatd_retries", "Upstream calls made again to the same provider after a failure.",
                  ["provider"], registry=REGISTRY)
FALLBACKS = Counter("chatd_fallbacks", "Requests passed on to the next provider of their chain.",
                    ["from_provider", "to_provider"], registry=REGISTRY)
DURATION = Histogram("chatd_request_duration_seconds", "Time from request to the last byte of the answer.",
                     ["provider"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
FIRST_TOKEN = Histogram("chatd_time_to_first_token_seconds", "Time from request to the first content of a stream.",
                        ["provider"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
TOKENS = Counter("chatd_tokens", "Tokens the upstreams reported, in (prompt) and out (completion).",
                 ["provider", "direction"], registry=REGISTRY)
IN_FLIGHT = Gauge("chatd_in_flight", "Upstream calls under way.", ["provider"], registry=REGISTRY,
                  multiprocess_mode="livesum")


class ProviderMetrics:
    """One provider's labelled children, resolved once."""

    __slots__ = ("name", "statuses", "errors", "retries", "duration", "first_token", "tokens_in", "tokens_out",
                 "in_flight")

    def __init__(self, name: str) -> None:
        self.name = name
        self.statuses: dict[int, Counter] = {}
        self.errors: dict[str, Counter] = {}
        self.retries = RETRIES.labels(name)
        self.duration = DURATION.labels(name)
        self.first_token = FIRST_TOKEN.labels(name)
        self.tokens_in = TOKENS.labels(name, "in")
        self.tokens_out = TOKENS.labels(name, "out")
        self.in_flight = IN_FLIGHT.labels(name)

    def answered(self, status: int, seconds: float, first_token: float | None, tokens_in: int,
                 tokens_out: int) -> None:
        counter = self.statuses.get(status)
        if counter is None:
            counter = self.statuses[status] = REQUESTS.labels(self.name, str(status))
        counter.inc()
        self.duration.observe(seconds)
        if first_token is not None:
            self.first_token.observe(first_token)
        if tokens_in:
            self.tokens_in.inc(tokens_in)
        if tokens_out:
            self.tokens_out.inc(tokens_out)

    def failed(self, kind: str) -> None:
        counter = self.errors.get(kind)
        if counter is None:
            counter = self.errors[kind] = UPSTREAM_ERRORS.labels(self.name, kind)
        counter.inc()


_PROVIDERS: dict[str, ProviderMetrics] = {}


def for_provider(name: str) -> ProviderMetrics:
    """The provider's metrics, made on first use (names come from config, so they stay few)."""
    metrics = _PROVIDERS.get(name)
    if metrics is None:
        metrics = _PROVIDERS[name] = ProviderMetrics(name)
    return metrics


def fell_back(from_provider: str, to_provider: str) -> None:
    FALLBACKS.labels(from_provider, to_provider).inc()


def exposition() -> bytes:
    """The text a scrape receives: this process's values, or every worker's in multiprocess mode."""
    if not _DIRECTORY:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_DIRECTORY)
    return generate_latest(registry)


def process_exiting() -> None:
    """Drop this worker's live gauges (in flight) from the shared directory."""
    if _DIRECTORY:
        mark_process_dead(os.getpid(), _DIRECTORY)
