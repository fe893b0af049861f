"""The bare passthrough floor: the least any proxy on chatd's stack can cost.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT/v1/chat/completions hypercorn bench.floor:app

Pure ASGI and one shared aiohttp session, as chatd: read the body, orjson,
rewrite `model` (`mock/m` → `m`), forward, stream the upstream bytes back as
they arrive. No routing, validation, deadlines, disconnect watching, telemetry
or error mapping: the benchmark reports chatd against this, so the table shows
what chatd's features cost on top of the same server and client.
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable

import aiohttp
import orjson

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:8081/v1/chat/completions")
HEADERS = {"Content-Type": "application/json"}
_session: aiohttp.ClientSession | None = None

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def session() -> aiohttp.ClientSession:
    """The one client session, with the same pool limit as chatd's default."""
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), headers=HEADERS)
    return _session


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            session()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _session is not None:
                await _session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    parts, more = [], True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = orjson.loads(b"".join(parts))
    body["model"] = body["model"].split("/", 1)[-1]
    async with session().post(UPSTREAM, data=orjson.dumps(body)) as response:
        content_type = response.headers.get("Content-Type", "application/json").encode()
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(b"content-type", content_type)]})
        while data := await response.content.readany():
            await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
