"""chatd as a service of its own: the middleware around an app that serves nothing else."""

from __future__ import annotations

import os

from .asgi import send_error
from .settings import Config
from .errors import NotFound
from .logs import configure as configure_logging
from .middleware import ChatMiddleware
from .types import Receive, Scope, Send


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind standalone chatd: completes lifespan, answers 404 to everything else."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send_error(send, NotFound(f"no such endpoint: {scope['path']}; chatd serves /v1/chat/*"))
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})


def create_app(config: Config | str | os.PathLike | None = None) -> ChatMiddleware:
    """Standalone chatd; config from the argument, else $LAKEHOUSE_CONFIG, else ./lakehouse.toml."""
    return ChatMiddleware(not_found, config=config, serve_v1_models=True, reload_on_sighup=True)


def worker_app() -> ChatMiddleware:
    """Standalone chatd with its logging set up: app.py, and every worker process a server spawns.

    A spawned worker starts with no logging set up, so chatd's own lines
    (start-up, reloads, the access log) would be lost without it.
    """
    configure_logging()
    return create_app()
