"""Everything built from one Config, swapped whole when the config is reloaded.

A request takes the runtime current when it arrives and keeps it to its end, so
in-flight streams finish on the routes and sessions they began with; a retired
runtime closes its upstream sessions once its last request is done.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from .access import Call
from .settings import Config
from .forward import Forwarder
from .relay import Relay
from .routing import Resolution, Router
from .telemetry import Telemetry
from .upstream import Upstreams

log = logging.getLogger("chatd")


class Runtime:
    """Router, upstream sessions and relay for one Config (or a forwarder in remote mode)."""

    def __init__(self, config: Config, telemetry: Telemetry) -> None:
        self.config = config
        self.router = Router(config)
        self.upstreams = Upstreams(config)
        self.telemetry = telemetry
        self.relay = Relay(config, self.upstreams, telemetry)
        self.forwarder = Forwarder(config.chatd_url) if config.chatd_url else None
        self.secrets = config.keys
        self.models = self._model_list()
        self.active = 0
        self.retired = False
        self._closing: asyncio.Task | None = None
        telemetry.ensure(config.providers)

    def route(self, model: object, call: Call, body: dict | None = None) -> Resolution:
        """Where `model` goes, noted on the call; 400 for a bad name, 404 when no provider can serve it.

        `body` is the request, which the access log carries when `log_bodies` is on.
        """
        call.model = model
        if body is not None and self.config.log_bodies:
            call.body = body
        resolution = self.router.resolve(model)
        if resolution.rule == "tier":
            call.tier = resolution.model
        resolution.served()
        return resolution

    def open(self) -> None:
        self.upstreams.open()
        if self.forwarder is not None:
            self.forwarder.open()

    async def close(self) -> None:
        await self.upstreams.close()
        if self.forwarder is not None:
            await self.forwarder.close()

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

    def _model_list(self) -> bytes:
        """The OpenAI model list — tiers, then the models they name — built once."""
        created = int(time.time())
        entries = {tier: "chatd" for tier in self.config.models}
        for chain in self.config.models.values():
            for model in chain:
                entries.setdefault(model, self.router.resolve(model).chain[0].provider)
        return orjson.dumps({"object": "list", "data": [
            {"id": model, "object": "model", "created": created, "owned_by": owner}
            for model, owner in entries.items()
        ]})
