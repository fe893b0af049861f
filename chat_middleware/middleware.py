"""ChatMiddleware: serves /v1/chat and /v1/chat/* and passes everything else through.

    app = ChatMiddleware(gateway_app, config=load_config("lakehouse.toml"))
    # or Starlette style: Middleware(ChatMiddleware, config="lakehouse.toml")

Pure ASGI: other paths, websockets and lifespan events reach the wrapped app
untouched. Lifespan is watched on the way through to open and close the
upstream sessions; a server that sends no lifespan events gets them opened on
first use. With `[gateway] chatd_url` set, /v1/chat/* is forwarded to that
standalone chatd instead. The shared state (limits, leases, cooldowns) is made
once, kept across reloads while [chatd.state] stays the same, and closed at
lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal

from . import endpoints, surfaces
from .access import CLIENT_LEFT, REQUEST_ID, Call, request_id
from .asgi import ClientGone, send_error
from .config import Config, load_config
from .errors import ChatdError, MethodNotAllowed, NotFound, RequestError, Unauthorized, redact
from .metrics import process_exiting
from .runtime import Runtime, make_state
from .surfaces import Handler
from .telemetry import Telemetry
from .types import ASGIApp, Headers, Receive, Scope, Send

log = logging.getLogger("chatd")

PREFIX = "/v1/chat"
HEALTH = PREFIX + "/health"
ANTHROPIC = PREFIX + "/v1/"
"""The Anthropic surface, whose clients (Claude Code) send their key as `x-api-key`."""
UNLOGGED = frozenset(PREFIX + path for path in endpoints.UNLOGGED)
ROUTES: dict[tuple[str, str], Handler] = {
    (method, PREFIX + path): handler for (method, path), handler in {**surfaces.ROUTES, **endpoints.ROUTES}.items()
}


class ChatMiddleware:
    """Routes chat requests by model name; everything else goes to `app`.

    `watch_config` is how often (seconds) the config file is checked for changes
    to reload (None: never); `reload_on_sighup` also reloads on SIGHUP (standalone).
    """

    def __init__(
        self, app: ASGIApp, *, config: Config | str | os.PathLike | None = None,
        serve_v1_models: bool = False, watch_config: float | None = 1.0, reload_on_sighup: bool = False,
    ) -> None:
        self.app = app
        config = config if isinstance(config, Config) else load_config(config)
        self.telemetry = Telemetry(config.providers)
        self.runtime = Runtime(config, self.telemetry, make_state(config.state))
        self._watch_interval = watch_config
        self._reload_on_sighup = reload_on_sighup
        self._watcher: asyncio.Task | None = None
        self._started = False
        self._routes = dict(ROUTES)
        self._own_paths: set[str] = set()
        if serve_v1_models:  # standalone: clients whose base URL is …/v1 list models here
            self._routes[("GET", "/v1/models")] = surfaces.chat.models
            self._own_paths.add("/v1/models")

    @property
    def config(self) -> Config:
        return self.runtime.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(PREFIX) and (len(path) == len(PREFIX) or path[len(PREFIX)] == "/") \
                    or path in self._own_paths:
                runtime = self.runtime
                runtime.enter()
                try:
                    await self._handle(runtime, scope, receive, send)
                finally:
                    runtime.leave()
                return
        elif scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        await self.app(scope, receive, send)

    # ----- lifespan and reload

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def lifespan_receive():
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.runtime.open()
                self._start_watching()
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                process_exiting()
            return message

        return lifespan_receive

    async def aclose(self) -> None:
        """Close upstream sessions and the shared state, and stop watching the config file."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self._started = False
        await self.runtime.close()
        await self.runtime.state.aclose()

    def reload(self) -> bool:
        """Load the config file again; new requests use it, in-flight ones finish on the old.

        An invalid file is rejected with a logged error and the running config stays.
        """
        path = self.runtime.config.path
        try:
            config = load_config(path)
            kept = config.state == self.runtime.config.state
            runtime = Runtime(config, self.telemetry, self.runtime.state if kept else make_state(config.state))
        except ChatdError as exc:
            log.error("config reload rejected, keeping the running config: %s", exc)
            return False
        old, self.runtime = self.runtime, runtime
        old.closes_state = not kept  # its requests release their leases into it, then it closes
        old.retire()
        names = ", ".join(p.name for p in runtime.config.registered)
        log.info("config %s reloaded: %d provider(s) registered: %s", path, len(runtime.config.registered), names)
        return True

    def _start_watching(self) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        if self._reload_on_sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, self.reload)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
                log.debug("SIGHUP reload unavailable here; the config file is still watched")
        if self._watch_interval:
            self._watcher = loop.create_task(self._watch_file(self._watch_interval))

    async def _watch_file(self, interval: float) -> None:
        seen = _stamp(self.runtime.config.path)
        while True:
            await asyncio.sleep(interval)
            stamp = _stamp(self.runtime.config.path)
            if stamp != seen and stamp is not None:
                seen = stamp
                self.reload()

    # ----- dispatch

    async def _handle(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        if runtime.forwarder is not None:  # remote mode: the standalone chatd logs and counts
            await runtime.forwarder(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        call = Call(request_id(scope["headers"]), scope["method"], path, scope["headers"])
        try:
            if not self._started:  # a server that sends no lifespan events
                runtime.open()
                self._start_watching()
            handler = self._routes.get((scope["method"], path)) or _prefixed(scope["method"], path)
            if runtime.principals and path != HEALTH:
                call.client = _authorize(scope, runtime.principals, path.startswith(ANTHROPIC))
            if handler is None:
                allowed = [method for method, route in self._routes if route == path]
                if allowed:
                    error = MethodNotAllowed(f"{scope['method']} is not allowed on {path}; use {', '.join(allowed)}")
                    await self._refuse(call, send, error, [(b"allow", ", ".join(allowed).encode())])
                    return
                raise NotFound(f"no such endpoint: {path}")
            await handler(runtime, call, scope, receive, send)
            if not call.status:
                call.status = 200
        except ClientGone:
            call.status = CLIENT_LEFT
        except RequestError as exc:
            await self._refuse(call, send, redact(exc, runtime.secrets))
        except Exception:
            log.exception("unexpected error serving %s %s", scope["method"], path)
            try:
                await self._refuse(call, send, RequestError("internal error in chatd"))
            except Exception:  # the response had already started
                pass
        finally:
            call.finished(logged=path not in UNLOGGED)

    @staticmethod
    async def _refuse(call: Call, send: Send, error: RequestError, headers: Headers = ()) -> None:
        """An error answer before any upstream was asked, with the request's id."""
        call.status = error.status
        call.error = error.kind
        await send_error(send, error, [*headers, (REQUEST_ID, call.request_id)], _error_body(call.path, error))


def _authorize(scope: Scope, principals: tuple[tuple[bytes, str | None], ...], anthropic: bool) -> str | None:
    """The client a valid key stands for (None: an anonymous key), else 401.

    The key is `Authorization: Bearer <key>`, or on the Anthropic surface
    `x-api-key` (Claude Code's header) when sent. It is compared in constant
    time against every key, so how long the check takes tells nothing of them.
    """
    bearer = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            bearer = value
        elif name == b"x-api-key":
            api_key = value
    if anthropic and api_key is not None:
        token = api_key.strip()
    else:
        scheme, _, token = (bearer or b"").partition(b" ")
        token = token.strip() if scheme.lower() == b"bearer" else b""
    valid = False
    client = None
    for key, name in principals:
        match = hmac.compare_digest(token, key)
        valid |= match
        client = name if match else client
    if not valid or not token:
        wanted = "'x-api-key' or 'Authorization: Bearer <key>'" if anthropic else "'Authorization: Bearer <key>'"
        raise Unauthorized(f"a valid {wanted} header is required")
    return client


def _prefixed(method: str, path: str) -> Handler | None:
    """The endpoint of a path with an id in it (`GET /v1/chat/responses/{id}`)."""
    for allowed, prefix, handler in surfaces.PREFIXED:
        if method == allowed and path.startswith(PREFIX + prefix):
            return handler
    return None


def _error_body(path: str, error: RequestError) -> bytes | None:
    """The error in the shape the client of `path` reads (Ollama's under /api/); None: OpenAI's."""
    return surfaces.error_body(path[len(PREFIX):], error)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
