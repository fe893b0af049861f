"""ChatMiddleware: serves /v1/chat and /v1/chat/* and passes everything else through.

    app = ChatMiddleware(gateway_app, config=load_config("lakehouse.toml"))
    # or Starlette style: Middleware(ChatMiddleware, config="lakehouse.toml")

Pure ASGI: other paths, websockets and lifespan events reach the wrapped app
untouched. Lifespan is watched on the way through to open and close the
upstream sessions; a server that sends no lifespan events gets them opened on
first use.
"""

from __future__ import annotations

import logging
import os
import time
from time import monotonic
from typing import Awaitable, Callable
from urllib.parse import parse_qs

import orjson

from .asgi import JSON, ClientGone, read_body, send_body, send_error, send_json
from .config import Config, load_config
from .errors import BadRequest, MethodNotAllowed, NotFound, RequestError, redact
from .relay import Relay
from .render import NativeRenderer, OpenAIRenderer
from .routing import Router
from .shapes import check_completion, native_to_openai, parse_json_object
from .telemetry import Telemetry
from .types import ASGIApp, Receive, Scope, Send
from .upstream import Upstreams

log = logging.getLogger("chatd")

PREFIX = "/v1/chat"
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
_OPENAI = OpenAIRenderer()


class ChatMiddleware:
    """Routes chat requests by model name; everything else goes to `app`."""

    def __init__(
        self, app: ASGIApp, *, config: Config | str | os.PathLike | None = None,
        serve_v1_models: bool = False,
    ) -> None:
        self.app = app
        self.config = config if isinstance(config, Config) else load_config(config)
        self.router = Router(self.config)
        self.upstreams = Upstreams(self.config)
        self.telemetry = Telemetry(self.config.providers)
        self.relay = Relay(self.config, self.upstreams, self.telemetry)
        self._secrets = self.config.keys
        self._models = self._model_list()
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", PREFIX): self.native_chat,
            ("POST", PREFIX + "/chat/completions"): self.chat_completions,
            ("POST", PREFIX + "/completions"): self.chat_completions,
            ("GET", PREFIX + "/models"): self.models,
            ("GET", PREFIX + "/providers"): self.providers,
            ("GET", PREFIX + "/resolve"): self.resolve,
            ("GET", PREFIX + "/health"): self.health,
        }
        self._own_paths: set[str] = set()
        if serve_v1_models:  # standalone: clients whose base URL is …/v1 list models here
            self._routes[("GET", "/v1/models")] = self.models
            self._own_paths.add("/v1/models")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(PREFIX) and (len(path) == len(PREFIX) or path[len(PREFIX)] == "/") \
                    or path in self._own_paths:
                await self._handle(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def lifespan_receive():
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.upstreams.open()
            elif message["type"] == "lifespan.shutdown":
                await self.upstreams.close()
            return message

        return lifespan_receive

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        handler = self._routes.get((scope["method"], path))
        try:
            if handler is None:
                allowed = [method for method, route in self._routes if route == path]
                if allowed:
                    error = MethodNotAllowed(f"{scope['method']} is not allowed on {path}; use {', '.join(allowed)}")
                    await send_error(send, error, [(b"allow", ", ".join(allowed).encode())])
                    return
                raise NotFound(f"no such endpoint: {path}")
            await handler(scope, receive, send)
        except ClientGone:
            pass
        except RequestError as exc:
            await send_error(send, redact(exc, self._secrets))
        except Exception:
            log.exception("unexpected error serving %s %s", scope["method"], path)
            try:
                await send_error(send, RequestError("internal error in chatd"))
            except Exception:  # the response had already started
                pass

    # ----- endpoints

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        """OpenAI Chat Completions, stream and non-stream, for every provider."""
        body = parse_json_object(await read_body(receive, self.config.max_body_bytes))
        resolution = self.router.resolve(body.get("model"))
        resolution.served()
        check_completion(body)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        await self.relay.run(body, resolution.chain, _OPENAI, include_usage, receive, send)

    async def native_chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        """chatd's native shape (DESIGN §3)."""
        body = parse_json_object(await read_body(receive, self.config.max_body_bytes))
        resolution = self.router.resolve(body.get("model"))
        resolution.served()
        request = native_to_openai(body)
        await self.relay.run(request, resolution.chain, NativeRenderer(), False, receive, send)

    async def providers(self, scope: Scope, receive: Receive, send: Send) -> None:
        now = monotonic()
        listed = []
        for p in self.config.registered:
            cooldown = max(0.0, self.telemetry.providers[p.name].cooldown_until - now)
            listed.append({"name": p.name, "transform": p.transform, "base_url": p.base_url,
                           "available": cooldown == 0, "cooldown_s": round(cooldown, 1)})
        await send_json(send, {"providers": listed})

    async def resolve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dry run: where a model would go, with the same 400/404 as a real call."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        models = query.get("model")
        if not models:
            raise BadRequest("query parameter 'model' is required")
        resolution = self.router.resolve(models[0])
        resolution.served()
        await send_json(send, resolution.as_dict())

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._models, [JSON])

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, {"status": "ok", "providers": len(self.config.registered)})

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
