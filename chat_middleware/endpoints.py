"""chatd's own endpoints under /v1/chat: providers, resolve, health and metrics.

The client APIs' endpoints are in surfaces/; these are for operators and their
machines (balancers, Prometheus), and never call an upstream.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from .access import Call
from .asgi import send_body, send_json
from .errors import BadRequest
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, exposition
from .runtime import Runtime
from .types import Receive, Scope, Send


async def providers(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """Exactly the registered providers, never a key: whether each is available now, and its attempts in
    flight and cooldown as the shared state sees them (every process, with Redis)."""
    registered = runtime.config.registered
    seen = await runtime.state.snapshot([p.name for p in registered])
    listed = []
    for p in registered:
        in_flight, cooldown = seen[p.name]
        listed.append({"name": p.name, "transform": p.transform, "base_url": p.base_url,
                       "available": cooldown == 0, "cooldown_s": round(cooldown, 1), "in_flight": in_flight})
    await send_json(send, {"providers": listed})


async def resolve(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """Dry run: where a model would go, with the same 400/404 as a real call."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    models = query.get("model")
    if not models:
        raise BadRequest("query parameter 'model' is required")
    await send_json(send, runtime.route(models[0], call).as_dict())


async def health(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, {"status": "ok", "providers": len(runtime.config.registered)})


async def metrics(runtime: Runtime, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """Prometheus text: every worker's counts when PROMETHEUS_MULTIPROC_DIR is shared."""
    await send_body(send, 200, exposition(), [(b"content-type", METRICS_CONTENT_TYPE)])


ROUTES = {
    ("GET", "/providers"): providers,
    ("GET", "/resolve"): resolve,
    ("GET", "/health"): health,
    ("GET", "/metrics"): metrics,
}
UNLOGGED = frozenset({"/health", "/metrics"})
"""Paths polled by machines: counted in metrics, not written to the access log."""
