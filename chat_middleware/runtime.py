"""Everything built from one Config, swapped whole when the config is reloaded.

A request takes the runtime current when it arrives and keeps it to its end, so
in-flight streams finish on the routes and sessions they began with; a retired
runtime closes its upstream sessions once its last request is done. The shared
state (state.py) outlives runtimes: a reload keeps it, and the counts in it,
unless [chatd.state] itself changed.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from .access import Call
from .errors import ModelNotAllowed, UpstreamError
from .metrics import state_error
from .settings import ClientConfig, Config, ProviderConfig, StateConfig
from .forward import Forwarder
from .relay import Relay
from .routing import Resolution, Router
from .state import LocalState, State
from .telemetry import Telemetry
from .upstream import Upstreams

log = logging.getLogger("chatd")


def make_state(settings: StateConfig) -> State:
    """A RedisState when [chatd.state] names a Redis, else a LocalState: limits per process."""
    if not settings.redis_url:
        return LocalState()
    from .state_redis import RedisState  # the redis package is an extra: chatd[redis]

    return RedisState(settings.redis_url, key_prefix=settings.key_prefix, lease_s=settings.lease_s,
                      on_error=settings.on_error, timeout_s=settings.timeout_s,  # type: ignore[arg-type]
                      retry_s=settings.retry_s, on_state_error=state_error)


class Runtime:
    """Router, upstream sessions and relay for one Config (or a forwarder in remote mode)."""

    def __init__(self, config: Config, telemetry: Telemetry, state: State) -> None:
        self.config = config
        self.router = Router(config)
        self.upstreams = Upstreams(config)
        self.telemetry = telemetry
        self.state = state
        self.relay = Relay(config, self.upstreams, telemetry, state)
        self.forwarder = Forwarder(config.chatd_url) if config.chatd_url else None
        self.secrets = config.keys
        self.principals: tuple[tuple[bytes, str | None], ...] = (
            *((key.encode(), None) for key in sorted(config.client_keys)),
            *((key.encode(), client.name) for client in config.clients.values() for key in sorted(client.keys)),
        )
        """Every client key and the [chatd.clients] name it stands for (None: an anonymous key)."""
        self.models = self._model_list()
        self._client_models = {name: self._model_list(client) for name, client in config.clients.items()
                               if client.models is not None}
        self.active = 0
        self.retired = False
        self.closes_state = False
        """Set on a retired runtime whose state a reload replaced: closed with the runtime."""
        self._closing: asyncio.Task | None = None
        telemetry.ensure(config.providers)

    def route(self, model: object, call: Call, body: dict | None = None) -> Resolution:
        """Where `model` goes, noted on the call; 400 for a bad name, 403 when the client's key does not
        allow it, 404 when no provider can serve it.

        `body` is the request, which the access log carries when `log_bodies` is on.
        """
        call.model = model
        if body is not None and self.config.log_bodies:
            call.body = body
        resolution = self.router.resolve(model)
        if resolution.rule == "tier":
            call.tier = resolution.model
        if call.client is not None:
            client = self.config.clients[call.client]
            if not client.allows(resolution.model):
                raise ModelNotAllowed(f"this key may not use model {resolution.model!r}; "
                                      f"it may use: {', '.join(client.models or ()) or 'no model'}")
        resolution.served()
        return resolution

    def listed(self, call: Call) -> bytes:
        """The OpenAI model list the caller may use: every model, or those its client's `models` allow."""
        if call.client is None:
            return self.models
        return self._client_models.get(call.client, self.models)

    async def ask(self, provider: ProviderConfig, path: str, body: dict) -> tuple[int, bytes]:
        """Another endpoint of the provider's own API (Ollama's /api/show, Anthropic's count_tokens):
        its status and body, a 4xx included; a 5xx is the provider failing, an UpstreamError."""
        status, raw = await self.upstreams.fetch(provider.name, path, orjson.dumps(body), provider.timeouts.total)
        if status >= 500:
            raise UpstreamError(f"{provider.name} answered {path} with HTTP {status}")
        return status, raw

    def open(self) -> None:
        self.upstreams.open()
        if self.forwarder is not None:
            self.forwarder.open()

    async def close(self) -> None:
        await self.upstreams.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.closes_state:
            await self.state.aclose()

    def enter(self) -> None:
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
        if self.retired and self.active == 0:
            self._close_soon()

    def retire(self) -> None:
        """No new requests will come; close once the last in-flight one is done."""
        self.retired = True
        if self.active == 0:
            self._close_soon()

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    def _model_list(self, client: ClientConfig | None = None) -> bytes:
        """The OpenAI model list — tiers, then the models they name — built once; only what `client` may
        name, when given."""
        created = int(time.time())
        entries = {tier: "chatd" for tier in self.config.models}
        for chain in self.config.models.values():
            for model in chain:
                entries.setdefault(model, self.router.resolve(model).chain[0].provider)
        return orjson.dumps({"object": "list", "data": [
            {"id": model, "object": "model", "created": created, "owned_by": owner}
            for model, owner in entries.items() if client is None or client.allows(model)
        ]})
